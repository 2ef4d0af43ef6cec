//! The deployment pipeline, in Elastic Beanstalk's order where it matters to bundles:
//! fetch → verify → extract → Procfile → stage + `nginx -t` → start web → health gate →
//! switch traffic → flip `current` → stop the old release → start the other processes.
//!
//! Zero-downtime strategy: the new web process starts on the port the old one does not use,
//! and nginx switches only after the new one passed the health gate; until then the old
//! release serves untouched. A failure before the switch cleans up the new release only.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::json;
use tokio::time::Instant;

use super::Engine;
use super::extract::{copy_dir, extract_zip};
use super::fetch::{LocalBundle, fetch_local, local_path, verify};
use super::model::*;
use super::procfile::{ProcfileEntry, parse_procfile};
use super::steps::{StepFailure, now_ms};
use crate::config::DeployStrategy;
use crate::events::{NewEvent, Severity};
use crate::health::probe;
use crate::proxy::StagedConfig;
use crate::supervise::{ProcessKey, ProcessSpec, ProcessState};

/// Lines of process output attached to a failure event.
const OUTPUT_TAIL_LINES: usize = 50;

/// What exists of a deployment so far, to clean up if it fails before taking traffic.
#[derive(Debug, Default)]
struct Started {
    staged: Option<StagedConfig>,
    processes: Vec<ProcessKey>,
    stopped_old: bool,
}

impl Engine {
    pub(super) async fn execute(&self, id: u64, request: DeploymentRequest) {
        let label = self
            .record(id)
            .map(|r| r.version_label)
            .unwrap_or_else(|| default_label(&request.source, id));
        self.events.emit(
            NewEvent::new(
                Severity::Info,
                "deploy",
                format!("Deployment {id} of {label} started from {}", request.source),
            )
            .deployment(id),
        );
        if let Err(error) = self.persist_state(|state| state.in_progress = Some(id)) {
            tracing::error!(%error, "cannot persist state");
        }
        let mut started = Started::default();
        let budget = self.config.deploy.timeout;
        let outcome =
            match tokio::time::timeout(budget, self.pipeline(id, &request, &label, &mut started))
                .await
            {
                Ok(outcome) => outcome,
                Err(_) => {
                    let step = self
                        .record(id)
                        .and_then(|r| r.steps.last().map(|s| s.name.clone()))
                        .unwrap_or_default();
                    Err(StepFailure {
                        step: step.clone(),
                        ..StepFailure::new(format!(
                            "deployment timed out after {budget:?} in step {step}"
                        ))
                    })
                }
            };
        let status = match outcome {
            Ok(status) => status,
            Err(failure) => {
                self.abort(id, &mut started).await;
                self.report_failure(id, &label, &failure);
                DeploymentStatus::Failed
            }
        };
        let _ = std::fs::remove_file(self.paths.downloads_dir().join(format!("{id}.zip")));
        self.finish(id, status);
    }

