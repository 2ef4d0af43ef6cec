//! What a (re)started agent does before taking new work. The rule: what runs must match
//! `state.current`. A deployment interrupted before its commit point is rolled back (its
//! processes stopped, nginx pointed at the serving release's config again); one interrupted
//! after it is finished (missing processes started, postdeploy hooks run). Never two versions
//! behind nginx, never a half-flipped release. (Accepted deployments were re-queued by
//! `Engine::load`, ahead of anything submitted meanwhile.)

use super::Engine;
use super::engine::{describe, read_required};
use super::hooks::kill_orphaned_hooks;
use super::model::{DeploymentStatus, InProgress, Job, JobKind, StepRecord, StepStatus};
use crate::events::{NewEvent, Severity};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

impl Engine {
    pub async fn recover(&self) {
        let in_progress = self.lock_state().in_progress;
        if let Some(interrupted) = in_progress {
            kill_orphaned_hooks(self.paths.root(), interrupted.id);
        }
        self.reconcile().await;
        if let Some(interrupted) = in_progress {
            // Uncommitted: nothing of it may run. What reconcile stopped was in the process
            // table; a process spawned just before the agent died may not be.
            let dir = self.paths.release_dir(interrupted.id);
            let serving = self.current().is_some_and(|c| c.dir == dir);
            if !interrupted.committed && !serving {
                let killed = kill_processes_in(&dir);
                if killed > 0 {
                    self.events.warn(
                        "deploy",
                        format!(
                            "Stopped {killed} process(es) of interrupted deployment {} that the \
                             agent had started but not yet recorded",
                            interrupted.id
                        ),
                    );
                }
            }
            self.conclude(interrupted).await;
        }
    }

    async fn conclude(&self, interrupted: InProgress) {
        let id = interrupted.id;
        let Some(record) = self.record(id) else {
            let _ = self.persist_state(|state| state.in_progress = None);
            return;
        };
        let step = record
            .steps
            .last()
            .map(|s| s.name.clone())
            .unwrap_or_default();
        let what = format!("{} {id} of {}", describe(record.kind), record.version_label);
        let current = self.current();
        let serving = current.as_ref().map(|c| c.deployment_id);
        let conclusion = conclusion(interrupted, record.kind, &record.steps, serving);
        if conclusion == Conclusion::Undo {
            let serving = current.as_ref().map(|c| {
                format!(
                    "{} (deployment {}) serves",
                    c.version_label, c.deployment_id
                )
            });
            let message = format!(
                "agent restarted during step {step}; rolled back, {}",
                serving.unwrap_or("nothing serves".into())
            );
            self.deploy_log(id, &message);
            let referenced = self
                .lock_state()
                .current
                .iter()
                .any(|c| c.dir == self.paths.release_dir(id));
            if !referenced {
                let _ = super::retention::remove_tree(self.paths.release_dir(id)).await;
                let _ = super::retention::remove_tree(self.paths.platform_copy(id)).await;
            }
            self.update_record(id, |r| r.message = Some(message.clone()));
            self.events.emit(
                NewEvent::new(Severity::Error, "deploy", format!("{what}: {message}"))
                    .deployment(id),
            );
            self.finish(id, DeploymentStatus::Failed);
            return;
        }
        self.deploy_log(
            id,
            &format!(
                "agent restarted during step {step}; the release had taken traffic: finishing it"
            ),
        );
        let status = match (conclusion, current) {
            (Conclusion::RunPostdeploy(phase), Some(current)) => {
                let context = self.release_env(id).and_then(|env| {
                    self.hook_context(
                        id,
                        &current.dir,
                        &env,
                        current.web_port,
                        current.runtime.as_ref(),
                    )
                });
                // From root's copy: the app user could have replaced the release's own hooks.
                let outcome = match context {
                    Ok(context) => match self.platform_of(id, &current) {
                        Some(platform) => self.run_hooks(id, &context, &platform, phase).await,
                        None => Ok(()),
                    },
                    Err(failure) => Err(failure),
                };
                match outcome {
                    Ok(()) => DeploymentStatus::Succeeded,
                    Err(failure) => self.undo_after_restart(id, &current, failure.message).await,
                }
            }
            (Conclusion::Finish(status), _) => status,
            // Unreachable: `Undo` returned above, and hooks are asked for only when this
            // deployment's release serves (so `current` is it).
            (Conclusion::RunPostdeploy(_) | Conclusion::Undo, _) => DeploymentStatus::Failed,
        };
        let _ = self.retain_releases(id).await;
        self.finish(id, status);
    }

