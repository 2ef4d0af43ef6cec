//! The worker task: runs the daemon with the serving release's settings (none before the first
//! release: there is no app to post to), starts it again when a deployment changes them or
//! the periodic tasks, and publishes its status every second. Stopping (agent shutdown, new
//! settings) ends the receives at once and lets the requests in flight finish: their messages
//! are deleted or returned as usual.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::cron::PeriodicTask;
use super::daemon::{self, Live, Shared, Target};
use super::log::SqsdLog;
use super::scheduler::Scheduler;
use super::sqs::Queue;
use super::stats::{QueueDepth, WorkerState, WorkerStatus};
use super::{Intake, Leadership};
use crate::config::{Config, SqsdSettings};
use crate::deploy::DeployState;
use crate::events::EventSink;
use crate::paths::Paths;

#[derive(Debug)]
pub struct WorkerService {
    config: Arc<Config>,
    paths: Paths,
    deploy: watch::Receiver<DeployState>,
    intake: Intake,
    /// `stop-apps` holds the apps down.
    stopped: watch::Receiver<bool>,
    leadership: Leadership,
    events: EventSink,
    /// nginx's listener; `None` without nginx (the web process is posted to directly).
    proxy: Option<SocketAddr>,
    publish: watch::Sender<Option<WorkerStatus>>,
    meter: super::Meter,
}

/// What one run of the daemon is for: a change of either starts a new one.
type Wanted = (SqsdSettings, Vec<PeriodicTask>);

struct Running {
    wanted: Wanted,
    stop: CancellationToken,
    live: Arc<Mutex<Live>>,
    /// The receive loop and the scheduler: awaited before another run starts, so two never
    /// send the same periodic run.
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    async fn stop(self) -> Arc<Mutex<Live>> {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        self.live
    }
}

