//! Bounded disk: release directories beyond `deploy.releases_to_keep`, the property files of
//! deployments that can no longer run, and deployment records beyond `deploy.records_keep` or
//! older than `deploy.records_max_age`. Trees are deleted off the runtime threads: an old
//! release with its `node_modules` can take seconds, long enough to stall health checks.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Engine;
use super::model::ReleaseInfo;
use super::steps::{StepFailure, now_ms};

/// What pruning knows of one record on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RecordAge {
    /// Queued or running: never pruned.
    Unfinished,
    /// Finished at this time (ms since the epoch).
    FinishedAt(i64),
    /// Beyond the records read into memory: only its rank is known.
    Unread,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct RecordPolicy {
    pub keep: usize,
    pub max_age: Duration,
    pub now_ms: i64,
}

/// The records to delete: those ranked (newest first) beyond `policy.keep`, and finished ones
/// older than `policy.max_age`; never a protected or an unfinished one. Pure.
pub(super) fn records_to_prune(
    records: &[(u64, RecordAge)],
    protected: &BTreeSet<u64>,
    policy: &RecordPolicy,
) -> Vec<u64> {
    let mut newest_first = records.to_vec();
    newest_first.sort_unstable_by_key(|&(id, _)| std::cmp::Reverse(id));
    let max_age_ms = i64::try_from(policy.max_age.as_millis()).unwrap_or(i64::MAX);
    newest_first
        .iter()
        .enumerate()
        .filter(|(rank, (id, age))| {
            let beyond_count = *rank >= policy.keep;
            !protected.contains(id)
                && match age {
                    RecordAge::Unfinished => false,
                    RecordAge::FinishedAt(at) => {
                        beyond_count || policy.now_ms.saturating_sub(*at) > max_age_ms
                    }
                    RecordAge::Unread => beyond_count,
                }
        })
        .map(|(_, (id, _))| *id)
        .collect()
}

/// Removes a directory tree off the runtime threads; a tree already gone is not an error.
pub(super) async fn remove_tree(path: PathBuf) -> std::io::Result<()> {
    tokio::task::spawn_blocking(move || remove_tree_now(&path))
        .await
        .map_err(std::io::Error::other)?
}

fn remove_tree_now(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(std::io::Error::new(
            error.kind(),
            format!("removing {}: {error}", path.display()),
        )),
        _ => Ok(()),
    }
}

/// The ids of `<id>.json` records in `dir`.
pub(super) fn record_ids(dir: &Path) -> Vec<u64> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".json")?.parse().ok())
        .collect()
}

/// Deletes the record of each id with its property and change files; returns what failed.
fn delete_records(dir: &Path, ids: &[u64]) -> Vec<String> {
    let mut failures = Vec::new();
    for id in ids {
        for name in [
            format!("{id}.json"),
            format!("{id}.env.json"),
            format!("{id}.change.json"),
            format!("{id}.source.json"),
            format!("{id}.settings.json"),
        ] {
            let path = dir.join(name);
            match std::fs::remove_file(&path) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    failures.push(format!("{}: {error}", path.display()));
                }
                _ => {}
            }
        }
    }
    failures
}

/// The entries of `dir` named by a deployment id (a per-deployment tree's directories).
pub(super) fn numbered_entries(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u64>().is_ok())
        })
        .map(|e| e.path())
        .collect()
}

impl Engine {
    /// What per-deployment files must stay: those kept releases name (`of_release`) and those
    /// of the running and queued deployments (`of_id`).
    pub(super) fn per_deployment_in_use(
        &self,
        in_progress: u64,
        of_release: impl Fn(&ReleaseInfo) -> Option<PathBuf>,
        of_id: impl Fn(u64) -> PathBuf,
    ) -> Vec<PathBuf> {
        let mut keep: Vec<PathBuf> = {
            let state = self.lock_state();
            state
                .current
                .iter()
                .chain(&state.previous)
                .filter_map(&of_release)
                .collect()
        };
        keep.push(of_id(in_progress));
        keep.extend(
            self.lock_records()
                .values()
                .filter(|r| !r.status.is_finished())
                .map(|r| of_id(r.id)),
        );
        keep
    }

    /// Retention after a success; a failure here is reported but does not undo the deployment.
    pub(super) async fn cleanup(&self, id: u64) {
        if let Err(failure) = self.step(id, "cleanup", self.retain_releases(id)).await {
            self.events.warn(
                "deploy",
                format!("cleaning up old releases failed: {}", failure.message),
            );
        }
    }

    /// Deployments whose files must stay: serving, kept for rollback, running or queued.
    fn ids_in_use(&self, running: Option<u64>) -> BTreeSet<u64> {
        let mut ids: BTreeSet<u64> = {
            let state = self.lock_state();
            let releases = state.current.iter().chain(&state.previous);
            releases
                .map(|r| r.deployment_id)
                .chain(state.in_progress.map(|p| p.id))
                .collect()
        };
        ids.extend(running);
        ids.extend(
            self.lock_records()
                .values()
                .filter(|r| !r.status.is_finished())
                .map(|r| r.id),
        );
        ids
    }