    async fn undo_after_restart(
        &self,
        id: u64,
        failed: &super::model::ReleaseInfo,
        reason: String,
    ) -> DeploymentStatus {
        let previous = self.lock_state().previous.first().cloned();
        let Some(previous) = previous else {
            self.update_record(id, |r| r.message = Some(reason));
            return DeploymentStatus::Failed;
        };
        let outcome = self.restore(id, previous, Some(failed)).await;
        let message = match &outcome {
            Ok(()) => format!("{reason}; rolled back"),
            Err(rollback) => format!(
                "{reason}; the rollback failed too ({}: {})",
                rollback.step, rollback.message
            ),
        };
        self.update_record(id, |r| r.message = Some(message.clone()));
        self.events
            .emit(NewEvent::new(Severity::Error, "deploy", message).deployment(id));
        if outcome.is_ok() {
            DeploymentStatus::RolledBack
        } else {
            DeploymentStatus::Failed
        }
    }

    /// Makes what runs match `state.current`: only its processes, nginx on its port, `current`
    /// pointing at its directory.
    async fn reconcile(&self) {
        if self.supervisor.hold().is_held() {
            // `stop-apps` holds until the next job or `hostmanager start`: finish the stop
            // (it may have been cut short), start nothing.
            self.supervisor.stop_all().await;
            self.proxy.stop(self.config.supervise.stop_timeout).await;
            self.events.warn(
                "deploy",
                "the apps and nginx stay stopped (stop-apps); `hostmanager start` or the next deployment starts them",
            );
            return;
        }
        let Some(current) = self.current() else {
            // Nothing committed: whatever a crashed first deployment started must go.
            self.supervisor.stop_all().await;
            if self.proxy.active().is_some() {
                self.proxy.stop(self.config.supervise.stop_timeout).await;
            }
            return;
        };
        // nginx first: it may be sending traffic to an interrupted deployment's release,
        // which must not stop before the traffic is back on the serving one.
        self.restore_serving_proxy(&current).await;
        for release in self.supervisor.releases() {
            if release != current.deployment_id {
                self.supervisor.stop_release(release).await;
            }
        }
        let _ = crate::fsutil::replace_symlink(&current.dir, &self.paths.current_link());
        self.restart_current().await;
    }

    async fn restore_serving_proxy(&self, current: &super::model::ReleaseInfo) {
        // The same generation, not only the same port: under all-at-once an interrupted
        // deployment's config (with its overrides) would have the serving release's port too.
        let serving_config = match (self.proxy.active(), &current.proxy_generation) {
            (Some(active), Some(generation)) => active.generation == *generation,
            (Some(active), None) => active.upstream_port == current.web_port,
            (None, _) => false,
        };
        if !self.proxy.enabled() || serving_config {
            return;
        }
        let restored = self.restage_serving(current).await;
        match restored {
            Ok(_) => {}
            Err(error) => self.events.error(
                "deploy",
                format!("cannot point nginx back at the serving release: {error}"),
            ),
        }
    }

    /// Deployments accepted before a restart run now, in their original order.
    pub(super) fn requeue(&self) {
        let queued: Vec<_> = self
            .lock_records()
            .values()
            .filter(|r| r.status == DeploymentStatus::Queued)
            .cloned()
            .collect();
        for record in queued {
            let job = match self.queued_job(&record) {
                Ok(job) => job,
                Err(message) => {
                    // Running it without its properties or its change would be a silent lie.
                    let what = format!("{} {}", describe(record.kind), record.id);
                    self.update_record(record.id, |r| {
                        r.status = DeploymentStatus::Failed;
                        r.finished_ms = Some(super::steps::now_ms());
                        r.message = Some(message.clone());
                    });
                    self.deploy_log(record.id, &message);
                    self.events.emit(
                        NewEvent::new(Severity::Error, "deploy", format!("{what}: {message}"))
                            .deployment(record.id),
                    );
                    continue;
                }
            };
            self.lock_requests().insert(record.id, job);
            if self.queue.try_send(record.id).is_err() {
                self.lock_requests().remove(&record.id);
                self.update_record(record.id, |r| {
                    r.status = DeploymentStatus::Failed;
                    r.message = Some("deployment queue full after restart".into());
                });
            }
        }
    }

