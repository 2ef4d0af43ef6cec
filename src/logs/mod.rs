//! Logs: the severe-error watcher, rotation, publication of rotated files (S3 or a directory,
//! Elastic Beanstalk's key layout), and tail/bundle on request.
//!
//! Pure cores: `classify` (severe lines, stack-trace grouping), `fingerprint` (normalising,
//! counting, rate limiting), `plan` (rotation decisions, names and keys, spool shedding,
//! backoff, tail format). I/O shells: `tailer`, `rotate`, `task` (follow + rotate), `publish`
//! (the spool's uploader), `collect` (tail and bundle).

pub mod classify;
mod collect;
mod compress;
mod copy;
mod destination;
pub mod fingerprint;
mod generation;
mod healthd;
mod lines;
mod open;
pub mod plan;
mod publish;
mod requests;
mod rotate;
mod sources;
mod tailer;
mod task;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use crate::tasks::Spawner;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

pub use collect::{BundleJob, JobState, TailReport};
pub use compress::gzip_file;
pub use fingerprint::{ErrorEntry, WindowSummary};
pub use publish::{PublishError, upload_verified};

use crate::config::Config;
use crate::events::EventSink;
use crate::paths::Paths;
use crate::store::ObjectStore;
use fingerprint::{ErrorTable, Report};
use generation::{Carried, limits};

#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    #[error("logs: {context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("logs.publish.destination: {0}")]
    Destination(String),
}

/// `GET /v1/logs/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogStatus {
    pub watched_files: Vec<String>,
    pub rotations: u64,
    pub destination: Option<String>,
    pub spool_files: u64,
    pub spool_bytes: u64,
    pub spool_budget_bytes: u64,
    /// Rotated files not yet confirmed by the destination.
    pub pending_files: u64,
    pub published_total: u64,
    pub publish_failures: u64,
    pub last_error: Option<String>,
    /// Unpublished files deleted to keep the spool within its budget.
    pub shed_files: u64,
    pub shed_bytes: u64,
    pub severe_errors: WindowSummary,
    pub events_suppressed: u64,
    /// Lines of watched logs longer than 64 KiB, cut to that length.
    #[serde(default)]
    pub truncated_lines: u64,
}

/// State shared by the tasks, the control API and health.
#[derive(Debug)]
pub struct Shared {
    status: Mutex<LogStatus>,
    errors: Mutex<ErrorTable>,
    severe: watch::Sender<WindowSummary>,
}

impl Shared {
    fn update(&self, change: impl FnOnce(&mut LogStatus)) {
        change(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()));
    }

    fn table(&self) -> std::sync::MutexGuard<'_, ErrorTable> {
        self.errors.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record_error(
        &self,
        now_ms: i64,
        block: &classify::SevereBlock,
        file: &str,
    ) -> Option<Report> {
        let mut table = self.table();
        let report = table.record(now_ms, block, file);
        let window = table.window(now_ms);
        let suppressed = table.suppressed;
        drop(table);
        self.publish_window(window, suppressed);
        report
    }

    fn due_summaries(&self, now_ms: i64) -> Vec<Report> {
        let mut table = self.table();
        let reports = table.due_summaries(now_ms);
        let window = table.window(now_ms);
        let suppressed = table.suppressed;
        drop(table);
        self.publish_window(window, suppressed);
        reports
    }

    fn publish_window(&self, window: WindowSummary, suppressed: u64) {
        self.severe.send_if_modified(|current| {
            let changed = *current != window;
            *current = window.clone();
            changed
        });
        self.update(|status| {
            status.severe_errors = window;
            status.events_suppressed = suppressed;
        });
    }
}

enum Command {
    Rotate(oneshot::Sender<Vec<String>>),
}

/// The handle the control API and health use. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LogService {
    /// Replaced whole by a live reconfiguration (`reconfigure`), which every clone sees.
    inner: Arc<Mutex<Arc<Inner>>>,
}

struct Inner {
    paths: Paths,
    config: Arc<Config>,
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
    store: Option<Arc<dyn ObjectStore>>,
    events: EventSink,
    owners: open::Owners,
    env_id: String,
    instance_id: String,
    /// Bundle jobs outlive a reconfiguration.
    jobs: Arc<Mutex<BTreeMap<u64, BundleJob>>>,
    next_job: Arc<AtomicU64>,
    /// Stops this generation's logs thread and publisher (a reconfiguration, not shutdown).
    stop: CancellationToken,
    running: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogService")
            .field("env_id", &self.env_id)
            .field("instance_id", &self.instance_id)
            .finish_non_exhaustive()
    }
}

impl LogService {
    /// Builds the destination store, then starts the logs task and the publisher.
    pub async fn start(
        config: Arc<Config>,
        paths: Paths,
        events: EventSink,
        spawner: &Spawner,
        cancel: &CancellationToken,
    ) -> Result<Self, LogsError> {
        let shared = Arc::new(Shared {
            status: Mutex::new(LogStatus::default()),
            errors: Mutex::new(ErrorTable::new(limits(&config))),
            severe: watch::channel(WindowSummary::default()).0,
        });
        let carried = Carried {
            shared,
            jobs: Arc::default(),
            next_job: Arc::new(AtomicU64::new(1)),
        };
        let inner = Inner::start(config, paths, events, spawner, cancel, carried).await?;
        Ok(Self {
            inner: Arc::new(Mutex::new(Arc::new(inner))),
        })
    }