    /// Deletes release directories that neither serve nor are kept for rollback, and the
    /// property files of deployments that can no longer run.
    pub(super) async fn retain_releases(&self, in_progress: u64) -> Result<(), StepFailure> {
        let keep_ids = self.ids_in_use(Some(in_progress));
        let keep_dirs: Vec<PathBuf> = {
            let state = self.lock_state();
            let kept = state.current.iter().chain(&state.previous);
            kept.map(|r| r.dir.clone()).collect()
        };
        let releases = self.paths.releases_dir();
        let deployments = self.paths.deployments_dir();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            if let Ok(entries) = std::fs::read_dir(releases) {
                for entry in entries.flatten() {
                    let path = entry.path();
                    let Some(id) = entry
                        .file_name()
                        .to_str()
                        .and_then(|n| n.parse::<u64>().ok())
                    else {
                        continue;
                    };
                    if id != in_progress && !keep_dirs.contains(&path) {
                        remove_tree_now(&path)?;
                    }
                }
            }
            // Property values of deployments that can no longer run are secrets kept for nothing.
            if let Ok(entries) = std::fs::read_dir(deployments) {
                for entry in entries.flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let id = name
                        .strip_suffix(".env.json")
                        .or_else(|| name.strip_suffix(".change.json"))
                        .or_else(|| name.strip_suffix(".source.json"))
                        .or_else(|| name.strip_suffix(".settings.json"));
                    if id
                        .and_then(|id| id.parse::<u64>().ok())
                        .is_some_and(|id| !keep_ids.contains(&id))
                    {
                        let _ = std::fs::remove_file(entry.path());
                    }
                }
            }
            Ok(())
        })
        .await??;
        self.prune_platform_copies(in_progress);
        self.prune_venvs(in_progress).await;
        Ok(())
    }

    /// Chooses the records to prune and forgets them in memory; the caller deletes the files.
    fn plan_record_pruning(&self, running: Option<u64>, on_disk: &[u64]) -> Vec<u64> {
        let protected = self.ids_in_use(running);
        let policy = RecordPolicy {
            keep: self.config.deploy.records_keep,
            max_age: self.config.deploy.records_max_age,
            now_ms: now_ms(),
        };
        let mut records = self.lock_records();
        let seen: Vec<(u64, RecordAge)> = on_disk
            .iter()
            .map(|id| {
                let age = match records.get(id) {
                    Some(r) if !r.status.is_finished() => RecordAge::Unfinished,
                    Some(r) => RecordAge::FinishedAt(r.finished_ms.unwrap_or(r.created_ms)),
                    None => RecordAge::Unread,
                };
                (*id, age)
            })
            .collect();
        let doomed = records_to_prune(&seen, &protected, &policy);
        records.retain(|id, _| !doomed.contains(id));
        doomed
    }

    /// Deletes old deployment records (`deploy.records_keep`, `deploy.records_max_age`).
    pub(super) async fn prune_records(&self) {
        let dir = self.paths.deployments_dir();
        let listed = dir.clone();
        let Ok(on_disk) = tokio::task::spawn_blocking(move || record_ids(&listed)).await else {
            return;
        };
        let doomed = self.plan_record_pruning(None, &on_disk);
        if doomed.is_empty() {
            return;
        }
        match tokio::task::spawn_blocking(move || delete_records(&dir, &doomed)).await {
            Ok(failures) => self.report_pruning_failures(&failures),
            Err(error) => tracing::error!(%error, "pruning deployment records"),
        }
    }

    /// At start, before anything runs: the same pruning, inline (nothing else waits yet).
    pub(super) fn prune_records_at_start(&self) {
        let dir = self.paths.deployments_dir();
        let doomed = self.plan_record_pruning(None, &record_ids(&dir));
        self.report_pruning_failures(&delete_records(&dir, &doomed));
    }

    fn report_pruning_failures(&self, failures: &[String]) {
        if !failures.is_empty() {
            self.events.warn(
                "deploy",
                format!(
                    "cannot delete old deployment records: {}",
                    failures.join("; ")
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY_MS: i64 = 86_400_000;

    fn policy(keep: usize) -> RecordPolicy {
        RecordPolicy {
            keep,
            max_age: Duration::from_secs(30 * 86_400),
            now_ms: 100 * DAY_MS,
        }
    }

    fn finished(ids: std::ops::RangeInclusive<u64>) -> Vec<(u64, RecordAge)> {
        ids.map(|id| (id, RecordAge::FinishedAt(99 * DAY_MS)))
            .collect()
    }

    #[test]
    fn only_the_newest_are_kept() {
        let doomed = records_to_prune(&finished(1..=5), &BTreeSet::new(), &policy(3));
        assert_eq!(doomed, [2, 1]);
    }

    #[test]
    fn records_older_than_the_age_limit_go_even_within_the_count() {
        let mut records = finished(1..=3);
        records[0].1 = RecordAge::FinishedAt(69 * DAY_MS);
        records[1].1 = RecordAge::FinishedAt(71 * DAY_MS);
        let doomed = records_to_prune(&records, &BTreeSet::new(), &policy(10));
        assert_eq!(doomed, [1]);
    }

    #[test]
    fn releases_in_use_and_unfinished_jobs_keep_their_records() {
        let mut records = finished(1..=6);
        records[1].1 = RecordAge::Unfinished;
        records[2].1 = RecordAge::FinishedAt(0);
        let protected = BTreeSet::from([1, 3]);
        let doomed = records_to_prune(&records, &protected, &policy(2));
        assert_eq!(
            doomed,
            [4],
            "2 unfinished, 1 and 3 in use, 5 and 6 the newest"
        );
    }

    #[test]
    fn unread_records_go_by_rank_only() {
        let mut records = finished(5..=6);
        records.extend([(1, RecordAge::Unread), (2, RecordAge::Unread)]);
        assert_eq!(
            records_to_prune(&records, &BTreeSet::new(), &policy(3)),
            [1]
        );
    }
}
