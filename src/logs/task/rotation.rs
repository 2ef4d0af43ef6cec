//! Rotation and compression steps of the logs task.

use std::time::Duration;

use tokio::time::Instant;

use super::super::compress::{compress, held_by_others};
use super::super::plan::rotation_due;
use super::{LogTask, State};

/// The longest wait between two looks at a renamed file a writer still holds (each look is a
/// scan of every process's descriptors).
const MAX_CHECK_EVERY: Duration = Duration::from_secs(30);

impl LogTask {
    /// Rotates every log that is due (`forced`: every non-empty log). Returns the new names.
    pub(super) fn rotate(&mut self, state: &mut State, forced: bool) -> Vec<String> {
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let config = self.config.clone();
        let logs = &config.logs;
        let mut rotated = Vec::new();
        for source in state.sources.clone() {
            let Some(mode) = source.rotate else { continue };
            let size = std::fs::symlink_metadata(&source.path)
                .map(|m| m.len())
                .unwrap_or(0);
            let last = self.rotator.last_rotated_ms(&source.relative, now_ms);
            let due = rotation_due(
                size,
                last,
                now_ms,
                logs.rotate_size_bytes,
                logs.rotate_interval,
            );
            if size == 0 || !(forced || due.is_some()) {
                continue;
            }
            // Every line before the cut is read first (in budgets, fed as they come).
            self.catch_up(state, &source.path);
            let mut lines = Vec::new();
            let followed = state.followed.get_mut(&source.path);
            let tailer = followed.map(|f| &mut f.tailer);
            match self
                .rotator
                .rotate(&source, mode, tailer, &mut lines, logs.reopen_timeout)
            {
                Ok(Some(staged)) => {
                    if let Some(name) = staged.final_path.file_name() {
                        rotated.push(name.to_string_lossy().into_owned());
                    }
                    state.pending.push(staged);
                    state.dirty = true;
                    self.shared.update(|status| status.rotations += 1);
                }
                Ok(None) => {}
                // Deleted since it was discovered: nothing to rotate.
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                // Replaced by a link or someone else's file since: not cut, reported.
                Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => {
                    self.refused(&source.relative, &error.to_string());
                }
                Err(error) => self
                    .events
                    .error("logs", format!("rotating {}: {error}", source.relative)),
            }
            if !lines.is_empty()
                && let Some(followed) = state.followed.get_mut(&source.path)
            {
                self.feed(followed, lines, &source.relative);
            }
        }
        if self.rotator.collapse_unsupported {
            self.rotator.collapse_unsupported = false;
            self.events.warn(
                "logs",
                "this filesystem cannot collapse a file's head: copytruncate falls back to truncate, and lines written during it may be lost",
            );
        }
        if !rotated.is_empty() {
            state.dirty = true;
            self.save_checkpoints(state);
        }
        rotated
    }

    /// Compresses staged files nobody holds open any more, one at a time and in the order they
    /// were rotated: a log's rotated files then reach the spool oldest first, so the publisher
    /// never sheds a newer file because an older one was still being compressed (and one gzip
    /// at a time bounds the CPU a burst of rotations takes). Whether a writer still holds a
    /// renamed log is looked at after 100 ms, then ever less often (up to every 30 s): each
    /// look scans `/proc`. A writer that keeps it past `reopen_timeout` is reported once and
    /// waited for: compressing earlier would lose what it still writes.
    pub(super) fn finish_pending(&mut self, state: &mut State) {
        if state.pending.is_empty() || !state.compressing.is_empty() {
            // A running compression calls this again when it ends.
            return;
        }
        let now = Instant::now();
        let mut waiting = Vec::new();
        for mut staged in std::mem::take(&mut state.pending) {
            if let Some((dev, ino, deadline)) = staged.wait_for {
                if now < staged.next_check {
                    waiting.push(staged);
                    continue;
                }
                if held_by_others(dev, ino) {
                    if now >= deadline && !staged.reported {
                        staged.reported = true;
                        self.events.warn(
                            "logs",
                            format!(
                                "{} was rotated but a process still writes to the old file; it is compressed once that process lets go",
                                super::super::sources::relative(self.paths.root(), &staged.source)
                            ),
                        );
                    }
                    staged.check_every = (staged.check_every * 2).min(MAX_CHECK_EVERY);
                    staged.next_check = now + staged.check_every;
                    waiting.push(staged);
                    continue;
                }
            }
            if let Some((dev, ino, _)) = staged.wait_for
                && let Some(followed) = state.followed.get_mut(&staged.source)
            {
                let mut lines = Vec::new();
                let _ = followed.tailer.release(dev, ino, &mut lines);
                let file = super::super::sources::relative(self.paths.root(), &staged.source);
                self.feed(followed, lines, &file);
            }
            if !state.compressing.is_empty() {
                waiting.push(staged);
                continue;
            }
            let job = staged.clone();
            state.compressing.spawn_blocking(move || {
                let outcome = compress(&job);
                (job, outcome)
            });
        }
        state.pending = waiting;
    }
}
