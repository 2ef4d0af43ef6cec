//! The logs task: follows every watched log (inotify through `notify`, plus a 1 s safety poll),
//! groups and fingerprints severe errors, rotates logs by size and age, and compresses rotated
//! files. Rotation and tailing share this one task, so a copytruncate adjusts the tail offset
//! in the same step and no line is read twice or skipped.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::Watcher;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::classify::{Grouper, Patterns, SevereBlock};
use super::compress::{compress, held_by_others};
use super::fingerprint::Report;
use super::plan::rotation_due;
use super::rotate::{Rotator, Staged};
use super::sources::{Source, discover, watch_dirs};
use super::tailer::{Checkpoint, Tailer};
use super::{Command, Shared};
use crate::config::Config;
use crate::events::EventSink;
use crate::fsutil::{read_json, write_json_atomic};
use crate::paths::Paths;

struct Followed {
    tailer: Tailer,
    grouper: Grouper,
    last_line: Instant,
}

pub(super) struct LogTask {
    pub paths: Paths,
    pub config: Arc<Config>,
    pub shared: Arc<Shared>,
    pub events: EventSink,
    pub rotator: Rotator,
    pub commands: mpsc::Receiver<Command>,
    pub published_wake: Arc<Notify>,
    pub checkpoints_path: PathBuf,
    pub started: std::time::SystemTime,
}

impl std::fmt::Debug for LogTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogTask").finish_non_exhaustive()
    }
}

struct State {
    sources: Vec<Source>,
    followed: HashMap<PathBuf, Followed>,
    saved: BTreeMap<String, Checkpoint>,
    first_run: bool,
    pending: Vec<Staged>,
    compressing: JoinSet<(Staged, std::io::Result<u64>)>,
    dirty: bool,
    watched_dirs: HashSet<PathBuf>,
}

impl LogTask {
    pub async fn run(mut self, cancel: CancellationToken) {
        let saved: Option<BTreeMap<String, Checkpoint>> =
            read_json(&self.checkpoints_path).ok().flatten();
        let mut state = State {
            sources: Vec::new(),
            followed: HashMap::new(),
            first_run: saved.is_none(),
            saved: saved.unwrap_or_default(),
            pending: Vec::new(),
            compressing: JoinSet::new(),
            dirty: true,
            watched_dirs: HashSet::new(),
        };
        match self.rotator.recover(self.config.logs.reopen_timeout) {
            Ok(staged) => state.pending.extend(staged),
            Err(error) => self
                .events
                .error("logs", format!("recovering rotated logs: {error}")),
        }
        let (changed_tx, mut changed) = mpsc::channel::<()>(1);
        let watcher = notify::recommended_watcher(move |_event: notify::Result<notify::Event>| {
            // Coalesced: one wake-up reads every followed file.
            let _ = changed_tx.try_send(());
        });
        let mut watcher = match watcher {
            Ok(watcher) => Some(watcher),
            Err(error) => {
                self.events.warn(
                    "logs",
                    format!("inotify unavailable ({error}); polling logs every second"),
                );
                None
            }
        };
        let mut housekeeping = tokio::time::interval(Duration::from_millis(100));
        let mut rotation = tokio::time::interval(self.config.logs.check_interval);
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        rotation.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks: u64 = 0;
        self.refresh(&mut state, watcher.as_mut());
        loop {
            let idle_deadline = self.next_idle_deadline(&state);
            tokio::select! {
                () = cancel.cancelled() => break,
                Some(()) = changed.recv() => self.poll_all(&mut state),
                () = tokio::time::sleep_until(idle_deadline) => self.flush_idle(&mut state),
                _ = housekeeping.tick() => {
                    ticks += 1;
                    let every_second = ticks.is_multiple_of(10);
                    self.finish_pending(&mut state, every_second);
                    if every_second {
                        self.refresh(&mut state, watcher.as_mut());
                        self.poll_all(&mut state);
                        self.summaries();
                        self.save_checkpoints(&mut state);
                    }
                }
                _ = rotation.tick() => {
                    self.rotate(&mut state, false);
                }
                Some(command) = self.commands.recv() => match command {
                    Command::Rotate(reply) => {
                        // Logs created since the last discovery are rotated too.
                        self.refresh(&mut state, watcher.as_mut());
                        self.poll_all(&mut state);
                        let rotated = self.rotate(&mut state, true);
                        self.finish_pending(&mut state, true);
                        let _ = reply.send(rotated);
                    }
                },
                Some(joined) = state.compressing.join_next(), if !state.compressing.is_empty() => {
                    if let Ok((staged, outcome)) = joined {
                        match outcome {
                            Ok(_) => self.published_wake.notify_one(),
                            Err(error) => self.events.error("logs", format!("compressing {}: {error}", staged.raw.display())),
                        }
                    }
                }
            }
        }
        for followed in state.followed.values_mut() {
            if let Some(block) = followed.grouper.flush() {
                let file = super::sources::relative(self.paths.root(), followed.tailer.path());
                self.report_block(&block, &file);
            }
        }
        state.dirty = true;
        self.save_checkpoints(&mut state);
        // Compression in flight finishes on its own thread; a killed one is redone at start.
        while state.compressing.join_next().await.is_some() {}
    }

