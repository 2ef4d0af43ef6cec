//! Moving traffic to a prepared release, and back.
//!
//! Zero-downtime: the new web process starts on the port the serving one does not use and
//! takes traffic only after the health gate; nginx switches with a reload and its old workers
//! drain before the old process stops. The switch holds only once the health path answers
//! through nginx (`verify.rs`); otherwise nginx goes back to the config that served. The commit point (`state.current` + `committed`,
//! written atomically) separates "undo" (before) from "roll back" (after): a failure after it
//! restores the previous release the same way, with its processes, its env and its nginx config.

use super::Engine;
use super::engine::{Prepared, Started, entries, specs};
use super::gate::GatePassed;
use super::model::*;
use super::platform::NGINX_OVERRIDES;
use super::runtime::RuntimeInfo;
use super::steps::{StepFailure, now_ms};
use crate::config::DeployStrategy;

impl Engine {
    pub(super) async fn cutover(
        &self,
        prepared: Prepared,
        current: Option<ReleaseInfo>,
        started: &mut Started,
    ) -> Result<DeploymentStatus, StepFailure> {
        let id = prepared.id;
        let port = self.next_web_port(current.as_ref());
        self.update_record(id, |r| r.web_port = Some(port));
        let overrides = prepared.platform.as_ref().map(|p| p.join(NGINX_OVERRIDES));
        self.proxy.set_worker_timeout(
            crate::worker::effective(&self.config, prepared.settings.as_ref())
                .map(|sqsd| crate::worker::proxy_timeout(&sqsd)),
        );
        // Without nginx (`proxy.enabled = false`) the app serves by itself: no config to stage.
        let staged = match self.proxy.enabled() {
            true => Some(
                self.step(id, "proxy-config", async {
                    Ok(self
                        .proxy
                        .stage(
                            port,
                            overrides.as_deref(),
                            &RuntimeInfo::static_files_of(prepared.runtime.as_ref()),
                        )
                        .await?)
                })
                .await?,
            ),
            false => None,
        };
        if let Some(staged) = &staged {
            self.report_translations(id, staged);
        }
        started.staged = staged.clone();
        let health_path =
            super::model::health_path(prepared.settings.as_ref(), &self.health_settings());
        let stop_first = self.stops_first(id, current.as_ref());
        if let (true, Some(current)) = (stop_first, &current) {
            self.step(id, "stop-old", async {
                self.stop_release_after_requests(id, current).await;
                Ok(())
            })
            .await?;
            started.stopped_old = true;
        }
        let (web, others): (Vec<_>, Vec<_>) = specs(
            id,
            &prepared.procfile,
            &prepared.dir,
            &prepared.env,
            port,
            prepared.runtime.as_ref(),
        )
        .into_iter()
        .partition(|s| s.name == "web");
        let web_spec = web.first().cloned();
        for spec in web {
            started.processes.push(spec.key());
            self.step(id, "start-web", async {
                Ok(self.supervisor.start(spec).map(|_| ())?)
            })
            .await?;
        }
        let has_web = web_spec.is_some();
        let mut passed = GatePassed {
            port,
            given_port: None,
        };
        if let Some(web_spec) = web_spec {
            let runtime = prepared.runtime.as_ref();
            let gate = self
                .step(
                    id,
                    "health-gate",
                    self.gate_web(id, id, port, runtime, &health_path),
                )
                .await;
            passed = match (gate, &current) {
                (Ok(passed), _) => passed,
                // A hard-coded port the serving release holds: stop it, start the new one again.
                (Err(failure), Some(current))
                    if !started.stopped_old
                        && self.make_room_for(id, &failure, current, runtime) =>
                {
                    self.step(id, "stop-old", async {
                        self.stop_release_after_requests(id, current).await;
                        Ok(())
                    })
                    .await?;
                    started.stopped_old = true;
                    self.step(id, "restart-web", async {
                        self.supervisor.stop(&web_spec.key()).await;
                        Ok(self.supervisor.start(web_spec).map(|_| ())?)
                    })
                    .await?;
                    self.step(
                        id,
                        "health-gate",
                        self.gate_web(id, id, port, runtime, &health_path),
                    )
                    .await?
                }
                (Err(failure), _) => return Err(failure),
            };
        }
        let staged = match (staged, passed.given_port) {
            (Some(staged), Some(_)) => {
                let moved = self
                    .restage_on(
                        id,
                        "proxy-config-fixed-port",
                        staged,
                        passed.port,
                        overrides.as_deref(),
                        prepared.runtime.as_ref(),
                    )
                    .await;
                started.staged = moved.as_ref().ok().cloned();
                Some(moved?)
            }
            (staged, _) => staged,
        };
        if let Some(staged) = &staged {
            let drain = self.config.deploy.drain_timeout;
            started.switched_from = Some(self.proxy.active());
            self.step(id, "switch-traffic", async {
                Ok(self.proxy.activate(staged, drain).await?)
            })
            .await?;
            if has_web {
                self.step(
                    id,
                    "verify-through-nginx",
                    self.verify_through_nginx(passed.port, staged, &health_path),
                )
                .await?;
            }
        }
        let release = ReleaseInfo {
            deployment_id: id,
            version_label: prepared.label.clone(),
            source: prepared.source.clone(),
            sha256: prepared.sha256.clone(),
            fingerprint: prepared.fingerprint.clone(),
            dir: prepared.dir.clone(),
            web_port: passed.port,
            given_port: passed.given_port,
            processes: prepared
                .procfile
                .iter()
                .map(|e| (e.name.clone(), e.command.clone()))
                .collect(),
            deployed_ms: now_ms(),
            proxy_generation: staged.map(|s| s.generation),
            platform: prepared.platform.clone(),
            serial: prepared.serial,
            runtime: prepared.runtime.clone(),
            settings: prepared.settings.clone(),
        };
        // A restart is the same release: it is not its own rollback target.
        let keep_previous = prepared.hooks.is_some();
        let stopped_first = started.stopped_old;
        self.step(id, "flip", async {
            self.commit(release.clone(), keep_previous)
        })
        .await?;
        *started = Started::default();
        // A restart that fails after taking traffic has nothing older to return to.
        let previous = if keep_previous { current.clone() } else { None };
        let after = self
            .after_commit(&prepared, current.as_ref(), stopped_first, others)
            .await;
        if let Err(failure) = after {
            return Err(self
                .roll_back_after_commit(id, failure, previous, &release)
                .await);
        }
        self.cleanup(id).await;
        Ok(DeploymentStatus::Succeeded)
    }

