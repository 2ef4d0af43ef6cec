//! Publication of rotated logs: every `<path_key>-<epoch>.gz` in `var/log/rotated/` goes to
//! `resources/environments/logs/publish/<env-id>/<instance-id>/<same name>`. The key is
//! deterministic and the put is create-only, so a retry or a restart never duplicates; a file
//! counts as published only once the stored object's size and ETag (MD5) match the local file.
//! Failures back off (capped, jittered) per file. The spool keeps a disk budget: published
//! files go first, then the oldest, lowest-priority unpublished ones, with an event.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::plan::{SpoolFile, backoff, parse_rotated_name, plan_shed};
use crate::config::PublishConfig;
use crate::events::{EventSink, NewEvent, Severity};
use crate::fsutil::{read_json, write_json_atomic};
use crate::store::{ObjectStore, PutOptions, PutOutcome, StoreError, file_etag};

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{key}: the stored object ({size} bytes, ETag {etag}) differs from {path} ({local_size} bytes, ETag {local_etag})"
    )]
    Mismatch {
        key: String,
        path: PathBuf,
        size: u64,
        etag: String,
        local_size: u64,
        local_etag: String,
        existed: bool,
    },
    #[error("{key}: not found right after it was stored")]
    Missing { key: String },
}

/// Uploads `path` to `key` create-only and confirms the stored bytes by size and ETag.
pub async fn upload_verified(
    store: &Arc<dyn ObjectStore>,
    key: &str,
    path: &Path,
) -> Result<PutOutcome, PublishError> {
    let io = |source| PublishError::Io {
        path: path.to_path_buf(),
        source,
    };
    let local_size = tokio::fs::metadata(path).await.map_err(io)?.len();
    let part = store.part_size_for(local_size);
    let hashed = path.to_path_buf();
    let local_etag = tokio::task::spawn_blocking(move || file_etag(&hashed, part))
        .await
        .map_err(|join| io(std::io::Error::other(join.to_string())))?
        .map_err(io)?;
    let options = PutOptions {
        if_none_match: true,
        content_type: Some("application/gzip".into()),
    };
    let outcome = store.put_file(key, path, options).await?;
    let stored = store
        .head(key)
        .await?
        .ok_or_else(|| PublishError::Missing {
            key: key.to_string(),
        })?;
    let etag_differs = stored.etag.as_ref().is_some_and(|etag| *etag != local_etag);
    if stored.size != local_size || etag_differs {
        return Err(PublishError::Mismatch {
            key: key.to_string(),
            path: path.to_path_buf(),
            size: stored.size,
            etag: stored.etag.unwrap_or_default(),
            local_size,
            local_etag,
            existed: outcome == PutOutcome::AlreadyExists,
        });
    }
    Ok(outcome)
}

