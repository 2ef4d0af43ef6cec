//! One row of the process table and its persisted form.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::process::{ExitStatus, Watched};
use super::spec::ProcessSpec;
use super::stats::ProcessStats;
use super::{CrashLoop, ProcessState, ProcessStatus};

#[derive(Debug)]
pub(super) struct Slot {
    pub spec: ProcessSpec,
    pub state: ProcessState,
    pub pid: Option<i32>,
    pub pgid: Option<i32>,
    pub start_time: u64,
    pub restarts: u32,
    pub last_exit: Option<ExitStatus>,
    /// The delay chosen at the last exit.
    pub restart_delay: Option<Duration>,
    pub crash_loop: Option<CrashLoop>,
    pub stats: Option<ProcessStats>,
    /// TCP ports the process and its session listen on (latest sample; none before it).
    pub listening: Option<Vec<u16>>,
    /// Fired to ask the monitor to stop the process for good.
    pub stop: CancellationToken,
    /// Resolves when the monitor has stopped the process and removed the slot.
    pub done: Option<oneshot::Receiver<()>>,
}

/// What survives an agent restart: enough to re-adopt or restart the process, and its identity
/// (pid + kernel start time; a reused pid has a later start time).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct PersistedProcess {
    /// The release and the port are in the spec.
    pub spec: ProcessSpec,
    /// `None` while the process waits out its restart backoff.
    pub pid: Option<i32>,
    pub start_time: u64,
    #[serde(default)]
    pub pgid: Option<i32>,
    #[serde(default)]
    pub restarts: u32,
}

impl Slot {
    pub fn new(
        spec: ProcessSpec,
        watched: Option<&Watched>,
        restarts: u32,
        stop: CancellationToken,
        done: oneshot::Receiver<()>,
    ) -> Self {
        let mut slot = Self {
            spec,
            state: ProcessState::Backoff,
            pid: None,
            pgid: None,
            start_time: 0,
            restarts,
            last_exit: None,
            restart_delay: None,
            crash_loop: None,
            stats: None,
            listening: None,
            stop,
            done: Some(done),
        };
        if let Some(watched) = watched {
            slot.running(watched);
            slot.restarts = restarts;
        }
        slot
    }

    pub fn running(&mut self, watched: &Watched) {
        if self.pid.is_some() || self.last_exit.is_some() {
            self.restarts += 1;
        }
        self.state = ProcessState::Running;
        self.pid = Some(watched.pid());
        self.pgid = Some(watched.pgid());
        self.start_time = watched.start_time();
        self.stats = None;
        self.listening = None;
    }

    pub fn exited(&mut self, status: ExitStatus, restart_delay: Duration) {
        self.state = ProcessState::Backoff;
        self.last_exit = Some(status);
        self.restart_delay = Some(restart_delay);
        self.pid = None;
        self.pgid = None;
        self.stats = None;
        self.listening = None;
    }

    pub fn status(&self) -> ProcessStatus {
        // From the kernel's start time: right after a re-adoption too.
        let uptime_secs = self
            .pid
            .and_then(|_| super::process::age(self.start_time))
            .map(|age| age.as_secs());
        ProcessStatus {
            name: self.spec.name.clone(),
            release: self.spec.release,
            pid: self.pid,
            port: self.spec.port,
            state: self.state,
            restarts: self.restarts,
            uptime_secs,
            last_exit: self.last_exit,
            restart_delay_ms: self.restart_delay.map(|d| d.as_millis() as u64),
            crash_loop: self.crash_loop,
            stats: self.stats,
            listening: self.listening.clone(),
        }
    }

    pub fn persisted(&self) -> PersistedProcess {
        PersistedProcess {
            spec: self.spec.clone(),
            pid: self.pid,
            start_time: self.start_time,
            pgid: self.pgid,
            restarts: self.restarts,
        }
    }
}
