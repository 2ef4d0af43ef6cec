//! Supervision of the app's Procfile processes.
//!
//! Design: every process has one monitor task (`monitor.rs`) that owns its `Watched` handle.
//! The monitor restarts the process when it exits (immediately after a stable run, then with
//! capped exponential backoff), reports crash loops, stops it when asked (stop signal to the
//! group, deadline, SIGKILL), and on agent shutdown simply returns, leaving the process
//! running: apps outlive the agent. The table of live processes (spec + pid + start time +
//! pgid) is persisted after every change so that the next agent run re-adopts them instead of
//! starting duplicates. Beside the monitors, `run` reaps orphans (the agent is a child
//! subreaper) and samples per-process CPU and memory.

mod backoff;
mod cgroup;
mod crashloop;
mod hold;
mod limits;
mod listening;
mod monitor;
mod process;
mod procstat;
mod reaper;
mod spawn;
mod spec;
mod stats;
mod table;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use cgroup::remove_all as remove_cgroups;
pub use hold::{StopHold, clear_hold_file, hold_path, set_hold_file};
pub use process::{ExitStatus, Watched, group_alive, group_gone, read_stat, signal_group};
pub use reaper::become_child_subreaper;
pub use spawn::{ChildSetup, OutputFiles, UserError, launch, resolve_app_user};
pub use spec::{APP_PATH, AppUser, ProcessKey, ProcessSpec, process_env};
pub use stats::ProcessStats;
use table::{PersistedProcess, Slot};

use crate::config::SuperviseConfig;
use crate::events::{EventSink, NewEvent, Severity};
use crate::paths::Paths;

#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    #[error("cannot start process {name} ({command:?}) of release {release}: {source}")]
    Start {
        name: String,
        release: u64,
        command: String,
        source: std::io::Error,
    },
    #[error("cannot persist the process table {path}: {source}")]
    Persist {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// What `hostmanager status` shows for one process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessStatus {
    pub name: String,
    pub release: u64,
    pub pid: Option<i32>,
    pub port: Option<u16>,
    pub state: ProcessState,
    pub restarts: u32,
    pub uptime_secs: Option<u64>,
    pub last_exit: Option<ExitStatus>,
    /// The restart delay chosen at the last exit (grows while the process keeps exiting).
    #[serde(default)]
    pub restart_delay_ms: Option<u64>,
    /// Set while the process is in a crash loop.
    #[serde(default)]
    pub crash_loop: Option<CrashLoop>,
    /// CPU and memory of the process and everything in its session (latest sample).
    #[serde(default)]
    pub stats: Option<ProcessStats>,
    /// TCP ports the process and everything in its session listen on, from /proc (the latest
    /// sample, none before the first; the deployment's health gate reads them as it waits).
    #[serde(default)]
    pub listening: Option<Vec<u16>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessState {
    Running,
    /// Exited; waiting out the restart backoff.
    Backoff,
    Stopping,
}

/// A crash loop: `exits` exits within `window_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrashLoop {
    pub exits: u32,
    pub window_secs: u64,
}

/// Cheap to clone handle on the process table.
#[derive(Debug, Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    user: AppUser,
    config: SuperviseConfig,
    paths: Paths,
    events: EventSink,
    table: Mutex<BTreeMap<ProcessKey, Slot>>,
    tracker: TaskTracker,
    /// Agent shutdown: monitors return and leave their processes running.
    shutdown: CancellationToken,
    /// App leaders spawned by this agent, which their monitors reap (not the orphan reaper).
    leaders: reaper::Leaders,
    /// `None` when no cgroup limits are configured or this host cannot apply them.
    cgroups: Option<cgroup::Cgroups>,
    /// Serialises writes of `processes.json`, so the last write is always the latest table.
    persisting: Mutex<()>,
    /// Set by `stop-apps`; ended by the next start of a process.
    hold: StopHold,
}

