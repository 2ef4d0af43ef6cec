//! Executes one job: prepare a release (`prepare.rs`), then cut traffic over to it
//! (`cutover.rs`). Everything a failing job created is undone here (`abort`), and every outcome
//! is recorded: the deployment record, deploy.log and one event naming the step and the cause.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::Engine;
use super::model::*;
use super::procfile::ProcfileEntry;
use super::retention::remove_tree;
use super::steps::{StepFailure, now_ms};
use crate::events::{NewEvent, Severity};
use crate::proxy::StagedConfig;
use crate::supervise::{ProcessKey, ProcessSpec};

/// A release ready to take traffic: files in place, build done, Procfile read.
#[derive(Debug, Clone)]
pub(super) struct Prepared {
    pub id: u64,
    pub label: String,
    pub source: String,
    pub sha256: String,
    pub fingerprint: String,
    pub dir: PathBuf,
    pub procfile: Vec<ProcfileEntry>,
    pub env: crate::secret::Properties,
    /// `.platform/hooks` or `.platform/confighooks` (postdeploy runs from there), or none.
    pub hooks: Option<&'static str>,
    /// Root's copy of the release's `.platform` (`platform.rs`); none for an earlier agent's.
    pub platform: Option<PathBuf>,
    /// The controller serial the release will carry (`ReleaseInfo::serial`).
    pub serial: Option<u64>,
    /// The platform it was built for (`runtime/`).
    pub runtime: Option<super::runtime::RuntimeInfo>,
    /// Its settings, layer by layer (`ReleaseInfo::settings`).
    pub settings: Option<crate::ebext::ReleaseSettings>,
}

/// What a job created so far, to undo when it fails before taking traffic.
#[derive(Debug, Default)]
pub(super) struct Started {
    pub release_dir: Option<PathBuf>,
    pub platform: Option<PathBuf>,
    /// The deployment's Python virtualenv (`runtime/`), outside the release.
    pub venv: Option<PathBuf>,
    pub staged: Option<StagedConfig>,
    pub processes: Vec<ProcessKey>,
    pub stopped_old: bool,
    /// nginx switched to the new release (and from this config) but the commit did not happen.
    pub switched_from: Option<Option<StagedConfig>>,
}

impl Engine {
    pub(super) async fn execute(&self, id: u64, job: Job) {
        let label = self.record(id).map(|r| r.version_label).unwrap_or_default();
        let kind = job.kind();
        self.events.emit(
            NewEvent::new(
                Severity::Info,
                "deploy",
                format!("{} {id} of {label} started", describe(kind)),
            )
            .deployment(id),
        );
        if let Err(error) = self.persist_state(|state| {
            state.in_progress = Some(InProgress {
                id,
                committed: false,
            })
        }) {
            tracing::error!(%error, "cannot persist state");
        }
        let mut started = Started::default();
        let budget = self.config.deploy.timeout;
        let outcome = match tokio::time::timeout(budget, self.run_job(id, job, &mut started)).await
        {
            Ok(outcome) => outcome,
            Err(_) => {
                let step = self
                    .record(id)
                    .and_then(|r| r.steps.last().map(|s| s.name.clone()))
                    .unwrap_or_default();
                let failure = StepFailure::new(format!(
                    "{} timed out after {budget:?} (deploy.timeout) in step {step}",
                    describe(kind)
                ));
                Err(self
                    .after_timeout(id, kind, StepFailure { step, ..failure })
                    .await)
            }
        };
        let status = match outcome {
            Ok(status) => status,
            Err(mut failure) => {
                // All at once: the old release was stopped first and abort starts it again.
                failure.rolled_back |= started.stopped_old;
                self.abort(&mut started).await;
                self.report_failure(id, kind, &label, &failure);
                if failure.rolled_back {
                    DeploymentStatus::RolledBack
                } else {
                    DeploymentStatus::Failed
                }
            }
        };
        let _ = std::fs::remove_file(self.paths.downloads_dir().join(format!("{id}.zip")));
        self.finish(id, status);
        self.prune_records().await;
    }

