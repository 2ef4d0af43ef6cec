//! Supervision of the agent's long-running tasks (deploy, proxy, health, metrics, logs, …).
//!
//! A task that panics or returns while nobody asked it to stop is a bug the agent cannot
//! recover from in place: the task's state is gone and restarting it alone would need every
//! task to be restartable from any state. So the agent says so (an error event naming the task
//! and the panic), then stops and exits non-zero: systemd starts it again, and a fresh start is
//! the path that is tested — recovery of an interrupted deployment, re-adoption of the apps,
//! which keep serving throughout (they and nginx outlive the agent). See docs/stop-and-start.md.

use std::future::Future;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::events::EventSink;

/// How one supervised task ended without being asked to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskEnd {
    pub task: &'static str,
    /// The panic's message, or that it returned.
    pub how: String,
}

impl std::fmt::Display for TaskEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the {} task {}", self.task, self.how)
    }
}

/// Spawns tasks on the agent's tracker and reports the ones that end on their own.
#[derive(Debug, Clone)]
pub struct Spawner {
    tracker: TaskTracker,
    ended: mpsc::UnboundedSender<TaskEnd>,
    events: EventSink,
    fault: Option<InjectedFault>,
}

impl Spawner {
    /// The receiver yields each task that ended unexpectedly.
    pub fn new(
        tracker: TaskTracker,
        events: EventSink,
    ) -> (Self, mpsc::UnboundedReceiver<TaskEnd>) {
        let (ended, receiver) = mpsc::unbounded_channel();
        let spawner = Self {
            tracker,
            ended,
            events,
            fault: InjectedFault::from_env(),
        };
        (spawner, receiver)
    }

    /// Runs `task` until it ends; an end before `stop` is cancelled is reported. The returned
    /// handle finishes when the task did (a restart waits on it before starting the next one).
    pub fn spawn<F>(
        &self,
        name: &'static str,
        stop: &CancellationToken,
        task: F,
    ) -> tokio::task::JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let fault = self.fault.clone().filter(|fault| fault.task == name);
        let inner = tokio::spawn(async move {
            match fault.map(|fault| fault.kind) {
                Some(FaultKind::Panic) => panic!("injected by {}", InjectedFault::VAR),
                Some(FaultKind::Return) => {}
                None => task.await,
            }
        });
        let (stop, ended, events) = (stop.clone(), self.ended.clone(), self.events.clone());
        self.tracker.spawn(async move {
            let outcome = inner.await;
            if stop.is_cancelled() {
                return;
            }
            let how = match outcome {
                Ok(()) => "returned while the agent was running".to_string(),
                Err(error) if error.is_panic() => {
                    format!("panicked: {}", panic_message(error.into_panic()))
                }
                Err(error) => format!("was cancelled: {error}"),
            };
            let end = TaskEnd { task: name, how };
            tracing::error!("{end}");
            events.error(
                "agent",
                format!(
                    "{end}; the agent stops and exits with status 70 so that systemd starts it \
                     again (the apps and nginx keep running and are re-adopted)"
                ),
            );
            let _ = ended.send(end);
        })
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(text) => *text,
        Err(payload) => payload
            .downcast_ref::<&str>()
            .map_or_else(|| "(no message)".to_string(), |text| (*text).to_string()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FaultKind {
    Panic,
    Return,
}

/// For the supervision tests only: `HOSTMANAGER_TEST_FAIL_TASK=<task>:panic|return` makes that
/// task panic or return at once instead of running. Read once at start; unset (always, in
/// production) it costs nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
struct InjectedFault {
    task: String,
    kind: FaultKind,
}

impl InjectedFault {
    const VAR: &'static str = "HOSTMANAGER_TEST_FAIL_TASK";

    fn parse(text: &str) -> Option<Self> {
        let (task, kind) = text.trim().split_once(':')?;
        let kind = match kind {
            "panic" => FaultKind::Panic,
            "return" => FaultKind::Return,
            _ => return None,
        };
        (!task.is_empty()).then(|| Self {
            task: task.to_string(),
            kind,
        })
    }

    fn from_env() -> Option<Self> {
        std::env::var(Self::VAR)
            .ok()
            .as_deref()
            .and_then(Self::parse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events;

    #[test]
    fn a_fault_names_a_task_and_how_it_fails() {
        assert_eq!(
            InjectedFault::parse("metrics:panic"),
            Some(InjectedFault {
                task: "metrics".into(),
                kind: FaultKind::Panic
            })
        );
        assert_eq!(
            InjectedFault::parse("health:return").map(|f| f.kind),
            Some(FaultKind::Return)
        );
        assert_eq!(InjectedFault::parse("health"), None);
        assert_eq!(InjectedFault::parse(":panic"), None);
        assert_eq!(InjectedFault::parse("health:exit"), None);
    }

    fn spawner() -> (Spawner, mpsc::UnboundedReceiver<TaskEnd>, TaskTracker) {
        let tracker = TaskTracker::new();
        let (sink, _events) = events::channel();
        let (spawner, ended) = Spawner::new(tracker.clone(), sink);
        (spawner, ended, tracker)
    }

    #[tokio::test]
    async fn a_panicking_task_is_reported_with_its_message() {
        let (spawner, mut ended, _) = spawner();
        let stop = CancellationToken::new();
        spawner.spawn("metrics", &stop, async { panic!("window overflow") });
        let end = ended.recv().await.expect("an end");
        assert_eq!(end.task, "metrics");
        assert_eq!(end.how, "panicked: window overflow");
    }

    #[tokio::test]
    async fn a_task_returning_on_its_own_is_reported() {
        let (spawner, mut ended, _) = spawner();
        let stop = CancellationToken::new();
        spawner.spawn("health", &stop, async {});
        let end = ended.recv().await.expect("an end");
        assert_eq!(
            end.to_string(),
            "the health task returned while the agent was running"
        );
    }

    #[tokio::test]
    async fn a_task_that_was_asked_to_stop_ends_quietly() {
        let (spawner, mut ended, tracker) = spawner();
        let stop = CancellationToken::new();
        let asked = stop.clone();
        spawner.spawn("proxy", &stop, async move { asked.cancelled().await });
        stop.cancel();
        tracker.close();
        tracker.wait().await;
        drop(spawner);
        assert_eq!(ended.recv().await, None);
    }
}