    fn inner(&self) -> Arc<Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A live reconfiguration of `[logs]`: the logs thread and the publisher stop at a safe
    /// point (as at shutdown: checkpoints and the spool are on disk), then start again from
    /// `config`. The status, the error table and bundle jobs carry over. When the new config
    /// cannot start (its destination), the previous one starts again and the error is returned.
    pub async fn reconfigure(
        &self,
        config: Arc<Config>,
        spawner: &Spawner,
        cancel: &CancellationToken,
    ) -> Result<(), LogsError> {
        let old = self.inner();
        old.stop.cancel();
        let running = std::mem::take(&mut *old.running.lock().unwrap_or_else(|p| p.into_inner()));
        for handle in running {
            let _ = handle.await;
        }
        old.shared.table().set_limits(limits(&config));
        let carried = Carried {
            shared: old.shared.clone(),
            jobs: old.jobs.clone(),
            next_job: old.next_job.clone(),
        };
        let (paths, events) = (old.paths.clone(), old.events.clone());
        let started = Inner::start(
            config,
            paths.clone(),
            events.clone(),
            spawner,
            cancel,
            carried.clone(),
        )
        .await;
        let (next, outcome) = match started {
            Ok(next) => (next, Ok(())),
            Err(error) => {
                old.shared.table().set_limits(limits(&old.config));
                let previous =
                    Inner::start(old.config.clone(), paths, events, spawner, cancel, carried)
                        .await?;
                (previous, Err(error))
            }
        };
        *self.inner.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
        outcome
    }

    pub fn status(&self) -> LogStatus {
        self.inner()
            .shared
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Every fingerprint seen since the agent started, most frequent first.
    pub fn errors(&self) -> Vec<ErrorEntry> {
        self.inner().shared.table().entries()
    }

    /// Severe errors in the health window, for the health cause.
    pub fn severe_errors(&self) -> watch::Receiver<WindowSummary> {
        self.inner().shared.severe.subscribe()
    }

    /// Rotates every non-empty log now; the names of the new rotated files.
    pub async fn rotate_now(&self) -> Result<Vec<String>, String> {
        task::request_rotation(&self.inner().commands)
            .await
            .ok_or_else(|| "the logs task is not running".to_string())
    }

    /// Rotates every log and waits, up to `budget`, until the destination confirmed every
    /// rotated file. Returns how many files are still waiting (0: all published).
    pub async fn flush(&self, budget: std::time::Duration) -> u64 {
        if self.inner().store.is_none() {
            return 0;
        }
        let until = tokio::time::Instant::now() + budget;
        if tokio::time::timeout(budget, self.rotate_now())
            .await
            .is_err()
        {
            return self.status().pending_files;
        }
        loop {
            // Rotated files are compressed in the background (`.name.part` until done): the
            // spool is flushed when none is in the works and none waits for its upload.
            let pending = self.status().pending_files + self.files_in_the_works();
            if pending == 0 || tokio::time::Instant::now() >= until {
                return pending;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    fn files_in_the_works(&self) -> u64 {
        std::fs::read_dir(self.inner().paths.rotated_log_dir())
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
                    .count() as u64
            })
            .unwrap_or(0)
    }

    /// Writes a tail report locally (0600, in the 0700 requests directory; off the runtime)
    /// and uploads it when a destination is configured.
    pub async fn tail(&self) -> Result<TailReport, String> {
        let inner = self.inner();
        let written = tokio::task::spawn_blocking(move || {
            let found = sources::discover(&inner.paths, &inner.config.logs, &inner.owners);
            let text = collect::tail_text(
                inner.paths.root(),
                &found.sources,
                inner.config.logs.tail_lines,
            );
            let name = format!("TailLogs-{}.out", jiff::Timestamp::now().as_millisecond());
            let dir = inner.paths.logs_requests_dir();
            let path = dir.join(&name);
            collect::requests_dir(&dir)
                .and_then(|()| crate::fsutil::write_atomic(&path, text.as_bytes(), 0o600))
                .map_err(|e| format!("{}: {e}", path.display()))?;
            collect::prune(&dir, "TailLogs-", 5);
            Ok::<_, String>((found.refused, name, path, text))
        })
        .await
        .map_err(|e| format!("writing the tail report: {e}"))?;
        let (refused, name, path, text) = written?;
        self.report_refused(&refused);
        let inner = &self.inner();
        let (mut key, mut upload_error) = (None, None);
        if let Some(store) = &inner.store {
            let object = plan::tail_key(&inner.env_id, &inner.instance_id, &name);
            match upload_verified(store, &object, &path).await {
                Ok(_) => key = Some(object),
                Err(error) => upload_error = Some(error.to_string()),
            }
        }
        Ok(TailReport {
            name,
            path: path.display().to_string(),
            key,
            upload_error,
            text,
        })
    }
}

impl LogService {
    /// Logs a tail or bundle left out, and why (the logs task reports the same paths once).
    fn report_refused(&self, refused: &[(String, String)]) {
        for (relative, why) in refused {
            self.inner().events.warn(
                "logs",
                format!("{relative} is left out of the request: {why}"),
            );
        }
    }
}

fn millis(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
