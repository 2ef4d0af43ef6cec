//! One row of the process table and its persisted form.

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::process::{ExitStatus, Watched};
use super::spec::ProcessSpec;
use super::{ProcessState, ProcessStatus};

#[derive(Debug)]
pub(super) struct Slot {
    pub spec: ProcessSpec,
    pub state: ProcessState,
    pub pid: Option<i32>,
    pub start_time: u64,
    pub restarts: u32,
    pub last_exit: Option<ExitStatus>,
    /// Fired to ask the monitor to stop the process for good.
    pub stop: CancellationToken,
    /// Resolves when the monitor has stopped the process and removed the slot.
    pub done: Option<oneshot::Receiver<()>>,
}

/// What survives an agent restart: enough to re-adopt or restart the process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct PersistedProcess {
    pub spec: ProcessSpec,
    /// `None` while the process waits out its restart backoff.
    pub pid: Option<i32>,
    pub start_time: u64,
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
            start_time: 0,
            restarts,
            last_exit: None,
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
        self.start_time = watched.start_time();
    }

    pub fn exited(&mut self, status: ExitStatus) {
        self.state = ProcessState::Backoff;
        self.last_exit = Some(status);
        self.pid = None;
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
        }
    }

    pub fn persisted(&self) -> PersistedProcess {
        PersistedProcess {
            spec: self.spec.clone(),
            pid: self.pid,
            start_time: self.start_time,
            restarts: self.restarts,
        }
    }
}
