//! `Rolling` deployments, rolling restarts and rollbacks: batch after batch (the members'
//! `batch`, fixed at creation, see [`super::batches`]). A batch goes:
//! 1. its hosts are drained in the load balancer (Draining) until HAProxy has taken them out
//!    of rotation and their open sessions reach 0, or `DeregistrationDelay` passes;
//! 2. they are sent the new desired state in their own replies (Dispatched; a restart: its
//!    command), and report an outcome (Deployed);
//! 3. they go back into rotation and run the health gate (Healthy);
//! 4. the next batch starts once every host of this one is Healthy.
//!
//! Failure is Elastic Beanstalk's: a failed command aborts the deployment as soon as the
//! batch's commands are done; a failed gate aborts it at the batch's deadline (`Timeout` +
//! 240 s from the batch's start), unless `IgnoreHealthCheck` is set, which goes on with a
//! warning. Finished batches keep the new version (rollback is the orchestrator's
//! `AutoRollback`, a new deployment: [`rollback_of`]).

use super::events::Emitter;
use super::members::{
    command_failure, command_running, deploy_result, enrolled_host, health_gate, is_final,
    restart_result, time_out,
};
use super::{DeploySettings, FleetView, InstanceView, StepOutcome, command_id, deadline_ms, fresh};
use crate::model::{Deployment, DeploymentKind, DeploymentStatus, Member, MemberState, Millis};

/// One step of the deployment against the fleet as it is now.
pub fn step(
    deployment: &Deployment,
    view: &FleetView,
    settings: &DeploySettings,
    now_ms: Millis,
) -> StepOutcome {
    let Some((mut d, mut out)) = Emitter::begin(deployment, now_ms) else {
        return StepOutcome::unchanged(deployment);
    };
    let mut commands = Vec::new();
    let (mut launch, mut release) = (0, Vec::new());
    if matches!(
        d.status,
        DeploymentStatus::Failing | DeploymentStatus::Aborting
    ) {
        fresh::clean_up(&mut d, view, settings, now_ms, &mut release);
        if d.status.is_finished() {
            out.info("The new instance(s) were released: the environment runs on its original instances.");
        }
        return out.finish_with(d, commands, launch, release);
    }
    // A step may finish one batch and start the next; each pass finishes a batch or stops,
    // so it runs at most once per batch (and once more to retire an additional batch).
    for _ in 0..=batch_count(&d) + 1 {
        let Some(batch) = current_batch(&d) else {
            if fresh::retire_additional_batch(&mut d, now_ms, &mut out) {
                continue;
            }
            out.succeeded(d.kind);
            d.status = DeploymentStatus::Succeeded;
            d.finished_ms = Some(now_ms);
            break;
        };
        let mut batch_run = BatchRun {
            batch,
            view,
            settings,
            now_ms,
            out: &mut out,
            commands: &mut commands,
            launch: &mut launch,
            release: &mut release,
        };
        let progress = match fresh::launch_failure(&d) {
            Some(message) => Progress::Failed(message),
            None => batch_run.step(&mut d),
        };
        match progress {
            Progress::Running => break,
            Progress::Done => continue,
            Progress::Failed(message) => {
                out.failed(d.kind, &message);
                d.message = Some(message);
                if fresh::start_failing(&mut d, &mut out) {
                    fresh::clean_up(&mut d, view, settings, now_ms, &mut release);
                } else {
                    d.status = DeploymentStatus::Failed;
                    d.finished_ms = Some(now_ms);
                }
                break;
            }
        }
    }
    out.finish_with(d, commands, launch, release)
}

/// The lowest batch with a member that is not done.
pub fn current_batch(deployment: &Deployment) -> Option<u32> {
    deployment
        .members
        .iter()
        .filter(|m| !is_final(m.state))
        .map(|m| m.batch)
        .min()
}

/// The batches' count.
pub fn batch_count(deployment: &Deployment) -> u32 {
    deployment
        .members
        .iter()
        .map(|m| m.batch + 1)
        .max()
        .unwrap_or(0)
}

enum Progress {
    Running,
    Done,
    Failed(String),
}

struct BatchRun<'a> {
    batch: u32,
    view: &'a FleetView,
    settings: &'a DeploySettings,
    now_ms: Millis,
    out: &'a mut Emitter,
    commands: &'a mut Vec<(String, String)>,
    launch: &'a mut usize,
    release: &'a mut Vec<String>,
}

