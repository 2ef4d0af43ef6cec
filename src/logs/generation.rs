//! One generation of the logs tasks: the destination, the logs thread and the publisher,
//! started at agent start and again by each live reconfiguration of `[logs]`.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::fingerprint::Limits;
use super::{
    BundleJob, Inner, LogsError, Shared, destination, millis, open, plan, publish, rotate, task,
};
use crate::config::Config;
use crate::events::EventSink;
use crate::paths::Paths;
use crate::proxy::NginxRunner;
use crate::tasks::Spawner;

/// What one generation of the logs tasks hands to the next.
#[derive(Clone)]
pub(super) struct Carried {
    pub shared: Arc<Shared>,
    pub jobs: Arc<Mutex<BTreeMap<u64, BundleJob>>>,
    pub next_job: Arc<AtomicU64>,
}

pub(super) fn limits(config: &Config) -> Limits {
    let watch = &config.logs.watch;
    Limits {
        event_interval_ms: millis(watch.event_interval),
        max_events_per_minute: watch.max_events_per_minute,
        window_ms: millis(watch.health_window),
        max_fingerprints: 500,
        exemplars: 3,
        exemplar_chars: 16 * 1024,
    }
}

impl Inner {
    /// Builds the destination store, then starts the logs thread and the publisher.
    pub(super) async fn start(
        config: Arc<Config>,
        paths: Paths,
        events: EventSink,
        spawner: &Spawner,
        cancel: &CancellationToken,
        carried: Carried,
    ) -> Result<Self, LogsError> {
        let (store, instance_id) = destination::destination(&config, &paths).await?;
        let shared = carried.shared;
        shared.update(|status| {
            status.destination = store.as_ref().map(|s| s.describe());
            status.spool_budget_bytes = config.logs.spool_budget_bytes;
        });
        let stop = cancel.child_token();
        let state_dir = paths.logs_state_dir();
        let io = |context: &str| {
            let context = context.to_string();
            move |source| LogsError::Io { context, source }
        };
        let nginx = NginxRunner::new(config.proxy.nginx_binary.clone(), paths.nginx_dir());
        let rotator = rotate::Rotator::open(paths.rotated_log_dir(), &state_dir, nginx)
            .map_err(io("opening var/log/rotated"))?;
        let (commands, receiver) = mpsc::channel(8);
        let wake = Arc::new(Notify::new());
        let owners = open::Owners::resolve(&config.app.user);
        let logs_task = task::LogTask {
            paths: paths.clone(),
            config: config.clone(),
            shared: shared.clone(),
            events: events.clone(),
            rotator,
            commands: receiver,
            published_wake: wake.clone(),
            checkpoints_path: state_dir.join("checkpoints.json"),
            started: std::time::SystemTime::now(),
            owners,
            refusals: Default::default(),
        };
        let logs_thread = task::spawn_thread(logs_task, spawner, &stop)
            .map_err(io("starting the logs thread"))?;
        let publisher = publish::Publisher {
            store: store.clone(),
            dir: paths.rotated_log_dir(),
            prefix: plan::publish_prefix(&config.environment.id, &instance_id),
            state_path: state_dir.join("published.json"),
            config: config.logs.publish.clone(),
            budget: config.logs.spool_budget_bytes,
            events: events.clone(),
            shared: shared.clone(),
            wake,
        };
        let publisher = spawner.spawn("logs publisher", &stop, publisher.run(stop.child_token()));
        Ok(Self {
            events,
            owners,
            env_id: config.environment.id.clone(),
            paths,
            config,
            shared,
            commands,
            store,
            instance_id,
            jobs: carried.jobs,
            next_job: carried.next_job,
            stop,
            running: Mutex::new(vec![logs_thread, publisher]),
        })
    }
}