impl Supervisor {
    pub fn new(
        user: AppUser,
        config: SuperviseConfig,
        paths: Paths,
        events: EventSink,
        shutdown: CancellationToken,
        hold: StopHold,
    ) -> Self {
        let cgroups = cgroup::prepare_for(&config, &paths, &events);
        let inner = Inner {
            user,
            config,
            paths,
            events,
            table: Mutex::new(BTreeMap::new()),
            tracker: TaskTracker::new(),
            shutdown,
            leaders: reaper::Leaders::default(),
            cgroups,
            persisting: Mutex::new(()),
            hold,
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    pub fn user(&self) -> &AppUser {
        &self.inner.user
    }

    /// The `stop-apps` hold, shared with the proxy.
    pub fn hold(&self) -> &StopHold {
        &self.inner.hold
    }

    /// Re-adopts the processes an earlier agent run left behind; restarts those that died.
    pub fn restore(&self) -> Result<(), SuperviseError> {
        let path = self.inner.paths.processes_file();
        let persisted: Vec<PersistedProcess> = crate::fsutil::read_json(&path)
            .map_err(|source| SuperviseError::Persist {
                path: path.clone(),
                source,
            })?
            .unwrap_or_default();
        for entry in persisted {
            let adopted = entry
                .pid
                .and_then(|pid| Watched::adopt(pid, entry.start_time).ok().flatten());
            let spec = entry.spec;
            let message = match &adopted {
                Some(watched) => format!(
                    "Re-adopted process {} (pid {}) left running by the previous agent",
                    spec.name,
                    watched.pid()
                ),
                None => format!(
                    "Process {} exited while the agent was down; restarting it",
                    spec.name
                ),
            };
            let severity = match adopted {
                Some(_) => Severity::Info,
                None => Severity::Warning,
            };
            self.inner
                .events
                .emit(NewEvent::new(severity, "supervise", message).deployment(spec.release));
            let restarts = entry.restarts + u32::from(adopted.is_none());
            self.insert_and_monitor(spec, adopted, restarts);
        }
        self.persist()
    }

    /// Starts `spec` now. Returns once the process runs (or failed to start). A job that starts
    /// a process ends the `stop-apps` hold (the apps run again, and so may nginx).
    pub fn start(&self, spec: ProcessSpec) -> Result<i32, SuperviseError> {
        self.inner.hold.release();
        let watched = self.launch(&spec)?;
        let pid = watched.pid();
        self.insert_and_monitor(spec, Some(watched), 0);
        self.persist()?;
        Ok(pid)
    }

    /// Stops one process: stop signal to its group, then SIGKILL after the deadline.
    pub async fn stop(&self, key: &ProcessKey) {
        self.stop_many(std::slice::from_ref(key)).await;
    }

    /// Stops every process of `release`, all at once.
    pub async fn stop_release(&self, release: u64) {
        let keys: Vec<ProcessKey> = self
            .lock()
            .keys()
            .filter(|k| k.release == release)
            .cloned()
            .collect();
        self.stop_many(&keys).await;
    }

    /// Stops every supervised process (`hostmanager stop-apps`).
    pub async fn stop_all(&self) {
        let keys: Vec<ProcessKey> = self.lock().keys().cloned().collect();
        self.stop_many(&keys).await;
    }

    /// Asks every monitor first and waits afterwards, so the stop deadlines run in parallel.
    async fn stop_many(&self, keys: &[ProcessKey]) {
        let waiting: Vec<oneshot::Receiver<()>> = {
            let mut table = self.lock();
            let mut waiting = Vec::new();
            for key in keys {
                if let Some(slot) = table.get_mut(key) {
                    slot.stop.cancel();
                    waiting.extend(slot.done.take());
                }
            }
            waiting
        };
        for done in waiting {
            let _ = done.await;
        }
    }

    /// Every process with its state, restarts, uptime, crash loop and CPU/memory sample.
    pub fn statuses(&self) -> Vec<ProcessStatus> {
        self.lock().values().map(Slot::status).collect()
    }

    /// Where process `key` listens now (read from /proc, and kept as its latest sample); `None`
    /// while it is not running.
    pub async fn listening_now(&self, key: &ProcessKey) -> Option<Vec<u16>> {
        let pid = self.lock().get(key)?.pid?;
        let mut ports = tokio::task::spawn_blocking(move || listening::ports_by_session(&[pid]))
            .await
            .ok()?;
        let ports = ports.remove(&pid).unwrap_or_default();
        self.update(key, |slot| {
            if slot.pid == Some(pid) {
                slot.listening = Some(ports.clone());
            }
        });
        Some(ports)
    }

    /// Releases that have processes in the table.
    pub fn releases(&self) -> Vec<u64> {
        let mut releases: Vec<u64> = self.lock().keys().map(|k| k.release).collect();
        releases.dedup();
        releases
    }

    /// Waits for all monitors to return (after the shutdown token fired).
    pub async fn wait_monitors(&self) {
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }

    /// Housekeeping until `cancel` fires: reaps orphans on SIGCHLD and samples per-process CPU
    /// and memory every `supervise.stats_interval`.
    pub async fn run(self, cancel: CancellationToken) {
        tokio::join!(
            reaper::run(&self.inner.leaders, cancel.clone()),
            self.sample_stats(cancel)
        );
    }

    fn launch(&self, spec: &ProcessSpec) -> Result<Watched, SuperviseError> {
        let paths = &self.inner.paths;
        let output = OutputFiles {
            stdout: &paths.process_stdout_log(&spec.name),
            stderr: &paths.process_stderr_log(&spec.name),
        };
        let limits = self.inner.config.settings(&spec.name).limits;
        let setup = ChildSetup {
            umask: self.inner.config.umask,
            rlimits: monitor::planned_rlimits(&spec.name, &limits),
            cgroup_procs: self.cgroup_for(spec, &limits),
        };
        // Held until the child is registered: see reaper.rs.
        let mut leaders = self.inner.leaders.lock();
        let watched = launch(spec, &self.inner.user, output, setup).map_err(|source| {
            SuperviseError::Start {
                name: spec.name.clone(),
                release: spec.release,
                command: spec.command.clone(),
                source,
            }
        })?;
        leaders.insert(watched.pid());
        Ok(watched)
    }

    fn insert_and_monitor(&self, spec: ProcessSpec, watched: Option<Watched>, restarts: u32) {
        let (done_tx, done_rx) = oneshot::channel();
        let stop = CancellationToken::new();
        let key = spec.key();
        let slot = Slot::new(spec, watched.as_ref(), restarts, stop.clone(), done_rx);
        self.lock().insert(key.clone(), slot);
        let this = self.clone();
        self.inner.tracker.spawn(async move {
            this.monitor(key, watched, stop).await;
            let _ = done_tx.send(());
        });
    }

    fn persist(&self) -> Result<(), SuperviseError> {
        // Monitors persist concurrently; two writers would share the temporary file, and an
        // older snapshot could land last.
        let _writing = self
            .inner
            .persisting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let entries: Vec<PersistedProcess> = self.lock().values().map(Slot::persisted).collect();
        let path = self.inner.paths.processes_file();
        // 0600: the specs carry the environment properties, which may be secrets.
        crate::fsutil::write_json_atomic(&path, &entries, 0o600)
            .map_err(|source| SuperviseError::Persist { path, source })
    }

    fn persist_or_warn(&self) {
        if let Err(error) = self.persist() {
            tracing::error!(%error, "process table not persisted");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<ProcessKey, Slot>> {
        self.inner
            .table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn update(&self, key: &ProcessKey, change: impl FnOnce(&mut Slot)) {
        if let Some(slot) = self.lock().get_mut(key) {
            change(slot);
        }
    }
}
