//! The delivery loop. One receive at a time asks for only as many messages as there are free
//! connections (never more than 10, never holding a message it cannot start: its visibility
//! clock runs from the receive); each message is POSTed on its own task; an exact 200 queues
//! its delete (batched, 10 per call); anything else, a timeout or a refused connection sets
//! its visibility to `error_visibility_timeout`, so it comes back that much later and SQS's
//! redrive counts the receive.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::log::SqsdLog;
use super::message::Received;
use super::sqs::Queue;
use super::stats::{DaemonState, FailureDigest, MinuteWindow, PeriodicStatus, Totals, WorkerState};
use crate::config::SqsdSettings;
use crate::events::EventSink;

/// What the daemon's parts update and `status` reads.
#[derive(Debug)]
pub(super) struct Live {
    pub daemon: DaemonState,
    pub window: MinuteWindow,
    pub totals: Totals,
    pub digest: FailureDigest,
    pub periodic: PeriodicStatus,
}

impl Default for Live {
    fn default() -> Self {
        Self {
            daemon: DaemonState::default(),
            window: MinuteWindow::default(),
            totals: Totals::default(),
            digest: FailureDigest::new(10_000),
            periodic: PeriodicStatus::default(),
        }
    }
}

/// Where the requests go: nginx's listener, or without nginx the serving web process.
#[derive(Debug, Clone)]
pub(super) enum Target {
    Proxy(std::net::SocketAddr),
    App(watch::Receiver<crate::deploy::DeployState>),
}

impl Target {
    pub(super) fn addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            Self::Proxy(addr) => Some(*addr),
            Self::App(deploy) => deploy
                .borrow()
                .current
                .as_ref()
                .map(|c| std::net::SocketAddr::from(([127, 0, 0, 1], c.web_port))),
        }
    }
}

#[derive(Debug)]
pub(super) struct Shared {
    pub queue: Queue,
    pub settings: Arc<SqsdSettings>,
    pub http: reqwest::Client,
    pub target: Target,
    pub events: EventSink,
    pub log: SqsdLog,
    pub live: Arc<Mutex<Live>>,
    pub deletes: mpsc::Sender<super::delivery::ToDelete>,
    /// Counts the requests in flight for the deployments that wait for them.
    pub intake: super::Intake,
    /// Requests in a row that could not reach nginx or the app: receives back off meanwhile.
    pub unreachable: std::sync::atomic::AtomicU32,
    pub meter: super::Meter,
}

pub(super) fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

impl Shared {
    pub fn live(&self) -> std::sync::MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Any answer means nginx or the app is there; a connection that fails does not.
    pub fn note_connection(&self, outcome: &Result<u16, super::post::PostFailure>) {
        use std::sync::atomic::Ordering;
        match outcome {
            Err(failure) if failure.unreachable => {
                self.unreachable.fetch_add(1, Ordering::Relaxed);
            }
            _ => self.unreachable.store(0, Ordering::Relaxed),
        }
    }

    /// How long to wait before the next receive while nothing answers: every message
    /// received now would fail and count a receive towards the dead-letter queue.
    fn unreachable_backoff(&self) -> Option<Duration> {
        let streak = self.unreachable.load(std::sync::atomic::Ordering::Relaxed);
        (streak > 0)
            .then(|| Duration::from_millis(250u64 << streak.min(7)).min(Duration::from_secs(30)))
    }
}

/// What stops new receives: `stop-apps` (the app is down on purpose: its messages must wait in
/// the queue, not run into the dead-letter queue), or a deployment moving traffic (the
/// engine's intake hold).
#[derive(Debug, Clone)]
pub(super) struct Gates {
    pub deployment: watch::Receiver<u32>,
    pub stopped: watch::Receiver<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closed {
    AppsStopped,
    Deployment,
}

impl Closed {
    fn why(self) -> &'static str {
        match self {
            Self::AppsStopped => {
                "the apps are stopped (stop-apps), messages wait in the queue until start"
            }
            Self::Deployment => "a deployment moves traffic (requests in flight finish)",
        }
    }
}

impl Gates {
    fn closed(&self) -> Option<Closed> {
        if *self.stopped.borrow() {
            Some(Closed::AppsStopped)
        } else if *self.deployment.borrow() > 0 {
            Some(Closed::Deployment)
        } else {
            None
        }
    }

    /// Waits for either to change; false when one is gone (the agent stops).
    async fn changed(&mut self) -> bool {
        tokio::select! {
            changed = self.deployment.changed() => changed.is_ok(),
            changed = self.stopped.changed() => changed.is_ok(),
        }
    }
}

/// The state shown and the log line, once per pause.
fn note_pause(shared: &Shared, paused: &mut Option<Closed>, closed: Closed) {
    shared.live().daemon.state = WorkerState::Paused;
    if *paused != Some(closed) {
        *paused = Some(closed);
        shared
            .log
            .line("message", &format!("intake paused: {}", closed.why()), None);
    }
}

