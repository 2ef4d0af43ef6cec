//! Bundles on request: a background job per bundle whose progress the CLI polls.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{BundleJob, JobState, LogService, collect, plan, sources, upload_verified};

impl LogService {
    /// Starts a bundle in the background; follow it with `bundle_job`.
    pub fn start_bundle(&self, upload: bool) -> BundleJob {
        let inner = &self.inner();
        let id = inner.next_job.fetch_add(1, Ordering::Relaxed);
        let found = sources::discover(&inner.paths, &inner.config.logs, &inner.owners);
        self.report_refused(&found.refused);
        let others = inner.owners.allowed(true);
        let files = collect::bundle_files(
            inner.paths.root(),
            &inner.paths.log_dir(),
            &found.sources,
            &others,
        );
        let total = files
            .iter()
            .map(|f| std::fs::symlink_metadata(&f.path).map_or(0, |m| m.len()))
            .sum();
        let name = format!("BundleLogs-{}.zip", jiff::Timestamp::now().as_millisecond());
        let path = inner.paths.logs_requests_dir().join(&name);
        let job = BundleJob {
            id,
            state: JobState::Zipping,
            files: files.len(),
            total_bytes: total,
            done_bytes: 0,
            name,
            path: path.display().to_string(),
            key: None,
            error: None,
            skipped: found
                .refused
                .iter()
                .map(|(path, why)| format!("{path}: {why}"))
                .collect(),
        };
        self.set_job(job.clone());
        let service = self.clone();
        tokio::spawn(async move { service.make_bundle(id, files, path, upload).await });
        job
    }

    pub fn bundle_job(&self, id: u64) -> Option<BundleJob> {
        self.inner()
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    fn set_job(&self, job: BundleJob) {
        let inner = self.inner();
        let mut jobs = inner.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.insert(job.id, job);
        while jobs.len() > 20 {
            jobs.pop_first();
        }
    }

    fn change_job(&self, id: u64, change: impl FnOnce(&mut BundleJob)) {
        if let Some(job) = self
            .inner()
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&id)
        {
            change(job);
        }
    }

    async fn make_bundle(
        &self,
        id: u64,
        files: Vec<collect::BundleFile>,
        path: PathBuf,
        upload: bool,
    ) {
        let done = Arc::new(AtomicU64::new(0));
        let dir = self.inner().paths.logs_requests_dir();
        let (counter, out, made) = (done.clone(), path.clone(), dir.clone());
        let mut zipping = tokio::task::spawn_blocking(move || {
            collect::requests_dir(&made)?;
            collect::write_bundle(&files, &out, &counter)
        });
        let zipped = loop {
            tokio::select! {
                joined = &mut zipping => break joined,
                () = tokio::time::sleep(std::time::Duration::from_millis(100)) => {
                    let bytes = done.load(Ordering::Relaxed);
                    self.change_job(id, |job| job.done_bytes = bytes);
                }
            }
        };
        let bytes = done.load(Ordering::Relaxed);
        match zipped {
            Ok(Ok(refused)) => {
                self.report_refused(&refused);
                let skipped = refused.iter().map(|(path, why)| format!("{path}: {why}"));
                self.change_job(id, |job| job.skipped.extend(skipped));
            }
            Ok(Err(error)) => return self.fail_job(id, error.to_string()),
            Err(join) => return self.fail_job(id, join.to_string()),
        }
        let pruned = dir.clone();
        let _ =
            tokio::task::spawn_blocking(move || collect::prune(&pruned, "BundleLogs-", 3)).await;
        self.change_job(id, |job| job.done_bytes = bytes);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if upload {
            let Some(store) = self.inner().store.clone() else {
                return self.fail_job(
                    id,
                    "no upload destination: set [logs.publish] destination".into(),
                );
            };
            self.change_job(id, |job| job.state = JobState::Uploading);
            let key = plan::bundle_key(&self.inner().env_id, &self.inner().instance_id, &name);
            if let Err(error) = upload_verified(&store, &key, &path).await {
                return self.fail_job(id, error.to_string());
            }
            self.change_job(id, |job| job.key = Some(key));
        }
        self.change_job(id, |job| job.state = JobState::Done);
    }

    fn fail_job(&self, id: u64, message: String) {
        self.change_job(id, |job| {
            job.state = JobState::Failed;
            job.error = Some(message);
        });
    }
}