    async fn pipeline(
        &self,
        id: u64,
        request: &DeploymentRequest,
        label: &str,
        started: &mut Started,
    ) -> Result<DeploymentStatus, StepFailure> {
        let bundle = self
            .step(id, "fetch", async { self.fetch(id, request).await })
            .await?;
        if let LocalBundle::Zip { sha256, .. } = &bundle {
            self.step(id, "verify", async {
                Ok(verify(&request.source, request.sha256.as_deref(), sha256)?)
            })
            .await?;
        }
        let release_dir = self.paths.release_dir(id);
        let sha256 = self
            .step(id, "extract", self.extract(&bundle, &release_dir))
            .await?;
        if let LocalBundle::Dir { .. } = &bundle {
            self.step(id, "verify", async {
                Ok(verify(&request.source, request.sha256.as_deref(), &sha256)?)
            })
            .await?;
        }
        let fingerprint = fingerprint(&sha256, &request.env, label);
        let current = self.current();
        if current
            .as_ref()
            .is_some_and(|c| c.fingerprint == fingerprint)
        {
            let _ = std::fs::remove_dir_all(&release_dir);
            return Ok(DeploymentStatus::Noop);
        }
        let procfile = self
            .step(id, "procfile", async { self.read_procfile(&release_dir) })
            .await?;
        self.step(id, "permissions", self.hand_over(&release_dir))
            .await?;
        let port = self.next_web_port(current.as_ref());
        self.update_record(id, |r| r.web_port = Some(port));
        let overrides = release_dir.join(".platform/nginx");
        let staged = self
            .step(id, "proxy-config", async {
                Ok(self.proxy.stage(port, Some(&overrides)).await?)
            })
            .await?;
        started.staged = Some(staged.clone());
        let specs = specs(id, &procfile, &release_dir, &request.env, port);
        let all_at_once = self.config.deploy.strategy == DeployStrategy::AllAtOnce;
        if all_at_once && let Some(current) = &current {
            self.step(id, "stop-old", async {
                let _: () = self.supervisor.stop_release(current.deployment_id).await;
                Ok(())
            })
            .await?;
            started.stopped_old = true;
        }
        let (web, others): (Vec<_>, Vec<_>) =
            specs.into_iter().partition(|spec| spec.name == "web");
        for spec in web {
            started.processes.push(spec.key());
            self.step(id, "start-web", async {
                Ok(self.supervisor.start(spec).map(|_| ())?)
            })
            .await?;
        }
        self.step(id, "health-gate", self.health_gate(id, port))
            .await?;
        let drain = self.config.deploy.drain_timeout;
        self.step(id, "switch-traffic", async {
            Ok(self.proxy.activate(&staged, drain).await?)
        })
        .await?;
        // Commit point: from here on the new release serves and the deployment can only go forward.
        let release = ReleaseInfo {
            deployment_id: id,
            version_label: label.to_string(),
            source: request.source.clone(),
            sha256,
            fingerprint,
            dir: release_dir.clone(),
            web_port: port,
            processes: procfile
                .iter()
                .map(|e| (e.name.clone(), e.command.clone()))
                .collect(),
            deployed_ms: now_ms(),
            proxy_generation: Some(staged.generation.clone()),
        };
        started.staged = None;
        started.processes.clear();
        self.step(id, "flip", async { self.commit(release) })
            .await?;
        if let Some(current) = &current
            && !all_at_once
        {
            self.step(id, "stop-old", async {
                let _: () = self.supervisor.stop_release(current.deployment_id).await;
                Ok(())
            })
            .await?;
        }
        for spec in others {
            let name = spec.name.clone();
            self.step(id, &format!("start-{name}"), async {
                Ok(self.supervisor.start(spec).map(|_| ())?)
            })
            .await?;
        }
        self.step(id, "cleanup", async { self.retain_releases(id) })
            .await?;
        Ok(DeploymentStatus::Succeeded)
    }

    async fn fetch(
        &self,
        id: u64,
        request: &DeploymentRequest,
    ) -> Result<LocalBundle, StepFailure> {
        let Some(path) = local_path(&request.source)? else {
            return Err(super::fetch::FetchError::Scheme(request.source.clone()).into());
        };
        let download = self.paths.downloads_dir().join(format!("{id}.zip"));
        let source = request.source.clone();
        let max = self.config.bundle.max_download_bytes;
        Ok(
            tokio::task::spawn_blocking(move || fetch_local(&source, &path, &download, max))
                .await??,
        )
    }

    async fn extract(
        &self,
        bundle: &LocalBundle,
        release_dir: &Path,
    ) -> Result<String, StepFailure> {
        if release_dir.exists() {
            std::fs::remove_dir_all(release_dir)?;
        }
        std::fs::create_dir_all(self.paths.releases_dir())?;
        crate::fsutil::replace_symlink(release_dir, &self.paths.staging_link())?;
        let limits = self.config.bundle;
        let bundle = bundle.clone();
        let target = release_dir.to_path_buf();
        let outcome = tokio::task::spawn_blocking(move || match bundle {
            LocalBundle::Zip { path, sha256 } => {
                extract_zip(&path, &target, limits).map(|()| sha256)
            }
            LocalBundle::Dir { path } => copy_dir(&path, &target, limits),
        })
        .await?;
        if outcome.is_err() {
            let _ = std::fs::remove_dir_all(release_dir);
        }
        Ok(outcome?)
    }