    /// The job of a deployment accepted before a restart, rebuilt from its files.
    fn queued_job(&self, record: &super::model::DeploymentRecord) -> Result<Job, String> {
        Ok(match record.kind {
            JobKind::Deploy => Job::Deploy(super::model::DeploymentRequest {
                source: self.queued_source(record),
                sha256: record.sha256.clone(),
                version_label: Some(record.version_label.clone()),
                env: self.release_env(record.id).map_err(|f| f.message)?,
                platform_options: record.platform_options.clone(),
                command_leader: record.command_leader,
            }),
            JobKind::Configure => {
                let path = self.change_file(record.id);
                Job::Configure(read_required(&path).map_err(|cause| {
                    format!(
                        "the requested change cannot be read from {}: {cause}",
                        path.display()
                    )
                })?)
            }
            JobKind::Restart => Job::Restart,
            JobKind::Rollback => Job::Rollback,
        })
    }
}

/// What recovery does with a deployment a restart interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Conclusion {
    /// Before the commit point: undone; the deployment failed.
    Undo,
    /// After it, the release serves and its postdeploy hooks (this phase) never succeeded:
    /// they run now; the deployment succeeds if they pass, else it is rolled back.
    RunPostdeploy(&'static str),
    /// After it, nothing left to run: finished with this status.
    Finish(DeploymentStatus),
}

/// The rules of `conclude`, apart from its I/O so they can be checked: the deployment
/// `interrupted` of `kind`, its recorded `steps`, and the deployment whose release serves now.
pub(super) fn conclusion(
    interrupted: InProgress,
    kind: JobKind,
    steps: &[StepRecord],
    serving: Option<u64>,
) -> Conclusion {
    if !interrupted.committed {
        return Conclusion::Undo;
    }
    let hooks = match kind {
        JobKind::Deploy => Some(".platform/hooks/postdeploy"),
        JobKind::Configure => Some(".platform/confighooks/postdeploy"),
        JobKind::Restart | JobKind::Rollback => None,
    };
    let ran = steps
        .iter()
        .any(|s| s.name.ends_with("postdeploy") && s.status == StepStatus::Succeeded);
    let serves = serving == Some(interrupted.id);
    match hooks {
        Some(phase) if !ran && serves => Conclusion::RunPostdeploy(phase),
        // The crash came after a rollback had already put the previous release back.
        _ if !serves && kind != JobKind::Rollback => {
            Conclusion::Finish(DeploymentStatus::RolledBack)
        }
        _ => Conclusion::Finish(DeploymentStatus::Succeeded),
    }
}

#[cfg(test)]
#[path = "recovery_props.rs"]
mod props;

/// After a crash: kills (by process group) every process whose working directory is `dir` or
/// under it. For a release that was being started when the agent died: a process spawned in
/// the moment before the process table was persisted is known to no one, and would hold the
/// release's port (answering health checks meant for the next release) forever.
fn kill_processes_in(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let own = std::process::id() as i32;
    let mut killed = 0;
    for pid in entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != own)
    {
        let Ok(cwd) = std::fs::read_link(format!("/proc/{pid}/cwd")) else {
            continue;
        };
        if cwd.starts_with(dir) {
            let pgid = crate::supervise::read_stat(pid).map_or(pid, |s| s.pgid);
            // Never the agent's own group: then only that process.
            let _ = match pgid == nix::unistd::getpgrp().as_raw() {
                true => nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL),
                false => nix::sys::signal::killpg(Pid::from_raw(pgid), Signal::SIGKILL),
            };
            killed += 1;
        }
    }
    killed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_left_in_a_release_directory_are_killed_with_their_group() {
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let release = dir.path().join("releases/7");
        std::fs::create_dir_all(&release).expect("mkdir");
        let mut orphan = std::process::Command::new("sleep")
            .arg("30")
            .current_dir(&release)
            .process_group(0)
            .spawn()
            .expect("spawn");
        let mut elsewhere = std::process::Command::new("sleep")
            .arg("30")
            .current_dir(dir.path())
            .process_group(0)
            .spawn()
            .expect("spawn");
        assert_eq!(kill_processes_in(&dir.path().join("releases/7")), 1);
        let status = orphan.wait().expect("wait");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
        assert!(
            elsewhere.try_wait().expect("try_wait").is_none(),
            "only the release's"
        );
        let _ = elsewhere.kill();
        let _ = elsewhere.wait();
    }
}
