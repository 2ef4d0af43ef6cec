//! Following the watched logs: one byte budget per file per poll, severe blocks grouped and
//! reported, refused logs reported once per reason.

use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;

use super::super::classify::SevereBlock;
use super::{Followed, LogTask, POLL_BUDGET, State};

impl LogTask {
    pub(super) fn poll_all(&mut self, state: &mut State) {
        let paths: Vec<PathBuf> = state.followed.keys().cloned().collect();
        let mut behind = false;
        for path in paths {
            behind |= self.poll_one(state, &path);
        }
        state.behind = behind;
        let truncated = state.followed.values().map(|f| f.tailer.truncated).sum();
        self.shared
            .update(|status| status.truncated_lines = truncated);
    }

    /// Reads one budget of `path`; true when there is more.
    fn poll_one(&mut self, state: &mut State, path: &PathBuf) -> bool {
        let Some(followed) = state.followed.get_mut(path) else {
            return false;
        };
        let mut lines = Vec::new();
        let more = match followed.tailer.poll(POLL_BUDGET, &mut lines) {
            Ok(more) => more,
            Err(error) => {
                tracing::debug!(%error, path = %path.display(), "reading a log failed");
                false
            }
        };
        followed
            .tailer
            .forget_old(Duration::from_secs(60), &mut lines);
        let file = super::super::sources::relative(self.paths.root(), path);
        if let Some(why) = followed.tailer.refused().map(str::to_string) {
            self.refused(&file, &why);
        }
        if !lines.is_empty() {
            state.dirty = true;
            self.feed(followed, lines, &file);
        }
        more
    }

    /// Reads `path` to its end, one budget at a time (before a rotation cuts it).
    pub(super) fn catch_up(&mut self, state: &mut State, path: &PathBuf) {
        while self.poll_one(state, path) {}
    }

    /// Reports (once per reason) a log that is not read because of what it is.
    pub(super) fn refused(&mut self, relative: &str, why: &str) {
        if self
            .refusals
            .get(relative)
            .is_some_and(|known| known == why)
        {
            return;
        }
        self.refusals.insert(relative.to_string(), why.to_string());
        self.events.warn(
            "logs",
            format!("{relative} is not read, rotated or bundled: {why}"),
        );
    }

    pub(super) fn feed(&self, followed: &mut Followed, lines: Vec<String>, file: &str) {
        let mut closed: Vec<SevereBlock> = Vec::new();
        for line in &lines {
            followed.grouper.push(line, &mut closed);
        }
        followed.last_line = Instant::now();
        for block in closed {
            self.report_block(&block, file);
        }
    }

    pub(super) fn flush_idle(&self, state: &mut State) {
        let idle = self.config.logs.watch.group_idle;
        let now = Instant::now();
        for followed in state.followed.values_mut() {
            if followed.grouper.is_open() && followed.last_line + idle <= now {
                // Read what arrived meanwhile first: it may still belong to the trace.
                let mut lines = Vec::new();
                let _ = followed.tailer.poll(POLL_BUDGET, &mut lines);
                let file =
                    super::super::sources::relative(self.paths.root(), followed.tailer.path());
                if !lines.is_empty() {
                    self.feed(followed, lines, &file);
                    continue;
                }
                if let Some(block) = followed.grouper.flush() {
                    self.report_block(&block, &file);
                }
            }
        }
    }

    pub(super) fn report_block(&self, block: &SevereBlock, file: &str) {
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let report = self.shared.record_error(now_ms, block, file);
        if let Some(report) = report {
            self.emit(&report);
        }
    }
}