    fn read_procfile(&self, release_dir: &Path) -> Result<Vec<ProcfileEntry>, StepFailure> {
        let path = release_dir.join("Procfile");
        let text = std::fs::read_to_string(&path).map_err(|error| {
            StepFailure::new(format!(
                "bundle has no readable Procfile at its root ({error})"
            ))
        })?;
        let entries = parse_procfile(&text)?;
        if self.proxy.enabled() && !entries.iter().any(|e| e.name == "web") {
            return Err(StepFailure::new(
                "Procfile has no `web` process for nginx to proxy to",
            ));
        }
        Ok(entries)
    }

    /// The app user owns its release, as on Elastic Beanstalk (`webapp` owns /var/app/current).
    async fn hand_over(&self, release_dir: &Path) -> Result<(), StepFailure> {
        let user = self.supervisor.user().clone();
        if !user.switch {
            return Ok(());
        }
        let dir = release_dir.to_path_buf();
        tokio::task::spawn_blocking(move || chown_tree(&dir, user.uid, user.gid)).await??;
        Ok(())
    }

    fn next_web_port(&self, current: Option<&ReleaseInfo>) -> u16 {
        let app = &self.config.app;
        match (self.config.deploy.strategy, current) {
            (DeployStrategy::ZeroDowntime, Some(current)) if current.web_port == app.port => {
                app.alternate_port
            }
            _ => app.port,
        }
    }

    /// N consecutive good checks on the new web process, directly on its port.
    async fn health_gate(&self, id: u64, port: u16) -> Result<(), StepFailure> {
        let deploy = &self.config.deploy;
        let health = &self.config.health;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + deploy.health_gate_timeout;
        let (mut successes, mut attempts) = (0, 0);
        let mut last_error = String::new();
        loop {
            let result = probe(addr, &health.path, health.timeout).await;
            attempts += 1;
            if result.ok {
                successes += 1;
                if successes >= deploy.health_gate_successes {
                    return Ok(());
                }
            } else {
                successes = 0;
                last_error = result.error.unwrap_or_default();
            }
            if let Some(exit) = self.web_exit(id) {
                return Err(self.gate_failure(format!(
                    "process web exited with {exit} before it became healthy"
                )));
            }
            if Instant::now() + deploy.health_gate_interval > deadline {
                return Err(self.gate_failure(format!(
                    "health check {} on port {port} did not pass {} times in a row within {:?} ({attempts} attempts; last error: {last_error})",
                    health.path, deploy.health_gate_successes, deploy.health_gate_timeout
                )));
            }
            tokio::time::sleep(deploy.health_gate_interval).await;
        }
    }

    fn web_exit(&self, id: u64) -> Option<String> {
        self.supervisor
            .statuses()
            .into_iter()
            .find(|p| p.release == id && p.name == "web" && p.state == ProcessState::Backoff)
            .and_then(|p| p.last_exit.map(|e| e.to_string()))
    }

    fn gate_failure(&self, message: String) -> StepFailure {
        let stderr = self.paths.process_stderr_log("web");
        StepFailure::new(message).with_details(json!({
            "process": "web",
            "stderr_log": stderr.display().to_string(),
            "stderr_tail": crate::fsutil::tail_lines(&stderr, OUTPUT_TAIL_LINES),
        }))
    }