impl BatchRun<'_> {
    fn step(&mut self, d: &mut Deployment) -> Progress {
        let (kind, id, serial) = (d.kind, d.id, d.serial);
        let number = self.batch + 1;
        let now_ms = self.now_ms;
        let in_batch = |m: &Member, batch: u32| m.batch == batch;
        if fresh::is_retire_batch(d, self.batch) {
            let batch = self.batch;
            return match fresh::retire_batch(
                d,
                batch,
                self.view,
                self.settings,
                now_ms,
                self.out,
                self.release,
            ) {
                Ok(true) => Progress::Done,
                Ok(false) => Progress::Running,
                Err(message) => Progress::Failed(message),
            };
        }
        // Not started: nothing of it moved yet (a slot stays Pending until it is named, but
        // its batch's start time is set).
        if d.members
            .iter()
            .filter(|m| in_batch(m, self.batch))
            .all(|m| m.state == MemberState::Pending && m.drain_started_ms.is_none())
        {
            let ids = ids(d, self.batch, |m| !fresh::is_slot(m));
            let slots = d
                .members
                .iter()
                .filter(|m| in_batch(m, self.batch) && fresh::is_slot(m))
                .count();
            for member in d.members.iter_mut().filter(|m| in_batch(m, self.batch)) {
                if !fresh::is_slot(member) {
                    member.state = MemberState::Draining;
                }
                // A slot's batch starts now too: its deadline runs from here.
                member.drain_started_ms = Some(now_ms);
            }
            if slots > 0 {
                self.out
                    .info(&fresh::launch_event(&d.policy, self.batch, slots));
            }
            if !ids.is_empty() {
                self.out.info(&match kind {
                    DeploymentKind::Restart => {
                        format!("Batch {number}: Starting application server restart on instance(s) [{ids}].")
                    }
                    _ => format!("Batch {number}: Starting application deployment on instance(s) [{ids}]."),
                });
            }
        }
        let deadline = deadline_ms(d, self.settings.budget_ms());
        let batch_members = |d: &Deployment| -> Vec<MemberState> {
            d.members
                .iter()
                .filter(|m| in_batch(m, self.batch))
                .map(|m| m.state)
                .collect()
        };
        let before = batch_members(d);
        for member in d.members.iter_mut().filter(|m| in_batch(m, self.batch)) {
            if fresh::is_slot(member) || member.state == MemberState::Launching {
                fresh::launching(member, self.view, now_ms, deadline, self.launch);
                if member.state == MemberState::Launching || fresh::is_slot(member) {
                    continue;
                }
            }
            let Some(host) = enrolled_host(member, self.view, now_ms) else {
                continue;
            };
            if member.state == MemberState::Draining && drained(member, host, self.settings, now_ms)
            {
                member.state = MemberState::Dispatched;
                member.dispatched_ms = Some(now_ms);
                if kind == DeploymentKind::Restart {
                    member.command_id = Some(command_id(id, &member.instance_id));
                }
            }
            if member.state == MemberState::Dispatched {
                if kind.is_deploy() {
                    deploy_result(member, host, serial, now_ms, self.out);
                } else {
                    restart_result(member, host, now_ms, MemberState::Deployed);
                }
            }
            // Asked for on every step until its result is in (queueing dedupes by id).
            if kind == DeploymentKind::Restart
                && member.state == MemberState::Dispatched
                && now_ms <= deadline
                && let Some(command) = &member.command_id
            {
                self.commands
                    .push((member.instance_id.clone(), command.clone()));
            }
            if member.state == MemberState::Deployed {
                health_gate(member, host, self.settings);
            }
            if now_ms > deadline {
                time_out(member, self.settings, now_ms);
            }
        }
        let after = batch_members(d);
        let draining = |states: &[MemberState]| states.contains(&MemberState::Draining);
        if draining(&before) && !draining(&after) {
            self.out.info(&match kind {
                DeploymentKind::Restart => {
                    format!("Batch {number}: Restarting the application server.")
                }
                _ => format!("Batch {number}: Starting application deployment command execution."),
            });
        }
        let running = |d: &Deployment| {
            d.members
                .iter()
                .any(|m| in_batch(m, self.batch) && command_running(m))
        };
        let failed = ids(d, self.batch, command_failure);
        let was_running = before.iter().any(|s| {
            matches!(
                s,
                MemberState::Pending
                    | MemberState::Draining
                    | MemberState::Dispatched
                    | MemberState::Launching
            )
        });
        if was_running && !running(d) {
            let succeeded = d
                .members
                .iter()
                .filter(|m| m.outcome.is_some_and(|o| o.is_success()))
                .count();
            self.out.info(&format!(
                "Batch {number}: Completed application deployment command execution."
            ));
            self.out.info(&format!(
                "Command execution completed on {succeeded} of {} instances in environment.",
                d.members.len()
            ));
            if failed.is_empty() {
                self.out.info(&format!(
                    "Batch {number}: Registering instance(s) with the load balancer and waiting for them to be healthy."
                ));
            }
        }
        if running(d) {
            return Progress::Running;
        }
        if !failed.is_empty() {
            return Progress::Failed(format!(
                "Unsuccessful command execution on instance id(s) '{failed}'. Aborting the operation."
            ));
        }
        if !after.iter().all(|s| is_final(*s)) {
            return Progress::Running;
        }
        let unhealthy = ids(d, self.batch, |m| m.state != MemberState::Healthy);
        if !unhealthy.is_empty() {
            if !self.settings.ignore_health_check {
                return Progress::Failed(format!(
                    "Instance id(s) '{unhealthy}' did not pass health check after command execution. Aborting the operation."
                ));
            }
            self.out.warn(&format!(
                "Batch {number}: Instance id(s) '{unhealthy}' did not pass health check after command execution. Continuing: IgnoreHealthCheck is set."
            ));
        }
        self.out.info(&format!(
            "Batch {number}: Completed application deployment."
        ));
        if let Some(split) = fresh::evaluation_event(d, self.batch, self.settings) {
            self.out.info(&split);
        }
        Progress::Done
    }
}