impl WorkerService {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: Arc<Config>,
        paths: Paths,
        deploy: watch::Receiver<DeployState>,
        intake: Intake,
        stopped: watch::Receiver<bool>,
        leadership: Leadership,
        events: EventSink,
        proxy: Option<SocketAddr>,
        meter: super::Meter,
    ) -> (Self, watch::Receiver<Option<WorkerStatus>>) {
        let (publish, status) = watch::channel(None);
        let service = Self {
            config,
            paths,
            deploy,
            intake,
            stopped,
            leadership,
            events,
            proxy,
            publish,
            meter,
        };
        (service, status)
    }

    pub async fn run(mut self, cancel: CancellationToken) {
        let (log, writer) = SqsdLog::start(self.paths.root());
        let writer = tokio::spawn(writer);
        let posts = TaskTracker::new();
        let mut running: Option<Running> = None;
        let mut ticks = tokio::time::interval(Duration::from_secs(1));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let wanted = {
                let state = self.deploy.borrow_and_update();
                state.current.as_ref().and_then(|current| {
                    let settings = current.settings.as_ref();
                    super::effective(&self.config, settings).map(|sqsd| {
                        (
                            sqsd,
                            settings
                                .map(|s| s.periodic_tasks.clone())
                                .unwrap_or_default(),
                        )
                    })
                })
            };
            if running.as_ref().map(|r| &r.wanted) != wanted.as_ref() {
                if let Some(old) = running.take() {
                    old.stop().await;
                }
                running = match wanted {
                    Some(wanted) => self.start(wanted, &log, &posts).await,
                    None => None,
                };
            }
            self.publish_status(running.as_ref());
            tokio::select! {
                () = cancel.cancelled() => break,
                changed = self.deploy.changed() => if changed.is_err() { break },
                _ = ticks.tick() => {}
            }
        }
        if let Some(running) = running {
            running
                .stop()
                .await
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .daemon
                .state = WorkerState::Stopped;
        }
        // Requests in flight finish (within the agent's shutdown budget): their messages are
        // deleted or returned; the deletes are flushed when the last one is done.
        posts.close();
        posts.wait().await;
        drop(log);
        let _ = writer.await;
    }

    async fn start(&self, wanted: Wanted, log: &SqsdLog, posts: &TaskTracker) -> Option<Running> {
        let (settings, tasks) = &wanted;
        let stop = CancellationToken::new();
        let live = Arc::new(Mutex::new(Live::default()));
        let connected = Queue::connect(&self.config.aws, &settings.queue_url)
            .await
            .and_then(|queue| Ok((queue, super::post::http_client(settings)?)));
        let (queue, http) = match connected {
            Ok(connected) => connected,
            Err(error) => {
                // A configuration problem (no region): shown as a stopped daemon, and tried
                // again when the settings change.
                self.events.error(
                    "worker",
                    format!(
                        "The worker daemon cannot reach SQS queue {}: {error}",
                        settings.queue_name()
                    ),
                );
                let mut state = live.lock().unwrap_or_else(|p| p.into_inner());
                state.daemon.state = WorkerState::Stopped;
                state.daemon.poll_error = Some(error);
                state.daemon.poll_failures = u32::MAX;
                drop(state);
                return Some(Running {
                    wanted,
                    stop,
                    live,
                    tasks: Vec::new(),
                });
            }
        };
        let target = match self.proxy {
            Some(addr) => Target::Proxy(addr),
            None => Target::App(self.deploy.clone()),
        };
        let (deletes, deletes_rx) = mpsc::channel(1024);
        let shared = Arc::new(Shared {
            queue: queue.clone(),
            settings: Arc::new(settings.clone()),
            http,
            target,
            events: self.events.clone(),
            log: log.clone(),
            live: live.clone(),
            deletes,
            meter: self.meter.clone(),
            intake: self.intake.clone(),
            unreachable: std::sync::atomic::AtomicU32::new(0),
        });
        // Posts hold the deleter's sender: it ends after the last one.
        posts.spawn(super::delivery::delete_loop(
            queue.clone(),
            deletes_rx,
            log.clone(),
            self.events.clone(),
        ));
        let shown = match self.proxy {
            Some(addr) => format!("http://localhost:{}{}", addr.port(), settings.http_path),
            None => format!("the web process at {}", settings.http_path),
        };
        let mut text = format!(
            "Worker daemon started: SQS queue {}, POST to {shown}, {} connections, visibility {} s, error visibility {} s, inactivity timeout {} s",
            settings.queue_name(),
            settings.http_connections,
            settings.visibility_timeout,
            settings.error_visibility_timeout,
            settings.inactivity_timeout
        );
        if !tasks.is_empty() {
            text.push_str(&format!(
                "; Successfully loaded {} scheduled tasks from cron.yaml.",
                tasks.len()
            ));
        }
        self.events.info("worker", text);
        for warning in settings.warnings() {
            self.events.warn("worker", warning);
        }
        log.line(
            "message",
            &format!("daemon started, polling {}", settings.queue_url),
            None,
        );
        let mut handles = vec![tokio::spawn(daemon::poll_loop(
            shared.clone(),
            daemon::Gates {
                deployment: self.intake.subscribe(),
                stopped: self.stopped.clone(),
            },
            stop.clone(),
            posts.clone(),
        ))];
        tokio::spawn(queue_stats(
            shared,
            self.config.worker.stats_interval,
            stop.clone(),
        ));
        if !tasks.is_empty() {
            let scheduler = Scheduler {
                queue,
                tasks: tasks.clone(),
                leadership: self.leadership.clone(),
                state_file: self.paths.state_dir().join("worker-cron.json"),
                live: live.clone(),
                log: log.clone(),
                events: self.events.clone(),
            };
            handles.push(tokio::spawn(scheduler.run(stop.clone())));
        }
        Some(Running {
            wanted,
            stop,
            live,
            tasks: handles,
        })
    }

    fn publish_status(&self, running: Option<&Running>) {
        let status = running.map(|running| {
            let now = daemon::now_ms();
            let mut live = running.live.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(summary) = live.digest.flush(now) {
                self.events.warn("worker", summary);
            }
            let settings = &running.wanted.0;
            WorkerStatus {
                queue_url: settings.queue_url.clone(),
                queue: settings.queue_name().to_string(),
                http_connections: settings.http_connections,
                daemon: live.daemon.clone(),
                last_minute: live.window.summary(now),
                totals: live.totals.clone(),
                periodic: live.periodic.clone(),
            }
        });
        self.publish.send_replace(status);
    }
}

/// The queue's depth every `interval`, and once what its redrive policy says of `MaxRetries`.
async fn queue_stats(shared: Arc<Shared>, interval: Duration, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(interval);
    let mut checked_redrive = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let attributes = tokio::select! {
            () = stop.cancelled() => return,
            found = shared.queue.attributes() => found,
        };
        let Ok(attributes) = attributes else {
            continue;
        };
        if !checked_redrive {
            checked_redrive = true;
            let max_retries = shared.settings.max_retries;
            match attributes.max_receive_count() {
                None => shared.events.warn("worker", format!(
                    "SQS queue {} has no dead-letter queue: a message the app keeps failing comes back until its retention period ends (MaxRetries {max_retries} needs a redrive policy with that maxReceiveCount)",
                    shared.settings.queue_name()
                )),
                Some(count) if count != max_retries => shared.events.warn("worker", format!(
                    "SQS queue {}'s redrive policy moves a message to its dead-letter queue after {count} receives, not MaxRetries = {max_retries}: SQS's count is the one that applies",
                    shared.settings.queue_name()
                )),
                Some(_) => {}
            }
        }
        let mut live = shared.live();
        live.daemon.dead_letter = attributes.redrive_policy.clone();
        live.daemon.queue_depth = Some(QueueDepth {
            visible: attributes.visible,
            not_visible: attributes.not_visible,
            delayed: attributes.delayed,
            read_at: jiff::Timestamp::now().to_string(),
        });
    }
}