    /// Re-discovers the logs, follows new ones and watches their directories.
    fn refresh(&mut self, state: &mut State, watcher: Option<&mut notify::RecommendedWatcher>) {
        state.sources = discover(&self.paths, &self.config.logs);
        if let Some(watcher) = watcher {
            for dir in watch_dirs(&self.paths, &self.config.logs) {
                if !state.watched_dirs.contains(&dir)
                    && dir.is_dir()
                    && watcher
                        .watch(&dir, notify::RecursiveMode::NonRecursive)
                        .is_ok()
                {
                    state.watched_dirs.insert(dir);
                }
            }
        }
        if !self.config.logs.watch.enabled {
            return;
        }
        let patterns = || {
            Patterns::new(
                self.config.logs.watch.default_patterns,
                &self.config.logs.watch.patterns,
            )
        };
        for source in state.sources.iter().filter(|s| s.watch) {
            if state.followed.contains_key(&source.path) {
                continue;
            }
            let checkpoint = state.saved.get(&source.relative);
            // On the very first run, history is not news: files last written before the agent
            // started are followed from their end. Anything written since is read whole.
            let historic = std::fs::metadata(&source.path)
                .and_then(|m| m.modified())
                .is_ok_and(|modified| modified < self.started);
            let tailer = Tailer::open(&source.path, checkpoint, state.first_run && historic);
            state.followed.insert(
                source.path.clone(),
                Followed {
                    tailer,
                    grouper: Grouper::new(patterns()),
                    last_line: Instant::now(),
                },
            );
            state.dirty = true;
        }
        let live: HashSet<&PathBuf> = state.sources.iter().map(|s| &s.path).collect();
        state.followed.retain(|path, _| live.contains(path));
        let watched: Vec<String> = state
            .sources
            .iter()
            .filter(|s| state.followed.contains_key(&s.path))
            .map(|s| s.relative.clone())
            .collect();
        self.shared.update(|status| status.watched_files = watched);
    }

    fn poll_all(&self, state: &mut State) {
        let paths: Vec<PathBuf> = state.followed.keys().cloned().collect();
        for path in paths {
            self.poll_one(state, &path);
        }
    }

    fn poll_one(&self, state: &mut State, path: &PathBuf) {
        let Some(followed) = state.followed.get_mut(path) else {
            return;
        };
        let mut lines = Vec::new();
        if let Err(error) = followed.tailer.poll(&mut lines) {
            tracing::debug!(%error, path = %path.display(), "reading a log failed");
        }
        followed
            .tailer
            .forget_old(Duration::from_secs(60), &mut lines);
        if !lines.is_empty() {
            state.dirty = true;
            let file = super::sources::relative(self.paths.root(), path);
            self.feed(followed, lines, &file);
        }
    }

    fn feed(&self, followed: &mut Followed, lines: Vec<String>, file: &str) {
        let mut closed: Vec<SevereBlock> = Vec::new();
        for line in &lines {
            followed.grouper.push(line, &mut closed);
        }
        followed.last_line = Instant::now();
        for block in closed {
            self.report_block(&block, file);
        }
    }

