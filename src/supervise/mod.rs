//! Supervision of the app's Procfile processes.
//!
//! Design: every process has one monitor task that owns its `Watched` handle. The monitor
//! restarts the process when it exits (capped exponential backoff), stops it when asked
//! (stop signal to the group, deadline, SIGKILL), and on agent shutdown simply returns,
//! leaving the process running: apps outlive the agent. The table of live processes
//! (spec + pid + start time) is persisted after every change so that the next agent run
//! re-adopts them instead of starting duplicates.

mod backoff;
mod process;
mod procstat;
mod spawn;
mod spec;
mod table;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use process::{ExitStatus, Watched, group_alive, read_stat};
pub use spawn::{OutputFiles, UserError, launch, resolve_app_user};
pub use spec::{APP_PATH, AppUser, ProcessKey, ProcessSpec, process_env};
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessStatus {
    pub name: String,
    pub release: u64,
    pub pid: Option<i32>,
    pub port: Option<u16>,
    pub state: ProcessState,
    pub restarts: u32,
    pub uptime_secs: Option<u64>,
    pub last_exit: Option<ExitStatus>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessState {
    Running,
    /// Exited; waiting out the restart backoff.
    Backoff,
    Stopping,
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
}

impl Supervisor {
    pub fn new(
        user: AppUser,
        config: SuperviseConfig,
        paths: Paths,
        events: EventSink,
        shutdown: CancellationToken,
    ) -> Self {
        let inner = Inner {
            user,
            config,
            paths,
            events,
            table: Mutex::new(BTreeMap::new()),
            tracker: TaskTracker::new(),
            shutdown,
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    pub fn user(&self) -> &AppUser {
        &self.inner.user
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
            match adopted {
                Some(watched) => {
                    tracing::info!(process = %spec.name, release = spec.release, pid = watched.pid(), "re-adopted");
                    self.insert_and_monitor(spec, Some(watched), entry.restarts);
                }
                None => {
                    self.inner.events.emit(
                        NewEvent::new(
                            Severity::Warning,
                            "supervise",
                            format!(
                                "Process {} exited while the agent was down; restarting it",
                                spec.name
                            ),
                        )
                        .deployment(spec.release),
                    );
                    self.insert_and_monitor(spec, None, entry.restarts + 1);
                }
            }
        }
        self.persist()
    }

    /// Starts `spec` now. Returns once the process runs (or failed to start).
    pub fn start(&self, spec: ProcessSpec) -> Result<i32, SuperviseError> {
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

    pub fn statuses(&self) -> Vec<ProcessStatus> {
        self.lock().values().map(Slot::status).collect()
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

    fn launch(&self, spec: &ProcessSpec) -> Result<Watched, SuperviseError> {
        let paths = &self.inner.paths;
        let output = OutputFiles {
            stdout: &paths.process_stdout_log(&spec.name),
            stderr: &paths.process_stderr_log(&spec.name),
        };
        launch(spec, &self.inner.user, output).map_err(|source| SuperviseError::Start {
            name: spec.name.clone(),
            release: spec.release,
            command: spec.command.clone(),
            source,
        })
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

    async fn monitor(
        &self,
        key: ProcessKey,
        mut watched: Option<Watched>,
        stop: CancellationToken,
    ) {
        let config = self.inner.config.clone();
        let mut backoff = backoff::Backoff::new(
            config.restart_backoff_initial,
            config.restart_backoff_max,
            config.stable_after,
        );
        let mut started = Instant::now();
        loop {
            if let Some(process) = watched.take() {
                tokio::select! {
                    status = process.exited() => {
                        if stop.is_cancelled() { break; }
                        let delay = backoff.next_delay(started.elapsed(), fastrand::f64());
                        self.on_unexpected_exit(&key, process.pid(), status, delay);
                        self.persist_or_warn();
                        tokio::select! {
                            () = tokio::time::sleep(delay) => {}
                            () = stop.cancelled() => break,
                            () = self.inner.shutdown.cancelled() => return,
                        }
                    }
                    () = stop.cancelled() => {
                        self.update(&key, |slot| slot.state = ProcessState::Stopping);
                        self.terminate(&process, config.stop_signal.signal(), config.stop_timeout).await;
                        break;
                    }
                    () = self.inner.shutdown.cancelled() => return,
                }
            }
            let Some(spec) = self.lock().get(&key).map(|slot| slot.spec.clone()) else {
                return;
            };
            match self.launch(&spec) {
                Ok(process) => {
                    started = Instant::now();
                    self.update(&key, |slot| slot.running(&process));
                    watched = Some(process);
                    self.persist_or_warn();
                }
                Err(error) => {
                    let delay = backoff.next_delay(Duration::ZERO, fastrand::f64());
                    self.inner.events.emit(
                        NewEvent::new(Severity::Error, "supervise", error.to_string())
                            .deployment(key.release),
                    );
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = stop.cancelled() => break,
                        () = self.inner.shutdown.cancelled() => return,
                    }
                }
            }
        }
        self.lock().remove(&key);
        self.persist_or_warn();
    }

    fn on_unexpected_exit(&self, key: &ProcessKey, pid: i32, status: ExitStatus, delay: Duration) {
        self.update(key, |slot| slot.exited(status));
        let message = format!(
            "Process {} (pid {pid}) exited with {status}; restarting in {}",
            key.name,
            humantime::format_duration(Duration::from_millis(delay.as_millis() as u64))
        );
        self.inner
            .events
            .emit(NewEvent::new(Severity::Warning, "supervise", message).deployment(key.release));
    }

    /// Stop signal to the group, wait up to `deadline`, then SIGKILL whatever is left of it.
    async fn terminate(&self, process: &Watched, signal: Signal, deadline: Duration) {
        let pgid = process.pid();
        if let Err(error) = process.signal_group(signal) {
            tracing::warn!(pid = pgid, %error, "cannot signal process group");
        }
        let gone = tokio::time::timeout(deadline, async {
            process.exited().await;
            // The leader is gone; children it forked may still hold on.
            while group_alive(pgid) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        if gone.is_err() {
            tracing::warn!(
                pid = pgid,
                "did not stop within {deadline:?}; sending SIGKILL to its group"
            );
            let _ = process.signal_group(Signal::SIGKILL);
            process.exited().await;
        }
    }
}
