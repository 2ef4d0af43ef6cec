//! Wiring: builds every module from the config, runs their tasks, and shuts them down.
//!
//! Startup: lock the root → open the event journal → resolve the app user → become the child
//! subreaper of the apps' orphans → re-adopt app processes → start tasks (the deploy task
//! first recovers an interrupted deployment) → bind the control socket →
//! READY=1. SIGHUP applies a changed config (`reload`). Shutdown (SIGTERM/SIGINT, or a task
//! that ended on its own: `tasks`): cancel every task and wait within the budget; the app
//! processes and nginx keep running (they outlive the agent); a second signal exits at once.

mod setup;
mod signals;

use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ConfigError;
use crate::controller_link::{ControllerLink, LinkStatus};
use crate::deploy::Engine;
use crate::events::{self, EventStore, Retention};
use crate::health::HealthMonitor;
use crate::local_api::{self, ApiState};
use crate::logs::LogService;
use crate::metrics::{CloudWatchSink, MetricsTask};
use crate::paths::Paths;
use crate::proxy::Proxy;
use crate::reload::{LinkRunner, Reloader};
use crate::supervise::{self, Supervisor};
use crate::tasks::{Spawner, TaskEnd};
use crate::worker::WorkerService;
use setup::{agent_info, install_get_config, lock_root, notify_ready, prepare_layout};
use signals::{Stop, second_signal, wait_for_stop};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    AppUser(#[from] supervise::UserError),
    #[error(transparent)]
    Controller(#[from] crate::controller_link::LinkError),
    #[error("another hostmanager agent already runs on root {0} (it holds {1})")]
    AlreadyRunning(PathBuf, PathBuf),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Startup(String),
    #[error("{0}")]
    TaskEnded(TaskEnd),
}

impl AgentError {
    /// sysexits: 78 for configuration problems, 70 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Config(_) | Self::AppUser(_) | Self::Controller(_) => 78,
            _ => 70,
        }
    }
}

pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> AgentError {
    let context = context.into();
    move |source| AgentError::Io { context, source }
}