/// Receives until `stop`, while the gates are open. A receive already waiting when a gate
/// closes is not cancelled (SQS may have made messages invisible for it): what it brings is
/// delivered during a deployment (nginx serves throughout) and made visible again at once
/// when the apps are stopped.
pub(super) async fn poll_loop(
    shared: Arc<Shared>,
    mut gates: Gates,
    stop: CancellationToken,
    posts: TaskTracker,
) {
    let permits = Arc::new(Semaphore::new(shared.settings.http_connections as usize));
    let mut backoff = Duration::from_secs(1);
    let mut paused = None;
    loop {
        while let Some(closed) = gates.closed() {
            note_pause(&shared, &mut paused, closed);
            tokio::select! {
                () = stop.cancelled() => return,
                open = gates.changed() => if !open { return },
            }
        }
        if paused.take().is_some() {
            shared.log.line("message", "intake resumed", None);
        }
        shared.live().daemon.state = WorkerState::Running;
        let Some(mut held) = free_permits(&permits, &stop).await else {
            return;
        };
        if gates.closed().is_some() {
            continue;
        }
        // Nothing answered the last requests: every message received now would fail.
        if let Some(wait) = shared.unreachable_backoff() {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
        let queue = shared.queue.clone();
        let (max, visibility) = (held.len() as i32, shared.settings.visibility_timeout);
        let mut receive = Box::pin(async move { queue.receive(max, visibility).await });
        let received = loop {
            tokio::select! {
                () = stop.cancelled() => {
                    // SQS may already be handing messages to this receive: let it end and
                    // give them back at once, rather than leave them invisible for the whole
                    // visibility timeout.
                    let shared = shared.clone();
                    posts.spawn(async move {
                        if let Ok(messages) = receive.await {
                            for message in &messages {
                                super::delivery::release_message(&shared, message, "the daemon stops").await;
                            }
                        }
                    });
                    return;
                }
                received = &mut receive => break received,
                open = gates.changed() => {
                    if !open {
                        return;
                    }
                    if let Some(closed) = gates.closed() {
                        note_pause(&shared, &mut paused, closed);
                    }
                }
            }
        };
        match received {
            Ok(messages) => {
                backoff = Duration::from_secs(1);
                received_now(&shared, &messages);
                let release = gates.closed() == Some(Closed::AppsStopped);
                for (message, permit) in messages.into_iter().zip(held.drain(..)) {
                    if release {
                        drop(permit);
                        let shared = shared.clone();
                        posts.spawn(async move {
                            super::delivery::release_message(
                                &shared,
                                &message,
                                "the apps are stopped",
                            )
                            .await
                        });
                    } else {
                        posts.spawn(super::delivery::deliver(shared.clone(), message, permit));
                    }
                }
            }
            Err(error) => {
                drop(held);
                receive_failed(&shared, &error);
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// At least one free connection (waiting for it), and as many more as are free, up to 10.
async fn free_permits(
    permits: &Arc<Semaphore>,
    stop: &CancellationToken,
) -> Option<Vec<OwnedSemaphorePermit>> {
    let first = tokio::select! {
        () = stop.cancelled() => return None,
        permit = permits.clone().acquire_owned() => permit.ok()?,
    };
    let mut held = vec![first];
    while held.len() < 10 {
        match permits.clone().try_acquire_owned() {
            Ok(permit) => held.push(permit),
            Err(_) => break,
        }
    }
    Some(held)
}

fn received_now(shared: &Shared, messages: &[Received]) {
    let now = now_ms();
    let mut live = shared.live();
    if live.daemon.poll_failures >= 2 {
        shared.events.info(
            "worker",
            format!(
                "The worker daemon receives from SQS queue {} again",
                shared.settings.queue_name()
            ),
        );
    }
    live.daemon.poll_failures = 0;
    live.daemon.poll_error = None;
    live.daemon.last_poll_at = Some(jiff::Timestamp::now().to_string());
    live.totals.received += messages.len() as u64;
    for message in messages {
        let age = message.age_ms(now).unwrap_or(0);
        live.window.received(now, age as u64);
    }
}

fn receive_failed(shared: &Shared, error: &str) {
    let second = {
        let mut live = shared.live();
        live.daemon.poll_failures += 1;
        live.daemon.poll_error = Some(error.to_string());
        live.daemon.poll_failures == 2
    };
    // One failure can pass; the second in a row is an event (and a health cause).
    if second {
        shared.events.error(
            "worker",
            format!(
                "The worker daemon failed to pull messages from SQS queue {} with error: {error}",
                shared.settings.queue_name()
            ),
        );
    }
    shared.log.line("sqs-err", error, None);
}