    /// Steps after the new release took traffic: stop the old one, start the other processes,
    /// run the postdeploy hooks.
    async fn after_commit(
        &self,
        prepared: &Prepared,
        current: Option<&ReleaseInfo>,
        stopped_first: bool,
        others: Vec<crate::supervise::ProcessSpec>,
    ) -> Result<(), StepFailure> {
        let id = prepared.id;
        if let (false, Some(current)) = (stopped_first, current) {
            self.step(id, "stop-old", async {
                self.stop_release_after_requests(id, current).await;
                Ok(())
            })
            .await?;
        }
        for spec in others {
            let step = format!("start-{}", spec.name);
            self.step(id, &step, async {
                Ok(self.supervisor.start(spec).map(|_| ())?)
            })
            .await?;
        }
        if let (Some(hooks), Some(platform)) = (prepared.hooks, &prepared.platform) {
            let port = self.current().map_or(self.config.app.port, |c| c.web_port);
            let context = self.hook_context(
                id,
                &prepared.dir,
                &prepared.env,
                port,
                prepared.runtime.as_ref(),
            )?;
            self.run_hooks(id, &context, platform, &format!("{hooks}/postdeploy"))
                .await?;
        }
        Ok(())
    }

    pub(super) async fn roll_back_after_commit(
        &self,
        id: u64,
        mut failure: StepFailure,
        previous: Option<ReleaseInfo>,
        failed: &ReleaseInfo,
    ) -> StepFailure {
        let Some(previous) = previous else {
            failure.message.push_str(&format!(
                "; no previous release to roll back to, {} keeps serving",
                failed.version_label
            ));
            return failure;
        };
        match self.restore(id, previous.clone(), Some(failed)).await {
            Ok(()) => {
                failure.rolled_back = true;
                failure.message.push_str(&format!(
                    "; rolled back to {} (deployment {})",
                    previous.version_label, previous.deployment_id
                ));
                let _ = super::retention::remove_tree(failed.dir.clone()).await;
                if let Some(copy) = failed
                    .platform
                    .as_ref()
                    .filter(|c| previous.platform.as_ref() != Some(*c))
                {
                    let _ = super::retention::remove_tree(copy.clone()).await;
                }
            }
            Err(rollback) => failure.message.push_str(&format!(
                "; the rollback failed too ({}: {})",
                rollback.step, rollback.message
            )),
        }
        failure
    }

