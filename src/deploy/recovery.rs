//! What a (re)started agent does before taking new work: finish or roll back a deployment
//! that an agent crash interrupted, stop processes of releases that no longer serve, start the
//! serving release's processes that are missing, and re-queue accepted deployments.
//!
//! The rule: a deployment that reached its commit point (`state.current` names it) is rolled
//! forward; any other interrupted deployment is rolled back, and nginx is pointed again at the
//! serving release's config. Never two versions behind nginx, never a half-flipped release.

use super::Engine;
use super::model::{DeploymentRequest, DeploymentStatus};
use crate::events::{NewEvent, Severity};

impl Engine {
    pub async fn recover(&self) {
        let (in_progress, current) = {
            let state = self.lock_state();
            (state.in_progress, state.current.clone())
        };
        if let Some(id) = in_progress {
            let step = self
                .record(id)
                .and_then(|r| r.steps.last().map(|s| s.name.clone()))
                .unwrap_or_default();
            if current.as_ref().is_some_and(|c| c.deployment_id == id) {
                self.deploy_log(id, &format!("agent restarted during step {step}; the release had taken traffic: finishing it"));
                self.stop_other_releases(id).await;
                self.restart_current().await;
                let _ = self.retain_releases(id);
                self.finish(id, DeploymentStatus::Succeeded);
            } else {
                let message = format!("agent restarted during step {step}; rolled back");
                self.deploy_log(id, &message);
                self.supervisor.stop_release(id).await;
                self.restore_serving_proxy().await;
                if let Some(current) = &current {
                    let _ =
                        crate::fsutil::replace_symlink(&current.dir, &self.paths.current_link());
                }
                let _ = std::fs::remove_dir_all(self.paths.release_dir(id));
                self.update_record(id, |r| r.message = Some(message.clone()));
                self.events.emit(
                    NewEvent::new(
                        Severity::Error,
                        "deploy",
                        format!("Deployment {id} {message}"),
                    )
                    .deployment(id),
                );
                self.finish(id, DeploymentStatus::Failed);
            }
        }
        if let Some(current) = &current {
            self.stop_other_releases(current.deployment_id).await;
            self.restart_current().await;
        }
        self.requeue();
    }

    async fn stop_other_releases(&self, keep: u64) {
        for release in self.supervisor.releases() {
            if release != keep {
                self.supervisor.stop_release(release).await;
            }
        }
    }

    /// Points nginx at the serving release's config again if a crash left it elsewhere.
    async fn restore_serving_proxy(&self) {
        let Some(current) = self.current() else {
            return;
        };
        let active_port = self.proxy.active().map(|a| a.upstream_port);
        if !self.proxy.enabled() || active_port == Some(current.web_port) {
            return;
        }
        let overrides = current.dir.join(".platform/nginx");
        let restored = match self.proxy.stage(current.web_port, Some(&overrides)).await {
            Ok(staged) => {
                self.proxy
                    .activate(&staged, self.config.deploy.drain_timeout)
                    .await
            }
            Err(error) => Err(error),
        };
        if let Err(error) = restored {
            self.events.error(
                "deploy",
                format!("cannot point nginx back at the serving release: {error}"),
            );
        }
    }

    /// Deployments accepted before a restart run now, in their original order.
    fn requeue(&self) {
        let queued: Vec<_> = self
            .lock_records()
            .values()
            .filter(|r| r.status == DeploymentStatus::Queued)
            .cloned()
            .collect();
        for record in queued {
            let request = DeploymentRequest {
                source: record.source.clone(),
                sha256: record.sha256.clone(),
                version_label: Some(record.version_label.clone()),
                env: self.release_env(record.id),
            };
            self.lock_requests().insert(record.id, request);
            if self.queue.try_send(record.id).is_err() {
                self.lock_requests().remove(&record.id);
                self.update_record(record.id, |r| {
                    r.status = DeploymentStatus::Failed;
                    r.message = Some("deployment queue full after restart".into());
                });
            }
        }
    }
}