    async fn run_job(
        &self,
        id: u64,
        job: Job,
        started: &mut Started,
    ) -> Result<DeploymentStatus, StepFailure> {
        let current = self.current();
        let prepared = match job {
            Job::Deploy(request) => self.prepare_deploy(id, &request, started).await?,
            Job::Configure(change) => {
                self.prepare_configure(id, &change, current.as_ref(), started)
                    .await?
            }
            Job::Restart => self.prepare_restart(id, current.as_ref())?,
            Job::Rollback => {
                let target = self.lock_state().previous.first().cloned();
                let target = target.ok_or_else(|| {
                    StepFailure::new("there is no previous release to roll back to")
                })?;
                let _intake = self.intake.pause();
                self.restore(id, target, current.as_ref()).await?;
                self.cleanup(id).await;
                return Ok(DeploymentStatus::Succeeded);
            }
        };
        let Some(prepared) = prepared else {
            self.adopt_serial(id);
            return Ok(DeploymentStatus::Noop);
        };
        // The worker daemon receives nothing while traffic moves; its requests in flight
        // finish through nginx, which serves throughout.
        let _intake = self.intake.pause();
        self.cutover(prepared, current, started).await
    }

    /// A timeout after the commit point is a failure after the commit like any other: the
    /// previous release comes back (a restart has none; its missing processes are started).
    async fn after_timeout(&self, id: u64, kind: JobKind, failure: StepFailure) -> StepFailure {
        let committed = self
            .lock_state()
            .in_progress
            .is_some_and(|p| p.id == id && p.committed);
        let Some(current) = self.current().filter(|_| committed) else {
            return failure;
        };
        let previous = match kind {
            JobKind::Deploy | JobKind::Configure if current.deployment_id == id => {
                self.lock_state().previous.first().cloned()
            }
            _ => None,
        };
        if previous.is_none() {
            self.restart_current().await;
            return failure;
        }
        self.roll_back_after_commit(id, failure, previous, &current)
            .await
    }

    /// Undoes a job that failed before it took traffic.
    pub(super) async fn abort(&self, started: &mut Started) {
        // Traffic moves back: the worker daemon receives nothing meanwhile.
        let _intake = self.intake.pause();
        // nginx already serves the new release: point it back before its processes stop.
        let mut staged_in_use = false;
        if let Some(previous) = started.switched_from.take() {
            // A first deployment has no config that served before: nothing to point back at.
            let served_before = previous.is_some();
            let restored = match previous {
                Some(previous) => self
                    .proxy
                    .activate(&previous, self.config.deploy.drain_timeout)
                    .await
                    .is_ok(),
                None => false,
            };
            staged_in_use = !restored;
            if let Some(current) = self.current() {
                let _ = crate::fsutil::replace_symlink(&current.dir, &self.paths.current_link());
            }
            if !restored && served_before {
                self.events.error(
                    "deploy",
                    "nginx could not be pointed back at the serving release after a failed switch",
                );
            }
        }
        for key in started.processes.drain(..) {
            self.supervisor.stop(&key).await;
        }
        if let Some(staged) = started.staged.take()
            && !staged_in_use
        {
            let _ = remove_tree(staged.dir).await;
        }
        if started.stopped_old {
            self.restart_current().await;
        }
        if let Some(dir) = started.release_dir.take() {
            let referenced = self.lock_state().current.iter().any(|c| c.dir == dir);
            if !referenced {
                let _ = remove_tree(dir).await;
            }
        }
        if let Some(venv) = started.venv.take() {
            let referenced = self
                .lock_state()
                .current
                .iter()
                .any(|c| c.runtime.as_ref().and_then(|r| r.venv.as_ref()) == Some(&venv));
            if !referenced {
                let _ = remove_tree(venv).await;
            }
        }
        if let Some(copy) = started.platform.take() {
            let referenced = self
                .lock_state()
                .current
                .iter()
                .any(|c| c.platform.as_ref() == Some(&copy));
            if !referenced {
                let _ = remove_tree(copy).await;
            }
        }
    }

    /// Starts the serving release's processes that are not running (after an all-at-once stop,
    /// after recovery, after a reboot).
    pub(super) async fn restart_current(&self) {
        let Some(current) = self.current() else {
            return;
        };
        // Without its properties the app would start misconfigured (no database URL, no
        // secrets): nothing starts, and the event names the file.
        let env = match self.release_env(current.deployment_id) {
            Ok(env) => env,
            Err(failure) => {
                self.events.emit(
                    NewEvent::new(
                        Severity::Error,
                        "deploy",
                        format!(
                            "the serving release's processes were not started: {}",
                            failure.message
                        ),
                    )
                    .deployment(current.deployment_id),
                );
                return;
            }
        };
        let running = self.supervisor.statuses();
        for spec in specs(
            current.deployment_id,
            &entries(&current),
            &current.dir,
            &env,
            current.web_port,
            current.runtime.as_ref(),
        ) {
            if running
                .iter()
                .any(|p| p.release == spec.release && p.name == spec.name)
            {
                continue;
            }
            if let Err(error) = self.supervisor.start(spec) {
                self.events.emit(
                    NewEvent::new(Severity::Error, "deploy", error.to_string())
                        .deployment(current.deployment_id),
                );
            }
        }
    }

