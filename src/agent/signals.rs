//! What the agent waits for once it runs: SIGTERM/SIGINT (stop), SIGHUP (apply the config
//! again), or a task that ended on its own (stop, then exit non-zero).

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use super::{AgentError, io};
use crate::reload::Reloader;
use crate::tasks::TaskEnd;

/// Why the agent stops.
#[derive(Debug)]
pub(super) enum Stop {
    Signal,
    TaskEnded(TaskEnd),
}

pub(super) async fn wait_for_stop(
    reloader: &mut Reloader,
    ended: &mut mpsc::UnboundedReceiver<TaskEnd>,
) -> Result<Stop, AgentError> {
    let mut terminate =
        signal(SignalKind::terminate()).map_err(io("installing the SIGTERM handler"))?;
    let mut interrupt =
        signal(SignalKind::interrupt()).map_err(io("installing the SIGINT handler"))?;
    let mut hangup = signal(SignalKind::hangup()).map_err(io("installing the SIGHUP handler"))?;
    loop {
        tokio::select! {
            _ = terminate.recv() => return Ok(Stop::Signal),
            _ = interrupt.recv() => return Ok(Stop::Signal),
            Some(end) = ended.recv() => return Ok(Stop::TaskEnded(end)),
            // A reload may wait for a deployment to finish (nginx's settings): a stop goes
            // first.
            _ = hangup.recv() => tokio::select! {
                () = reloader.reload() => {}
                _ = terminate.recv() => return Ok(Stop::Signal),
                _ = interrupt.recv() => return Ok(Stop::Signal),
                Some(end) = ended.recv() => return Ok(Stop::TaskEnded(end)),
            },
        }
    }
}

pub(super) async fn second_signal() {
    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
}