    fn next_idle_deadline(&self, state: &State) -> Instant {
        let idle = self.config.logs.watch.group_idle;
        state
            .followed
            .values()
            .filter(|f| f.grouper.is_open())
            .map(|f| f.last_line + idle)
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))
    }

    fn flush_idle(&self, state: &mut State) {
        let idle = self.config.logs.watch.group_idle;
        let now = Instant::now();
        for followed in state.followed.values_mut() {
            if followed.grouper.is_open() && followed.last_line + idle <= now {
                // Read what arrived meanwhile first: it may still belong to the trace.
                let mut lines = Vec::new();
                let _ = followed.tailer.poll(&mut lines);
                let file = super::sources::relative(self.paths.root(), followed.tailer.path());
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

    fn report_block(&self, block: &SevereBlock, file: &str) {
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let report = self.shared.record_error(now_ms, block, file);
        if let Some(report) = report {
            self.emit(&report);
        }
    }

    fn summaries(&self) {
        let now_ms = jiff::Timestamp::now().as_millisecond();
        for report in self.shared.due_summaries(now_ms) {
            self.emit(&report);
        }
    }

    fn emit(&self, report: &Report) {
        self.events.emit(super::plan::severe_event(report));
    }

    /// Rotates every log that is due (`forced`: every non-empty log). Returns the new names.
    fn rotate(&mut self, state: &mut State, forced: bool) -> Vec<String> {
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let logs = &self.config.logs;
        let mut rotated = Vec::new();
        for source in state.sources.clone() {
            let Some(mode) = source.rotate else { continue };
            let size = std::fs::metadata(&source.path)
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

    /// Compresses staged files whose writers let go (or whose wait ran out).
    /// Compresses staged files nobody holds open any more. A writer that keeps a renamed log
    /// past `reopen_timeout` is reported once and waited for (checked every second by then):
    /// compressing earlier would lose what it still writes.
    fn finish_pending(&mut self, state: &mut State, every_second: bool) {
        if state.pending.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut waiting = Vec::new();
        for mut staged in std::mem::take(&mut state.pending) {
            if let Some((dev, ino, deadline)) = staged.wait_for {
                let overdue = now >= deadline;
                if overdue && !every_second {
                    waiting.push(staged);
                    continue;
                }
                if held_by_others(dev, ino) {
                    if overdue && !staged.reported {
                        staged.reported = true;
                        self.events.warn(
                            "logs",
                            format!(
                                "{} was rotated but a process still writes to the old file; it is compressed once that process lets go",
                                super::sources::relative(self.paths.root(), &staged.source)
                            ),
                        );
                    }
                    waiting.push(staged);
                    continue;
                }
            }
            if let Some((dev, ino, _)) = staged.wait_for
                && let Some(followed) = state.followed.get_mut(&staged.source)
            {
                let mut lines = Vec::new();
                let _ = followed.tailer.release(dev, ino, &mut lines);
                let file = super::sources::relative(self.paths.root(), &staged.source);
                self.feed(followed, lines, &file);
            }
            let job = staged.clone();
            state.compressing.spawn_blocking(move || {
                let outcome = compress(&job);
                (job, outcome)
            });
        }
        state.pending = waiting;
    }

    fn save_checkpoints(&self, state: &mut State) {
        if !state.dirty {
            return;
        }
        let mut checkpoints = BTreeMap::new();
        for source in &state.sources {
            if let Some(followed) = state.followed.get_mut(&source.path)
                && let Some(checkpoint) = followed.tailer.checkpoint()
            {
                checkpoints.insert(source.relative.clone(), checkpoint);
            }
        }
        match write_json_atomic(&self.checkpoints_path, &checkpoints, 0o600) {
            Ok(()) => {
                state.saved = checkpoints;
                state.dirty = false;
            }
            Err(error) => tracing::warn!(%error, "cannot save log checkpoints"),
        }
    }
}

/// Asks the task to rotate every non-empty log now.
pub(super) async fn request_rotation(commands: &mpsc::Sender<Command>) -> Option<Vec<String>> {
    let (reply, answer) = oneshot::channel();
    commands.send(Command::Rotate(reply)).await.ok()?;
    answer.await.ok()
}
