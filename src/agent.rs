//! Wiring: builds every module from the config, runs their tasks, and shuts them down.
//!
//! Startup: lock the root → open the event journal → resolve the app user → become the child
//! subreaper of the apps' orphans → re-adopt app processes → start tasks (the deploy task
//! first recovers an interrupted deployment) → bind the control socket →
//! READY=1. Shutdown (SIGTERM/SIGINT): cancel every task and wait within the budget; the app
//! processes and nginx keep running (they outlive the agent); a second signal exits at once.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{self, Config, ConfigError};
use crate::controller_link::{ControllerLink, LinkStatus};
use crate::deploy::Engine;
use crate::events::{self, EventStore, Retention};
use crate::health::HealthMonitor;
use crate::local_api::{self, AgentInfo, ApiState};
use crate::logs::LogService;
use crate::metrics::{CloudWatchSink, MetricsTask};
use crate::paths::Paths;
use crate::proxy::Proxy;
use crate::supervise::{self, Supervisor};
use crate::worker::WorkerService;

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

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> AgentError {
    let context = context.into();
    move |source| AgentError::Io { context, source }
}

/// Runs the agent until SIGTERM/SIGINT.
pub async fn run(
    paths: Paths,
    config_path: PathBuf,
    config_required: bool,
) -> Result<(), AgentError> {
    let config = Arc::new(config::load(&config_path, config_required)?);
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
    tasks.spawn(events::run(store.clone(), event_rx, root.child_token()));

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
    let health = health.with_metrics(snapshots.clone());
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
        tasks.spawn(cloudwatch.run(root.child_token()));
        status
    });

    tasks.spawn(supervisor.clone().run(root.child_token()));
    let logs = LogService::start(config.clone(), paths.clone(), sink.clone(), &tasks, &root)
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
        tasks.spawn(worker.run(root.child_token()));
    }

    tasks.spawn(proxy.clone().run(root.child_token()));
    tasks.spawn(deployer.clone().run(queue, root.child_token()));
    tasks.spawn(metrics.run(root.child_token()));
    tasks.spawn(health.run(root.child_token()));

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
        deployer,
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
    if let (Some(url), Some(status)) = (config.controller.url.clone(), link_status) {
        let identity = crate::aws::resolve_identity(&config.environment, &config.aws).await;
        let link = ControllerLink::new(
            api.clone(),
            &config,
            url,
            identity.instance_id,
            &paths,
            status,
        )?;
        tasks.spawn(link.run(root.child_token()));
    }
    tasks.spawn(local_api::serve(listener, api, root.child_token()));
    sink.info(
        "agent",
        format!(
            "hostmanager {} started on root {}",
            env!("CARGO_PKG_VERSION"),
            paths.root().display()
        ),
    );
    notify_ready();

    wait_for_stop(&config_path).await?;
    tracing::info!("stopping; app processes and nginx keep running");
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
    Ok(())
}

fn agent_info(paths: &Paths, config: &Config) -> AgentInfo {
    AgentInfo {
        version: env!("CARGO_PKG_VERSION").to_string(),
        pid: std::process::id(),
        root: paths.root().display().to_string(),
        environment: config.environment.name.clone(),
        started_at: jiff::Timestamp::now().to_string(),
        events_dropped: 0,
    }
}

/// One agent per root: an exclusive lock held for the agent's life.
fn lock_root(paths: &Paths) -> Result<nix::fcntl::Flock<std::fs::File>, AgentError> {
    let path = paths.lock_file();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(format!("opening {}", path.display())))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|_| AgentError::AlreadyRunning(paths.root().to_path_buf(), path))
}

fn prepare_layout(paths: &Paths) -> Result<(), AgentError> {
    use std::os::unix::fs::PermissionsExt;
    for dir in [
        paths.deployments_dir(),
        paths.releases_dir(),
        paths.agent_log_dir(),
        paths.run_dir(),
    ] {
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    }
    // Secrets (environment properties) live under the state directory: root only.
    std::fs::set_permissions(
        paths.deployments_dir(),
        std::fs::Permissions::from_mode(0o700),
    )
    .map_err(io("securing the deployments directory"))?;
    Ok(())
}

/// `/opt/elasticbeanstalk/bin/get-config`, where Elastic Beanstalk's hooks and scripts call
/// it: a two-line script running this binary's `get-config` (root's, 0755). The package
/// installs the same file; the agent keeps it pointing at the binary that runs.
fn install_get_config(paths: &Paths) {
    let path = paths.root().join("opt/elasticbeanstalk/bin/get-config");
    let quote = |text: &str| format!("'{}'", text.replace('\'', "'\\''"));
    let Ok(binary) = std::env::current_exe() else {
        return;
    };
    let script = format!(
        "#!/bin/sh\n# Written by hostmanager: Elastic Beanstalk's get-config.\nexec {} --root {} get-config \"$@\"\n",
        quote(&binary.display().to_string()),
        quote(&paths.root().display().to_string()),
    );
    if std::fs::read_to_string(&path).is_ok_and(|text| text == script) {
        return;
    }
    if let Err(error) = crate::fsutil::write_atomic(&path, script.as_bytes(), 0o755) {
        tracing::warn!(%error, path = %path.display(), "cannot install get-config");
    }
}

fn notify_ready() {
    if std::env::var_os("NOTIFY_SOCKET").is_some()
        && let Err(error) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready])
    {
        tracing::warn!(%error, "cannot notify systemd");
    }
}

/// Waits for SIGTERM or SIGINT. SIGHUP re-validates the config file.
async fn wait_for_stop(config_path: &std::path::Path) -> Result<(), AgentError> {
    let mut terminate =
        signal(SignalKind::terminate()).map_err(io("installing the SIGTERM handler"))?;
    let mut interrupt =
        signal(SignalKind::interrupt()).map_err(io("installing the SIGINT handler"))?;
    let mut hangup = signal(SignalKind::hangup()).map_err(io("installing the SIGHUP handler"))?;
    loop {
        tokio::select! {
            _ = terminate.recv() => return Ok(()),
            _ = interrupt.recv() => return Ok(()),
            _ = hangup.recv() => match config::load(config_path, false) {
                Ok(_) => tracing::info!("SIGHUP: {} is valid; restart the agent to apply it (apps keep running)", config_path.display()),
                Err(error) => tracing::error!("SIGHUP: {error}"),
            },
        }
    }
}

async fn second_signal() {
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