/// The batch's members for which `pick` holds, sorted, comma-separated (EB's form).
fn ids(d: &Deployment, batch: u32, pick: impl Fn(&Member) -> bool) -> String {
    let mut ids: Vec<&str> = d
        .members
        .iter()
        .filter(|m| m.batch == batch && pick(m))
        .map(|m| m.instance_id.as_str())
        .collect();
    ids.sort_unstable();
    ids.join(",")
}

/// Out of rotation with no open session, or out of time to drain. Without a load balancer
/// (or when it has no server for the host) there is nothing to drain.
fn drained(
    member: &Member,
    host: &InstanceView,
    settings: &DeploySettings,
    now_ms: Millis,
) -> bool {
    let started = member.drain_started_ms.unwrap_or(now_ms);
    if now_ms.saturating_sub(started) >= settings.drain_timeout_ms as i64 {
        return true;
    }
    host.lb
        .as_ref()
        .is_none_or(|lb| !lb.in_rotation && lb.sessions == 0)
}

/// `AutoRollback` of `failed`: a new deployment of `previous` (the last version that deployed
/// successfully) to the members the failed deployment sent its version to and that do not
/// serve `previous` now, batch by batch with the newest batch first. `None` when there is
/// nothing to roll back.
pub fn rollback_of(
    failed: &Deployment,
    view: &FleetView,
    previous: &str,
    serial: u64,
    now_ms: Millis,
) -> Option<Deployment> {
    let reached: Vec<&Member> = failed
        .members
        .iter()
        .filter(|m| !matches!(m.state, MemberState::Pending | MemberState::Draining))
        .filter(|m| {
            view.instances.get(&m.instance_id).is_some_and(|host| {
                host.enrolled && host.serving_version.as_deref() != Some(previous)
            })
        })
        .collect();
    if reached.is_empty() {
        return None;
    }
    let last = reached.iter().map(|m| m.batch).max().unwrap_or(0);
    let mut rollback = super::new_deployment(
        0,
        &failed.environment,
        DeploymentKind::Rollback,
        Some(previous),
        serial,
        reached.iter().map(|m| m.instance_id.as_str()),
        now_ms,
    );
    // The hosts it launched are gone: the rollback rolls over the existing ones.
    rollback.policy = match fresh::launches(failed) {
        true => crate::options::DeploymentPolicy::Rolling
            .as_str()
            .to_string(),
        false => failed.policy.clone(),
    };
    for (member, original) in rollback.members.iter_mut().zip(&reached) {
        member.batch = last - original.batch;
    }
    // Batches renumbered from 0 without gaps, in member order by batch.
    rollback.members.sort_by_key(|m| m.batch);
    let mut numbers: Vec<u32> = rollback.members.iter().map(|m| m.batch).collect();
    numbers.dedup();
    for member in &mut rollback.members {
        member.batch = numbers.iter().position(|b| *b == member.batch).unwrap_or(0) as u32;
    }
    Some(rollback)
}

#[cfg(test)]
#[path = "rolling_tests.rs"]
mod tests;
