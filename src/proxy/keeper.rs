//! The proxy task: keeps nginx running. It does not poll: it waits on the master's pidfd
//! (its exit), on the `stop-apps` hold and on activations, and checks again after each.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Proxy;
use crate::events::{NewEvent, Severity};
use crate::supervise::{Watched, read_stat};

/// First pause before starting nginx again after a failed start; doubles up to the maximum.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// What the task waits for next.
enum Next {
    /// The master runs: wait for its exit.
    Watch(Watched),
    /// nginx is down on purpose (disabled, nothing active, held): wait for a change.
    Idle,
    /// Starting failed: try again after this pause.
    Retry(Duration),
}

impl Proxy {
    /// Keeps nginx running: restarts the master if it dies, unless `stop-apps` holds it down.
    /// Leaves it running on shutdown.
    pub async fn run(self, cancel: CancellationToken) {
        let mut reported = false;
        let mut retry = RETRY_FIRST;
        let mut hold = self.inner.hold.subscribe();
        loop {
            // Marks the hold as seen before checking, so a change meanwhile wakes the wait.
            hold.borrow_and_update();
            let next = match self.ensure_running().await {
                Ok(Some(master)) => {
                    reported = false;
                    retry = RETRY_FIRST;
                    match adopt(master) {
                        Some(watched) => Next::Watch(watched),
                        // Gone between the check and the pidfd: check again at once.
                        None => Next::Retry(Duration::ZERO),
                    }
                }
                Ok(None) => Next::Idle,
                Err(error) => {
                    if !reported {
                        self.inner.events.emit(NewEvent::new(
                            Severity::Error,
                            "proxy",
                            error.to_string(),
                        ));
                        reported = true;
                    }
                    let pause = retry;
                    retry = (retry * 2).min(RETRY_MAX);
                    Next::Retry(pause)
                }
            };
            self.inner.checks.fetch_add(1, Ordering::SeqCst);
            let master_exited = tokio::select! {
                () = cancel.cancelled() => return,
                _ = hold.changed() => false,
                () = self.inner.wake.notified() => false,
                exited = wait(&next) => exited,
            };
            let wanted = self.enabled() && self.active().is_some() && !self.inner.hold.is_held();
            if master_exited && wanted && self.inner.runner.master().is_none() {
                self.inner
                    .events
                    .warn("proxy", "nginx is not running; starting it again");
            }
        }
    }
}

/// Resolves when what `next` waits for happened; `true` when it was the master's exit.
async fn wait(next: &Next) -> bool {
    match next {
        Next::Watch(master) => {
            master.exited().await;
            true
        }
        Next::Idle => std::future::pending().await,
        Next::Retry(pause) => {
            tokio::time::sleep(*pause).await;
            false
        }
    }
}

fn adopt(master: i32) -> Option<Watched> {
    let stat = read_stat(master)?;
    Watched::adopt(master, stat.start_time).ok().flatten()
}