/// Runs the agent until SIGTERM/SIGINT, or until one of its tasks ends on its own.
pub async fn run(
    paths: Paths,
    config_path: PathBuf,
    config_required: bool,
) -> Result<(), AgentError> {
    let (config, config_table) = crate::reload::read(&config_path, config_required)?;
    let config = Arc::new(config);
    std::fs::create_dir_all(paths.state_dir())
        .map_err(io(format!("creating {}", paths.state_dir().display())))?;
    let _lock = lock_root(&paths)?;
    let app_user = supervise::resolve_app_user(&config.app)?;
    prepare_layout(&paths)?;
    install_get_config(&paths);
    // Recorded by every agent, linked or not: the controller's "launched at" of a host that
    // joins one later is still its first start.
    crate::controller_link::first_start(&paths.state_dir());

    let retention = Retention {
        segment_bytes: config.events.segment_bytes,
        total_bytes: config.events.retention_bytes,
        max_age: config.events.max_age,
    };
    let store = EventStore::open(&paths.events_dir(), retention)
        .map_err(io("opening the event journal"))?;
    let (sink, event_rx) = events::channel();
    let root = CancellationToken::new();
    let tasks = TaskTracker::new();
    let (spawner, mut ended) = Spawner::new(tasks.clone(), sink.clone());
    spawner.spawn(
        "events",
        &root,
        events::run(store.clone(), event_rx, root.child_token()),
    );
    // Each config a SIGHUP applies: health, metrics and CloudWatch read their sections here.
    let (live_config, _) = tokio::sync::watch::channel(config.clone());

    // Orphans the apps leave behind are re-parented to the agent, which reaps them
    // (`Supervisor::run`), instead of init: they stay inside the supervision tree.
    if let Err(errno) = supervise::become_child_subreaper() {
        tracing::warn!(%errno, "cannot become a child subreaper; app orphans go to init");
    }
    // `stop-apps` keeps the apps and nginx down across agent restarts.
    let hold = supervise::StopHold::load(&paths);
    let apps_stopped = hold.subscribe();
    let supervisor = Supervisor::new(
        app_user,
        config.supervise.clone(),
        paths.clone(),
        sink.clone(),
        root.child_token(),
        hold.clone(),
    );
    supervisor
        .restore()
        .map_err(|e| AgentError::Startup(e.to_string()))?;
    let proxy = Proxy::new(
        config.proxy.clone(),
        [config.app.port, config.app.alternate_port],
        paths.clone(),
        sink.clone(),
        hold,
    );
    let (deployer, queue) = Engine::load(
        config.clone(),
        paths.clone(),
        supervisor.clone(),
        proxy.clone(),
        sink.clone(),
    )
    .map_err(io("loading the deployment state"))?;
    let (mut metrics, snapshots) =
        MetricsTask::new(config.metrics.window, &paths, supervisor.clone());
    metrics.with_config_updates(live_config.subscribe());
    let worker_meter = crate::worker::Meter::default();
    if config.worker.sqsd.is_some() {
        metrics.with_worker_meter(worker_meter.clone());
    }
    let (health, reports) = HealthMonitor::new(
        config.clone(),
        proxy.clone(),
        supervisor.clone(),
        deployer.subscribe(),
        sink.clone(),
    );
    let health = health
        .with_metrics(snapshots.clone())
        .with_config_updates(live_config.subscribe());
    let cloudwatch = config.cloudwatch.enabled.then(|| {
        let health = reports.clone();
        let (cloudwatch, status) = CloudWatchSink::new(
            config.cloudwatch.clone(),
            config.environment.clone(),
            config.aws.clone(),
            metrics.feed_sink(),
            Box::new(move || health.borrow().status.code()),
            sink.clone(),
        );
        let cloudwatch = cloudwatch.with_config_updates(live_config.subscribe());
        spawner.spawn("cloudwatch", &root, cloudwatch.run(root.child_token()));
        status
    });

    spawner.spawn(
        "supervisor",
        &root,
        supervisor.clone().run(root.child_token()),
    );
    let logs = LogService::start(config.clone(), paths.clone(), sink.clone(), &spawner, &root)
        .await
        .map_err(|e| AgentError::Startup(e.to_string()))?;
    let health = health.with_severe_errors(logs.severe_errors());
    let leadership = match config.controller.url {
        Some(_) => crate::worker::Leadership::linked(),
        None => crate::worker::Leadership::standalone(),
    };
    if let Some(current) = deployer.current() {
        // The read timeout the serving release's config was written with (a worker's).
        proxy.set_worker_timeout(
            crate::worker::effective(&config, current.settings.as_ref())
                .map(|sqsd| crate::worker::proxy_timeout(&sqsd)),
        );
    }
    let (worker, worker_status) = WorkerService::new(
        config.clone(),
        paths.clone(),
        deployer.subscribe(),
        deployer.intake(),
        apps_stopped,
        leadership.clone(),
        sink.clone(),
        proxy.enabled().then(|| proxy.listen()).map(|listen| {
            if listen.ip().is_unspecified() {
                std::net::SocketAddr::from(([127, 0, 0, 1], listen.port()))
            } else {
                listen
            }
        }),
        worker_meter,
    );
    let health = health.with_worker(worker_status.clone());
    let worker_intake = deployer.intake();
    if config.worker.sqsd.is_some() {
        spawner.spawn("worker", &root, worker.run(root.child_token()));
    }

    spawner.spawn("proxy", &root, proxy.clone().run(root.child_token()));
    spawner.spawn(
        "deploy",
        &root,
        deployer.clone().run(queue, root.child_token()),
    );
    spawner.spawn("metrics", &root, metrics.run(root.child_token()));
    spawner.spawn("health", &root, health.run(root.child_token()));

    let listener = local_api::bind(&paths.control_socket())
        .map_err(io(format!("binding {}", paths.control_socket().display())))?;
    let link_status = config.controller.url.as_ref().map(|url| {
        Arc::new(std::sync::Mutex::new(LinkStatus {
            url: url.clone(),
            ..Default::default()
        }))
    });
    let api = Arc::new(ApiState {
        info: agent_info(&paths, &config),
        deployer: deployer.clone(),
        supervisor: supervisor.clone(),
        proxy,
        health: reports,
        metrics: snapshots,
        cloudwatch,
        events: store,
        sink: sink.clone(),
        controller: link_status.clone(),
        logs: logs.clone(),
        shutdown: root.clone(),
        critical: TaskTracker::new(),
        worker: worker_status,
        leadership,
    });
    let mut link = None;
    if let (Some(url), Some(status)) = (config.controller.url.clone(), link_status) {
        let identity = crate::aws::resolve_identity(&config.environment, &config.aws).await;
        let controller = ControllerLink::new(
            api.clone(),
            &config,
            url,
            identity.instance_id.clone(),
            &paths,
            status.clone(),
        )?;
        let stop = root.child_token();
        let task = spawner.spawn("controller link", &stop, controller.run(stop.clone()));
        link = Some(LinkRunner {
            api: api.clone(),
            paths: paths.clone(),
            instance_id: identity.instance_id,
            status,
            stop,
            task,
        });
    }
    spawner.spawn(
        "control API",
        &root,
        local_api::serve(listener, api, root.child_token()),
    );
    sink.info(
        "agent",
        format!(
            "hostmanager {} started on root {}",
            env!("CARGO_PKG_VERSION"),
            paths.root().display()
        ),
    );
    notify_ready();

    let mut reloader = Reloader {
        path: config_path,
        required: config_required,
        running: config.clone(),
        running_table: config_table,
        publish: live_config,
        deployer,
        logs: logs.clone(),
        link,
        events: sink.clone(),
        spawner,
        root: root.clone(),
    };
    let stop = wait_for_stop(&mut reloader, &mut ended).await?;
    // The config in force now (SIGHUP may have changed it) decides the shutdown's budgets.
    let config = reloader.running.clone();
    match &stop {
        Stop::Signal => tracing::info!("stopping; app processes and nginx keep running"),
        Stop::TaskEnded(end) => {
            tracing::error!("stopping because {end}; app processes and nginx keep running")
        }
    }
    // A worker receives nothing more while the logs are flushed (its requests finish).
    let _no_receives = worker_intake.pause();
    if config.logs.publish.enabled && config.logs.publish.flush_on_stop {
        // The host may be going away for good: publish what the logs hold now, within most of
        // the shutdown budget (the rest is for the tasks).
        let pending = logs.flush(config.agent.shutdown_timeout.mul_f64(0.7)).await;
        if pending > 0 {
            tracing::warn!(
                pending,
                "stopping with rotated logs not yet published; they are published after the next start"
            );
        }
    }
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    root.cancel();
    tasks.close();
    let budget = config.agent.shutdown_timeout;
    let finished = async {
        tasks.wait().await;
        supervisor.wait_monitors().await;
    };
    tokio::select! {
        () = finished => {}
        () = tokio::time::sleep(budget) => tracing::warn!("shutdown budget of {budget:?} exhausted; exiting anyway"),
        () = second_signal() => tracing::warn!("second signal: exiting at once"),
    }
    let _ = std::fs::remove_file(paths.control_socket());
    match stop {
        Stop::Signal => Ok(()),
        Stop::TaskEnded(end) => Err(AgentError::TaskEnded(end)),
    }
}