    /// Flips `current` and records the new release as the serving one.
    fn commit(&self, release: ReleaseInfo) -> Result<(), StepFailure> {
        crate::fsutil::replace_symlink(&release.dir, &self.paths.current_link())?;
        let _ = std::fs::remove_file(self.paths.staging_link());
        let keep = self.config.deploy.releases_to_keep;
        self.persist_state(|state| {
            if let Some(previous) = state.current.take() {
                state.previous.insert(0, previous);
            }
            state.previous.truncate(keep.saturating_sub(1));
            state.current = Some(release);
        })?;
        Ok(())
    }

    /// Deletes release directories that are neither serving nor kept for rollback.
    pub(super) fn retain_releases(&self, in_progress: u64) -> Result<(), StepFailure> {
        let keep: Vec<u64> = {
            let state = self.lock_state();
            state
                .current
                .iter()
                .chain(&state.previous)
                .map(|r| r.deployment_id)
                .collect()
        };
        let Ok(entries) = std::fs::read_dir(self.paths.releases_dir()) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            if id != in_progress && !keep.contains(&id) {
                std::fs::remove_dir_all(entry.path())?;
            }
        }
        Ok(())
    }

    /// Undoes a deployment that failed before it took traffic.
    async fn abort(&self, id: u64, started: &mut Started) {
        for key in started.processes.drain(..) {
            self.supervisor.stop(&key).await;
        }
        if let Some(staged) = started.staged.take() {
            let _ = std::fs::remove_dir_all(&staged.dir);
        }
        if started.stopped_old {
            self.restart_current().await;
        }
        let _ = std::fs::remove_dir_all(self.paths.release_dir(id));
    }

    /// Starts the serving release's processes again (after an all-at-once stop, or recovery).
    pub(super) async fn restart_current(&self) {
        let Some(current) = self.current() else {
            return;
        };
        let env = self.release_env(current.deployment_id);
        let entries: Vec<ProcfileEntry> = current
            .processes
            .iter()
            .map(|(name, command)| ProcfileEntry {
                name: name.clone(),
                command: command.clone(),
                line: 0,
            })
            .collect();
        let running = self.supervisor.statuses();
        for spec in specs(
            current.deployment_id,
            &entries,
            &current.dir,
            &env,
            current.web_port,
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

    pub(super) fn release_env(&self, id: u64) -> BTreeMap<String, String> {
        crate::fsutil::read_json(&self.env_file(id))
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    fn report_failure(&self, id: u64, label: &str, failure: &StepFailure) {
        let serving = match self.current() {
            Some(current) => format!(
                "; {} (deployment {}) keeps serving",
                current.version_label, current.deployment_id
            ),
            None => String::new(),
        };
        let message = format!(
            "Deployment {id} of {label} failed in step {}: {}{serving}",
            failure.step, failure.message
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
        let label = self.record(id).map(|r| r.version_label).unwrap_or_default();
        let message = match status {
            DeploymentStatus::Succeeded => {
                format!("Deployment {id} of {label} succeeded: it now serves")
            }
            DeploymentStatus::Noop => format!(
                "Deployment {id} of {label} changed nothing: the same bundle and properties already serve"
            ),
            _ => return,
        };
        self.deploy_log(id, &message);
        self.events
            .emit(NewEvent::new(Severity::Info, "deploy", message).deployment(id));
    }
}

/// One spec per Procfile entry; only `web` gets a PORT.
pub(super) fn specs(
    id: u64,
    procfile: &[ProcfileEntry],
    dir: &Path,
    env: &BTreeMap<String, String>,
    web_port: u16,
) -> Vec<ProcessSpec> {
    procfile
        .iter()
        .map(|entry| ProcessSpec {
            name: entry.name.clone(),
            command: entry.command.clone(),
            release: id,
            cwd: dir.to_path_buf(),
            env: env.clone(),
            port: (entry.name == "web").then_some(web_port),
        })
        .collect()
}

fn chown_tree(dir: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(dir, Some(uid), Some(gid))?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            chown_tree(&entry.path(), uid, gid)?;
        } else {
            std::os::unix::fs::lchown(entry.path(), Some(uid), Some(gid))?;
        }
    }
    Ok(())
}