    /// Records the environment job `id` runs with (0600: values may be secrets).
    pub(super) fn save_env(
        &self,
        id: u64,
        env: &BTreeMap<String, String>,
    ) -> Result<(), StepFailure> {
        crate::fsutil::write_json_atomic(&self.env_file(id), env, 0o600)?;
        self.update_record(id, |r| r.env_keys = env.keys().cloned().collect());
        Ok(())
    }

    /// The environment properties deployment `id` runs with. Missing or corrupt is an error
    /// naming the file, never an empty environment.
    pub(super) fn release_env(&self, id: u64) -> Result<crate::secret::Properties, StepFailure> {
        let path = self.env_file(id);
        read_required(&path).map_err(|cause| StepFailure {
            step: "environment".to_string(),
            ..StepFailure::new(format!(
                "the environment properties of deployment {id} cannot be read from {}: {cause}",
                path.display()
            ))
        })
    }

    fn report_failure(&self, id: u64, kind: JobKind, label: &str, failure: &StepFailure) {
        let serving = match self.current() {
            Some(current) => format!(
                "; {} (deployment {}) keeps serving",
                current.version_label, current.deployment_id
            ),
            None => String::new(),
        };
        let message = format!(
            "{} {id} of {label} failed in step {}: {}{serving}",
            describe(kind),
            failure.step,
            failure.message
        );
        self.update_record(id, |r| {
            r.message = Some(format!("{}: {}", failure.step, failure.message))
        });
        self.deploy_log(id, &message);
        let details =
            json!({ "step": failure.step, "error": failure.message, "context": failure.details });
        self.events.emit(
            NewEvent::new(Severity::Error, "deploy", message)
                .deployment(id)
                .details(details),
        );
    }

    pub(super) fn finish(&self, id: u64, status: DeploymentStatus) {
        self.update_record(id, |r| {
            r.status = status;
            r.finished_ms = Some(now_ms());
        });
        if let Err(error) = self.persist_state(|state| state.in_progress = None) {
            tracing::error!(%error, "cannot persist state");
        }
        self.publish.send_modify(|published| {
            if published.active.as_ref().is_some_and(|a| a.id == id) {
                published.active = None;
            }
        });
        let Some(record) = self.record(id) else {
            return;
        };
        let what = format!("{} {id} of {}", describe(record.kind), record.version_label);
        let message = match status {
            DeploymentStatus::Succeeded => format!("{what} succeeded"),
            DeploymentStatus::Noop => {
                format!("{what} changed nothing: the same bundle and properties already serve")
            }
            DeploymentStatus::RolledBack => {
                format!("{what} was rolled back; the previous release serves again")
            }
            _ => return,
        };
        self.deploy_log(id, &message);
        self.events
            .emit(NewEvent::new(Severity::Info, "deploy", message).deployment(id));
    }
}

/// A JSON file a job cannot run without: `Err` says whether it is missing or why it is corrupt.
pub(super) fn read_required<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|error| error.to_string()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            Err("the file is missing".to_string())
        }
        Err(error) => Err(error.to_string()),
    }
}

pub(super) fn describe(kind: JobKind) -> &'static str {
    match kind {
        JobKind::Deploy => "Deployment",
        JobKind::Configure => "Configuration deployment",
        JobKind::Restart => "Restart",
        JobKind::Rollback => "Rollback",
    }
}

/// The Procfile of a release as it was deployed.
pub(super) fn entries(release: &ReleaseInfo) -> Vec<ProcfileEntry> {
    release
        .processes
        .iter()
        .map(|(name, command)| ProcfileEntry {
            name: name.clone(),
            command: command.clone(),
            line: 0,
        })
        .collect()
}

/// One spec per Procfile entry; only `web` gets a PORT; every process gets the platform's
/// environment (the venv's PATH) under its properties.
pub(super) fn specs(
    id: u64,
    procfile: &[ProcfileEntry],
    dir: &Path,
    env: &crate::secret::Properties,
    web_port: u16,
    runtime: Option<&super::runtime::RuntimeInfo>,
) -> Vec<ProcessSpec> {
    let platform_env = runtime.map(|r| r.env.clone()).unwrap_or_default();
    procfile
        .iter()
        .map(|entry| ProcessSpec {
            name: entry.name.clone(),
            command: entry.command.clone(),
            release: id,
            cwd: dir.to_path_buf(),
            env: env.clone(),
            platform_env: platform_env.clone(),
            port: (entry.name == "web").then_some(web_port),
        })
        .collect()
}