    /// Brings `target` (an earlier good release) back into service: its processes under its own
    /// deployment id, its environment, its nginx overrides. Zero downtime when there is an
    /// alternate port; under all-at-once the serving release makes room first. Whatever fails
    /// is undone: the target's processes stop, nginx and the serving release come back.
    pub(super) async fn restore(
        &self,
        id: u64,
        target: ReleaseInfo,
        serving: Option<&ReleaseInfo>,
    ) -> Result<(), StepFailure> {
        let port = self.next_web_port(serving);
        // A target with a fixed port listens there whatever its $PORT: the serving release
        // must make room when it holds that port.
        let target_listens = target.given_port.map_or(port, |_| target.web_port);
        let make_room = serving.is_some_and(|s| s.web_port == port || s.web_port == target_listens);
        let previous_config = self.proxy.active();
        let outcome = self
            .restore_steps(id, &target, serving, port, make_room)
            .await;
        if outcome.is_err() {
            let became_current = self
                .current()
                .is_some_and(|c| c.deployment_id == target.deployment_id);
            if !became_current {
                self.supervisor.stop_release(target.deployment_id).await;
                if let Some(previous) =
                    previous_config.filter(|p| self.proxy.active().as_ref() != Some(p))
                {
                    let _ = self
                        .proxy
                        .activate(&previous, self.config.deploy.drain_timeout)
                        .await;
                }
                if make_room {
                    self.restart_current().await;
                }
            }
        }
        outcome
    }

