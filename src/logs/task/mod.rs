//! The logs task: follows every watched log (inotify through `notify`, plus a safety poll),
//! groups and fingerprints severe errors, rotates logs by size and age, compresses rotated
//! files and prunes nginx's hourly healthd logs. Rotation and tailing share this one task, so a
//! copytruncate adjusts the tail offset in the same step and no line is read twice or skipped.
//!
//! It runs on its own thread (`LogService::start`), never on the runtime's workers: its file
//! I/O (reads, copies, fsyncs, `/proc` scans) cannot stall health checks or the control API.
//! Each poll reads at most `POLL_BUDGET` bytes per file, so a multi-GB backlog is worked
//! through over many polls in bounded memory while commands and ticks are still served.

mod follow;
mod rotation;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::Watcher;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::classify::{Grouper, Patterns};
use super::compress::Staged;
use super::fingerprint::Report;
use super::open::Owners;
use super::rotate::Rotator;
use super::sources::{Source, discover, watch_dirs};
use super::tailer::{Checkpoint, Tailer};
use super::{Command, Shared};
use crate::config::Config;
use crate::events::EventSink;
use crate::fsutil::{read_json, write_json_atomic};
use crate::paths::Paths;

/// Bytes read per file per poll: bounds the lines held at once (a few MiB with their
/// `String`s) and how long one poll keeps the task from its commands.
const POLL_BUDGET: u64 = 1 << 20;
/// A read of every followed file (through the descriptors it holds), due summaries and changed
/// checkpoints, this often.
const HOUSEKEEPING: Duration = Duration::from_secs(1);
/// Rediscovery when inotify works: its events rediscover on every entry created, removed or
/// renamed in a watched directory, so this is only a safety net (a log under a directory
/// created later, a missed event). Discovery opens every log through its directories without
/// following links: once a second it was most of the agent's idle cost.
const REDISCOVER_WATCHED: Duration = Duration::from_secs(10);
/// Without inotify, new logs are found only by looking.
const REDISCOVER_UNWATCHED: Duration = Duration::from_secs(1);

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
    pub owners: Owners,
    /// Paths refused (a link, another owner...) and why: one event per new reason.
    pub refusals: HashMap<String, String>,
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
    /// Some followed file has more to read than the last poll's budget.
    behind: bool,
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
            behind: false,
        };
        match self.rotator.recover(self.config.logs.reopen_timeout) {
            Ok(staged) => state.pending.extend(staged),
            Err(error) => self
                .events
                .error("logs", format!("recovering rotated logs: {error}")),
        }
        let (changed_tx, mut changed) = mpsc::channel::<()>(1);
        // Set when a watched directory gained, lost or renamed an entry: the next wake-up
        // rediscovers before it reads.
        let renamed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let renamed_by_watcher = renamed.clone();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            use notify::EventKind;
            use notify::event::ModifyKind;
            let structural = event.as_ref().map_or(true, |event| {
                matches!(
                    event.kind,
                    EventKind::Create(_)
                        | EventKind::Remove(_)
                        | EventKind::Modify(ModifyKind::Name(_))
                        | EventKind::Other
                        | EventKind::Any
                )
            });
            if structural {
                renamed_by_watcher.store(true, std::sync::atomic::Ordering::Relaxed);
            }
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
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
        let mut rediscover = tokio::time::interval(match watcher {
            Some(_) => REDISCOVER_WATCHED,
            None => REDISCOVER_UNWATCHED,
        });
        let mut rotation = tokio::time::interval(self.config.logs.check_interval);
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        rediscover.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        rotation.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.refresh(&mut state, watcher.as_mut());
        loop {
            let wake_at = self.next_deadline(&state);
            tokio::select! {
                () = cancel.cancelled() => break,
                Some(()) = changed.recv() => {
                    if renamed.swap(false, std::sync::atomic::Ordering::Relaxed) {
                        self.refresh(&mut state, watcher.as_mut());
                    }
                    self.poll_all(&mut state);
                }
                // Catching up on a backlog: one more budget per file, between everything else
                // (a yield, so timers and inotify are looked at in between).
                () = tokio::task::yield_now(), if state.behind => self.poll_all(&mut state),
                () = tokio::time::sleep_until(wake_at) => {
                    self.flush_idle(&mut state);
                    self.finish_pending(&mut state);
                }
                _ = rediscover.tick() => self.refresh(&mut state, watcher.as_mut()),
                _ = housekeeping.tick() => {
                    self.poll_all(&mut state);
                    self.summaries();
                    self.save_checkpoints(&mut state);
                }
                _ = rotation.tick() => {
                    self.rotate(&mut state, false);
                    self.prune_healthd();
                }
                Some(command) = self.commands.recv() => match command {
                    Command::Rotate(reply) => {
                        // Logs created since the last discovery are rotated too.
                        self.refresh(&mut state, watcher.as_mut());
                        self.poll_all(&mut state);
                        let rotated = self.rotate(&mut state, true);
                        self.finish_pending(&mut state);
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
                    self.finish_pending(&mut state);
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
    fn refresh(&mut self, state: &mut State, mut watcher: Option<&mut notify::RecommendedWatcher>) {
        // Watches first, then discovery: a log created in between is found by one or the other.
        if let Some(watcher) = watcher.as_deref_mut() {
            Self::watch(state, watcher, watch_dirs(&self.paths, &self.config.logs));
        }
        let found = discover(&self.paths, &self.config.logs, &self.owners);
        state.sources = found.sources;
        let refused: HashMap<String, String> = found.refused.into_iter().collect();
        for (relative, why) in &refused {
            self.refused(relative, why);
        }
        // A path that is fine again (or gone) may be refused again later: report it then.
        self.refusals
            .retain(|relative, _| refused.contains_key(relative));
        if let Some(watcher) = watcher {
            // Each followed log's own directory too: a glob such as `srv/*/app.log` matches
            // below the directory configured, and new files there must wake us as well.
            let parents: Vec<PathBuf> = state
                .sources
                .iter()
                .filter_map(|s| s.path.parent().map(PathBuf::from))
                .collect();
            Self::watch(state, watcher, parents);
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
            let historic = std::fs::symlink_metadata(&source.path)
                .and_then(|m| m.modified())
                .is_ok_and(|modified| modified < self.started);
            let start_at_end = state.first_run && historic;
            let tailer = Tailer::open(
                &source.path,
                source.owners.clone(),
                checkpoint,
                start_at_end,
            );
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

    fn prune_healthd(&self) {
        let logs = &self.config.logs;
        let pruned = super::healthd::prune(
            &self.paths.healthd_log_dir(),
            &self.paths.healthd_checkpoint(),
            logs.healthd_keep_hours,
            logs.healthd_keep_files,
        );
        if !pruned.is_empty() {
            tracing::info!(files = ?pruned, "deleted old healthd logs");
        }
    }

    /// The next open stack trace to close, or renamed file to look at again.
    fn next_deadline(&self, state: &State) -> Instant {
        let idle = self.config.logs.watch.group_idle;
        let traces = state
            .followed
            .values()
            .filter(|f| f.grouper.is_open())
            .map(|f| f.last_line + idle);
        // While a compression runs, its end looks at the pending files again; otherwise a
        // file nobody can still be writing is due now.
        let now = Instant::now();
        let pending = state
            .pending
            .iter()
            .filter(|_| state.compressing.is_empty())
            .map(|s| s.wait_for.map_or(now, |_| s.next_check));
        traces
            .chain(pending)
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))
    }

    fn summaries(&self) {
        let now_ms = jiff::Timestamp::now().as_millisecond();
        for report in self.shared.due_summaries(now_ms) {
            self.emit(&report);
        }
    }

    fn watch(state: &mut State, watcher: &mut notify::RecommendedWatcher, dirs: Vec<PathBuf>) {
        for dir in dirs {
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

    fn emit(&self, report: &Report) {
        self.events.emit(super::plan::severe_event(report));
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

/// Runs `task` on a thread of its own (with a single-threaded runtime for its timers, inotify
/// channel and compression jobs); `tasks` waits for it at shutdown.
pub(super) fn spawn_thread(
    task: LogTask,
    spawner: &crate::tasks::Spawner,
    stop: &CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("hostmanager-logs-blocking")
        .build()?;
    let (done, finished) = oneshot::channel::<()>();
    let cancel = stop.child_token();
    std::thread::Builder::new()
        .name("hostmanager-logs".into())
        .spawn(move || {
            runtime.block_on(task.run(cancel));
            let _ = done.send(());
        })?;
    Ok(spawner.spawn("logs", stop, async move {
        // The sender is dropped without a send only when the thread unwinds.
        if finished.await.is_err() {
            panic!("the logs thread panicked (its message is in the agent's log)");
        }
    }))
}

/// Asks the task to rotate every non-empty log now.
pub(super) async fn request_rotation(commands: &mpsc::Sender<Command>) -> Option<Vec<String>> {
    let (reply, answer) = oneshot::channel();
    commands.send(Command::Rotate(reply)).await.ok()?;
    answer.await.ok()
}
