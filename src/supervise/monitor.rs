//! The monitor task of one process: waits for its exit, restarts it (backoff), reports crash
//! loops with the tail of its stderr, and stops it when asked (stop signal, deadline, SIGKILL
//! to the whole group).

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::crashloop::{CrashLoopDetector, ExitVerdict};
use super::limits::{self, Rlimit};
use super::process::{
    self, ExitStatus, Watched, group_alive_off_runtime, group_gone, signal_group,
};
use super::spawn::resource;
use super::{CrashLoop, ProcessKey, ProcessState, Supervisor};
use crate::config::ProcessLimits;
use crate::events::{NewEvent, Severity};

/// Lines of stderr a crash-loop event carries.
const STDERR_TAIL_LINES: usize = 50;

/// Why the monitor woke up while its process ran.
enum Wake {
    Exited(ExitStatus),
    /// The process has now run `stable_after`: a crash loop is over.
    Stable,
    Stop,
    Shutdown,
}

impl Supervisor {
    pub(super) async fn monitor(
        &self,
        key: ProcessKey,
        mut watched: Option<Watched>,
        stop: CancellationToken,
    ) {
        let config = &self.inner.config;
        let mut backoff = Backoff::new(
            config.restart_delay,
            config.restart_backoff_initial,
            config.restart_backoff_max,
            config.stable_after,
        );
        let mut crash_loop = CrashLoopDetector::new(
            config.crash_loop_exits,
            config.crash_loop_window,
            config.stable_after,
        );
        let origin = Instant::now();
        // An adopted process has been running since its kernel start time, not since now.
        let mut started = watched
            .as_ref()
            .and_then(|w| process::age(w.start_time()))
            .and_then(|age| Instant::now().checked_sub(age))
            .unwrap_or_else(Instant::now);
        loop {
            if let Some(process) = watched.take() {
                let stable_at = started + config.stable_after;
                // Biased, stop first: a stop that was asked for (`stop-apps`) is carried out
                // even when the agent's shutdown begins at the same moment.
                let wake = tokio::select! {
                    biased;
                    () = stop.cancelled() => Wake::Stop,
                    () = self.inner.shutdown.cancelled() => Wake::Shutdown,
                    status = process.exited() => Wake::Exited(status),
                    () = tokio::time::sleep_until(stable_at), if crash_loop.is_looping() => Wake::Stable,
                };
                match wake {
                    Wake::Shutdown => return,
                    Wake::Stop => {
                        self.update(&key, |slot| slot.state = ProcessState::Stopping);
                        self.terminate(&key, &process).await;
                        break;
                    }
                    Wake::Stable => {
                        crash_loop.stable_run();
                        self.on_crash_loop_over(&key);
                        watched = Some(process);
                        continue;
                    }
                    Wake::Exited(status) => {
                        self.inner.leaders.forget(process.pid());
                        if stop.is_cancelled() {
                            self.stop_leftovers(&key, process.pgid()).await;
                            break;
                        }
                        let ran_for = started.elapsed();
                        let delay = backoff.next_delay(ran_for, fastrand::f64());
                        let verdict = crash_loop.record_exit(origin.elapsed(), ran_for);
                        self.on_unexpected_exit(&key, process.pid(), status, delay, verdict);
                        // What the leader forked must not outlive it: a leftover child would
                        // hold the port and the restarted process could not bind it.
                        self.stop_leftovers(&key, process.pgid()).await;
                        // A zero delay restarts at once; the table is persisted after the start.
                        if !delay.is_zero() {
                            self.persist_or_warn();
                            tokio::select! {
                                () = tokio::time::sleep(delay) => {}
                                () = stop.cancelled() => break,
                                () = self.inner.shutdown.cancelled() => return,
                            }
                        }
                    }
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
        if let Some(cgroups) = &self.inner.cgroups {
            cgroups.remove(&limits::cgroup_leaf_name(key.release, &key.name));
        }
        self.persist_or_warn();
    }

    fn on_unexpected_exit(
        &self,
        key: &ProcessKey,
        pid: i32,
        status: ExitStatus,
        delay: Duration,
        verdict: ExitVerdict,
    ) {
        self.update(key, |slot| slot.exited(status, delay));
        let restart_in = human(delay);
        match verdict {
            ExitVerdict::Isolated => {
                let message = format!(
                    "Process {} (pid {pid}) exited with {status}; restarting in {restart_in}",
                    key.name
                );
                let details = json!({ "process": key.name, "pid": pid, "exit": status, "restart_in_ms": delay.as_millis() as u64 });
                self.inner.events.emit(
                    NewEvent::new(Severity::Warning, "supervise", message)
                        .deployment(key.release)
                        .details(details),
                );
            }
            ExitVerdict::LoopStarted { exits } => {
                self.report_crash_loop(key, pid, status, delay, exits);
            }
            // The crash-loop event and the status say it all; one event per exit would flood.
            ExitVerdict::StillLooping => tracing::info!(
                process = %key.name, pid, %status, "crash-looping; restarting in {restart_in}"
            ),
        }
    }

    fn report_crash_loop(
        &self,
        key: &ProcessKey,
        pid: i32,
        status: ExitStatus,
        delay: Duration,
        exits: u32,
    ) {
        let config = &self.inner.config;
        let window_secs = config.crash_loop_window.as_secs();
        self.update(key, |slot| {
            slot.crash_loop = Some(CrashLoop { exits, window_secs })
        });
        let stderr_log = self.inner.paths.process_stderr_log(&key.name);
        let stderr_tail = crate::fsutil::tail_lines(&stderr_log, STDERR_TAIL_LINES);
        let last_line = stderr_tail.lines().last().unwrap_or("(stderr is empty)");
        let message = format!(
            "Process {} is crash-looping: {exits} exits within {}, the last with {status}; restarting with backoff up to {}. Last stderr line: {last_line}",
            key.name,
            human(config.crash_loop_window),
            human(config.restart_backoff_max),
        );
        let details = json!({
            "process": key.name,
            "release": key.release,
            "pid": pid,
            "exits": exits,
            "window_secs": window_secs,
            "exit": status,
            "restart_in_ms": delay.as_millis() as u64,
            "stderr_log": stderr_log.display().to_string(),
            "stderr_tail": stderr_tail,
        });
        self.inner.events.emit(
            NewEvent::new(Severity::Error, "supervise", message)
                .deployment(key.release)
                .details(details),
        );
    }

    fn on_crash_loop_over(&self, key: &ProcessKey) {
        self.update(key, |slot| slot.crash_loop = None);
        let message = format!(
            "Process {} has run for {} without exiting: its crash loop is over",
            key.name,
            human(self.inner.config.stable_after)
        );
        self.inner
            .events
            .emit(NewEvent::new(Severity::Info, "supervise", message).deployment(key.release));
    }

    /// Stops the process and everything in its group.
    async fn terminate(&self, key: &ProcessKey, process: &Watched) {
        self.stop_group(key, process.pgid(), Some(process)).await;
        self.inner.leaders.forget(process.pid());
    }

    /// After the leader exited on its own: stops what it left running in its group.
    async fn stop_leftovers(&self, key: &ProcessKey, pgid: i32) {
        if group_alive_off_runtime(pgid).await {
            tracing::info!(process = %key.name, pgid, "the leader exited; stopping the rest of its group");
            self.stop_group(key, pgid, None).await;
        }
    }

    /// Stop signal to the group, wait up to the deadline for the leader AND the rest of its
    /// group to go, then SIGKILL whatever is left (and the whole cgroup, when there is one).
    async fn stop_group(&self, key: &ProcessKey, pgid: i32, leader: Option<&Watched>) {
        let settings = self.inner.config.settings(&key.name);
        let signal = settings.stop_signal.signal();
        let deadline = settings.stop_timeout;
        if let Err(error) = signal_group(pgid, signal) {
            tracing::warn!(pgid, %error, "cannot signal process group");
        }
        let gone = tokio::time::timeout(deadline, async {
            if let Some(leader) = leader {
                leader.exited().await;
            }
            // The leader is gone; children it forked may still hold on.
            group_gone(pgid).await;
        })
        .await;
        if gone.is_err() {
            let message = format!(
                "Process {} (process group {pgid}) did not stop within {} of {signal}; killed its process group with SIGKILL",
                key.name,
                human(deadline)
            );
            self.inner.events.emit(
                NewEvent::new(Severity::Warning, "supervise", message).deployment(key.release),
            );
            let _ = signal_group(pgid, Signal::SIGKILL);
            if let Some(cgroups) = &self.inner.cgroups {
                cgroups.kill(&limits::cgroup_leaf_name(key.release, &key.name));
            }
            if let Some(leader) = leader {
                leader.exited().await;
            }
        }
    }
}

/// The rlimits to set for process `name`; an unprivileged agent cannot raise its hard limits,
/// so those requests are clamped (with a warning in the agent's log).
pub(super) fn planned_rlimits(name: &str, limits: &ProcessLimits) -> Vec<Rlimit> {
    let privileged = nix::unistd::geteuid().is_root();
    limits::requested_rlimits(limits)
        .into_iter()
        .map(|(kind, requested)| {
            let current_hard =
                nix::sys::resource::getrlimit(resource(kind)).map_or(u64::MAX, |(_, hard)| hard);
            let (limit, clamped) = limits::plan_rlimit(kind, requested, current_hard, privileged);
            if clamped {
                tracing::warn!(
                    process = name,
                    ?kind,
                    requested,
                    "the agent is not root and cannot raise its hard limit; using {current_hard}"
                );
            }
            limit
        })
        .collect()
}

fn human(duration: Duration) -> String {
    humantime::format_duration(Duration::from_millis(duration.as_millis() as u64)).to_string()
}