    async fn restore_steps(
        &self,
        id: u64,
        target: &ReleaseInfo,
        serving: Option<&ReleaseInfo>,
        port: u16,
        make_room: bool,
    ) -> Result<(), StepFailure> {
        let env = self.release_env(target.deployment_id)?;
        let health_path = target.health_path(&self.health_settings());
        let overrides = self
            .platform_of(id, target)
            .map(|p| p.join(NGINX_OVERRIDES));
        self.supervisor.stop_release(target.deployment_id).await;
        let staged = match self.proxy.enabled() {
            true => Some(
                self.step(id, "rollback-proxy-config", async {
                    Ok(self
                        .proxy
                        .stage(
                            port,
                            overrides.as_deref(),
                            &RuntimeInfo::static_files_of(target.runtime.as_ref()),
                        )
                        .await?)
                })
                .await?,
            ),
            false => None,
        };
        if let (true, Some(serving)) = (make_room, serving) {
            self.step(id, "rollback-stop-serving", async {
                self.supervisor.stop_release(serving.deployment_id).await;
                Ok(())
            })
            .await?;
        }
        let (web, others): (Vec<_>, Vec<_>) = specs(
            target.deployment_id,
            &entries(target),
            &target.dir,
            &env,
            port,
            target.runtime.as_ref(),
        )
        .into_iter()
        .partition(|s| s.name == "web");
        let has_web = !web.is_empty();
        for spec in web {
            self.step(id, "rollback-start-web", async {
                Ok(self.supervisor.start(spec).map(|_| ())?)
            })
            .await?;
        }
        let mut passed = GatePassed {
            port,
            given_port: None,
        };
        if has_web {
            let gate = self
                .step(
                    id,
                    "rollback-health-gate",
                    self.gate_web(
                        id,
                        target.deployment_id,
                        port,
                        target.runtime.as_ref(),
                        &health_path,
                    ),
                )
                .await;
            match gate {
                Ok(gate) => passed = gate,
                Err(failure) => {
                    if let Some(staged) = &staged {
                        let _ = std::fs::remove_dir_all(&staged.dir);
                    }
                    return Err(failure);
                }
            }
        }
        let staged = match (staged, passed.given_port) {
            (Some(staged), Some(_)) => Some(
                self.restage_on(
                    id,
                    "rollback-proxy-config-fixed-port",
                    staged,
                    passed.port,
                    overrides.as_deref(),
                    target.runtime.as_ref(),
                )
                .await?,
            ),
            (staged, _) => staged,
        };
        if let Some(staged) = &staged {
            let drain = self.config.deploy.drain_timeout;
            self.step(id, "rollback-switch-traffic", async {
                Ok(self.proxy.activate(staged, drain).await?)
            })
            .await?;
            if has_web {
                self.step(
                    id,
                    "rollback-verify-through-nginx",
                    self.verify_through_nginx(passed.port, staged, &health_path),
                )
                .await?;
            }
        }
        let restored = ReleaseInfo {
            web_port: passed.port,
            given_port: passed.given_port,
            proxy_generation: staged.map(|s| s.generation),
            deployed_ms: now_ms(),
            ..target.clone()
        };
        self.step(id, "rollback-flip", async {
            crate::fsutil::replace_symlink(&restored.dir, &self.paths.current_link())?;
            self.persist_state(|state| {
                state
                    .previous
                    .retain(|r| r.deployment_id != restored.deployment_id);
                state.current = Some(restored.clone());
                state.in_progress = Some(InProgress {
                    id,
                    committed: true,
                });
            })?;
            Ok(())
        })
        .await?;
        if let (false, Some(serving)) = (make_room, serving) {
            self.step(id, "rollback-stop", async {
                self.supervisor.stop_release(serving.deployment_id).await;
                Ok(())
            })
            .await?;
        }
        for spec in others {
            let step = format!("rollback-start-{}", spec.name);
            self.step(id, &step, async {
                Ok(self.supervisor.start(spec).map(|_| ())?)
            })
            .await?;
        }
        Ok(())
    }

    /// Flips `current` and records the new release as the serving one; marks the deployment
    /// committed in the same atomic write.
    fn commit(&self, release: ReleaseInfo, keep_previous: bool) -> Result<(), StepFailure> {
        crate::fsutil::replace_symlink(&release.dir, &self.paths.current_link())?;
        let _ = std::fs::remove_file(self.paths.staging_link());
        let keep = self.config.deploy.releases_to_keep;
        let id = release.deployment_id;
        self.persist_state(|state| {
            if let Some(previous) = state.current.take()
                && keep_previous
            {
                state.previous.insert(0, previous);
            }
            state.previous.truncate(keep.saturating_sub(1));
            state.current = Some(release);
            state.in_progress = Some(InProgress {
                id,
                committed: true,
            });
        })?;
        Ok(())
    }

    pub(super) fn next_web_port(&self, current: Option<&ReleaseInfo>) -> u16 {
        let app = &self.config.app;
        match (self.config.deploy.strategy, current) {
            (DeployStrategy::ZeroDowntime, Some(current)) if current.web_port == app.port => {
                app.alternate_port
            }
            _ => app.port,
        }
    }
}