/// Shedding order: the app's errors are kept longest, access logs go first.
pub fn priority(path_key: &str) -> u8 {
    if path_key.ends_with(".stderr.log") {
        3
    } else if path_key.ends_with(".stdout.log") {
        1
    } else if path_key.ends_with("access.log") {
        0
    } else {
        2
    }
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct PublishedState {
    names: BTreeSet<String>,
}

#[derive(Debug, Clone, Copy)]
struct Retry {
    attempts: u32,
    next: Instant,
}

#[derive(Debug)]
pub struct Publisher {
    pub store: Option<Arc<dyn ObjectStore>>,
    pub dir: PathBuf,
    pub prefix: String,
    pub state_path: PathBuf,
    pub config: PublishConfig,
    pub budget: u64,
    pub events: EventSink,
    pub shared: Arc<Shared>,
    pub wake: Arc<Notify>,
}

type Uploads = JoinSet<(String, Result<PutOutcome, PublishError>)>;

/// What the publisher keeps between passes.
#[derive(Debug, Default)]
struct Progress {
    state: PublishedState,
    retries: HashMap<String, Retry>,
    /// Names being uploaded right now.
    busy: HashSet<String>,
}

impl Publisher {
    /// Uploads run in the background: a slow or hanging upload never delays the budget, the
    /// status, or the other files.
    pub async fn run(self, cancel: CancellationToken) {
        let mut progress = Progress {
            state: read_json(&self.state_path)
                .ok()
                .flatten()
                .unwrap_or_default(),
            ..Default::default()
        };
        let mut uploads: Uploads = JoinSet::new();
        // Only this agent uploads under its instance's prefix: an unfinished upload there was
        // left by a predecessor killed mid-upload. Its file is uploaded again from the spool.
        if let Some(store) = &self.store {
            match store.abort_unfinished(&self.prefix).await {
                Ok(0) => {}
                Ok(count) => tracing::info!(
                    "aborted {count} unfinished multipart upload(s) under {}",
                    self.prefix
                ),
                Err(error) => tracing::warn!(%error, "cannot list unfinished multipart uploads"),
            }
        }
        loop {
            let next_retry = self.pass(&mut progress, &mut uploads);
            let deadline = next_retry
                .unwrap_or_else(|| Instant::now() + self.config.interval)
                .min(Instant::now() + self.config.interval);
            tokio::select! {
                // Dropping `uploads` aborts them; the files stay in the spool for next time.
                () = cancel.cancelled() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep_until(deadline) => {}
                Some(joined) = uploads.join_next(), if !uploads.is_empty() => {
                    if let Ok((name, outcome)) = joined {
                        self.finished(&mut progress, name, outcome);
                    }
                }
            }
        }
    }

    fn finished(
        &self,
        progress: &mut Progress,
        name: String,
        outcome: Result<PutOutcome, PublishError>,
    ) {
        progress.busy.remove(&name);
        match outcome {
            Ok(_) => {
                progress.retries.remove(&name);
                progress.state.names.insert(name);
                self.shared.update(|status| status.published_total += 1);
                self.save(&progress.state);
            }
            Err(error) => self.failed(&name, &error, &mut progress.retries),
        }
    }

    fn save(&self, state: &PublishedState) {
        if let Err(error) = write_json_atomic(&self.state_path, state, 0o600) {
            tracing::warn!(%error, "cannot save {}", self.state_path.display());
        }
    }

    /// Enforces the budget, updates the status and starts the uploads that are due. Returns
    /// the earliest retry time.
    fn pass(&self, progress: &mut Progress, uploads: &mut Uploads) -> Option<Instant> {
        let files = self.scan(&progress.state);
        let before = progress.state.names.len();
        progress
            .state
            .names
            .retain(|name| files.iter().any(|f| &f.name == name));
        if progress.state.names.len() != before {
            self.save(&progress.state);
        }
        let shed = self.enforce_budget(&files);
        let mut pending: Vec<&SpoolFile> = files
            .iter()
            .filter(|f| !f.published && !shed.contains(&f.name))
            .collect();
        pending.sort_by(|a, b| a.epoch.cmp(&b.epoch).then(a.name.cmp(&b.name)));
        progress
            .retries
            .retain(|name, _| pending.iter().any(|f| &f.name == name));
        self.shared.update(|status| {
            status.spool_files = (files.len() - shed.len()) as u64;
            status.spool_bytes = files
                .iter()
                .filter(|f| !shed.contains(&f.name))
                .map(|f| f.bytes)
                .sum();
            status.pending_files = pending.len() as u64;
        });
        let store = self.store.as_ref()?;
        let now = Instant::now();
        for file in pending {
            if uploads.len() >= self.config.concurrency {
                break;
            }
            let due = progress
                .retries
                .get(&file.name)
                .is_none_or(|r| r.next <= now);
            if !due || progress.busy.contains(&file.name) {
                continue;
            }
            progress.busy.insert(file.name.clone());
            let (store, name) = (store.clone(), file.name.clone());
            let (key, path) = (format!("{}{name}", self.prefix), self.dir.join(&name));
            uploads.spawn(async move {
                let outcome = upload_verified(&store, &key, &path).await;
                (name, outcome)
            });
        }
        progress.retries.values().map(|r| r.next).min()
    }

    fn failed(&self, name: &str, error: &PublishError, retries: &mut HashMap<String, Retry>) {
        if let PublishError::Mismatch { existed: true, .. } = error {
            // Someone else's object holds this key: never overwrite it, publish under a new one.
            if let Some(renamed) = self.rename_aside(name) {
                self.events.warn(
                    "logs",
                    format!("{error}; publishing the local file as {renamed} instead"),
                );
                return;
            }
        }
        let retry = retries.entry(name.to_string()).or_insert(Retry {
            attempts: 0,
            next: Instant::now(),
        });
        let delay = backoff(
            retry.attempts,
            self.config.retry_initial,
            self.config.retry_max,
            fastrand::f64(),
        );
        retry.attempts += 1;
        retry.next = Instant::now() + delay;
        let message = error.to_string();
        if retry.attempts == 1 || retry.attempts.is_power_of_two() {
            tracing::warn!(
                file = name,
                attempt = retry.attempts,
                "log upload failed, retrying in {delay:?}: {message}"
            );
        }
        self.shared.update(|status| {
            status.publish_failures += 1;
            status.last_error = Some(message);
        });
    }

    fn rename_aside(&self, name: &str) -> Option<String> {
        let (key, epoch) = parse_rotated_name(name)?;
        let fresh = (1..1000)
            .map(|n| super::plan::rotated_name(key, epoch + n))
            .find(|candidate| !self.dir.join(candidate).exists())?;
        std::fs::rename(self.dir.join(name), self.dir.join(&fresh)).ok()?;
        Some(fresh)
    }

    fn scan(&self, state: &PublishedState) -> Vec<SpoolFile> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut files = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((key, epoch)) = parse_rotated_name(&name) else {
                continue;
            };
            let Ok(meta) = entry.metadata() else { continue };
            files.push(SpoolFile {
                published: self.store.is_none() || state.names.contains(&name),
                priority: priority(key),
                name,
                bytes: meta.len(),
                epoch,
            });
        }
        files
    }

    fn enforce_budget(&self, files: &[SpoolFile]) -> Vec<String> {
        let shed = plan_shed(files, self.budget);
        let mut removed = Vec::new();
        let (mut lost, mut lost_bytes) = (Vec::new(), 0u64);
        for file in shed {
            if std::fs::remove_file(self.dir.join(&file.name)).is_err() {
                continue;
            }
            removed.push(file.name.clone());
            if !file.published {
                lost.push(file.name.clone());
                lost_bytes += file.bytes;
            }
        }
        if !lost.is_empty() {
            let total: u64 = files.iter().map(|f| f.bytes).sum();
            self.shared.update(|status| {
                status.shed_files += lost.len() as u64;
                status.shed_bytes += lost_bytes;
            });
            self.events.emit(
                NewEvent::new(
                    Severity::Warning,
                    "logs",
                    format!(
                        "Log spool over its budget ({} KiB > {} KiB): deleted {} unpublished rotated file(s), oldest and lowest priority first: {}",
                        total >> 10,
                        self.budget >> 10,
                        lost.len(),
                        lost.join(", ")
                    ),
                )
                .details(serde_json::json!({ "shed": lost, "bytes": lost_bytes })),
            );
        }
        removed
    }
}
