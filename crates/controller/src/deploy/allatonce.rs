//! The `AllAtOnce` deployment (EB: "Deploys the new version to all instances
//! simultaneously"), and restarts (`RestartAppServer`) on the same machine.
//!
//! A member goes Pending → Dispatched → Deployed → Healthy, or ends Failed / TimedOut:
//! - Deploy: Dispatched once the environment's desired serial is the deployment's (replies
//!   then carry it); Deployed on the host's success outcome for that serial (or when the host
//!   serves that serial, should the outcome be lost); Healthy after the health gate.
//! - Restart: Dispatched with a derived command id (returned for the caller to queue);
//!   Healthy when the command's result has a success outcome, Failed when it was refused or
//!   its outcome failed. A restart has no gate: it is done when each result is in.
//! - Past the deadline (`Timeout` + 240 s) every unfinished member is TimedOut.
//!
//! The deployment ends (EB's order of events) when no command is running any more:
//! any command failure (or command timeout) aborts it at once, without waiting for health
//! gates; otherwise it succeeds when every member is Healthy, and fails on health at the
//! deadline. EB does not roll back: hosts that deployed keep the new version.

use super::events::{ABORTED_NOTE, Emitter};
use super::members::{
    command_failure, command_running, deploy_result, enrolled_host, health_gate, is_final,
    restart_result, time_out,
};
use super::{DeploySettings, FleetView, StepOutcome, command_id, deadline_ms};
use crate::model::{
    Deployment, DeploymentKind, DeploymentStatus, EventSeverity, MemberState, Millis,
};

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
    let deadline = deadline_ms(&d, settings.budget_ms());
    let running_before = d.members.iter().any(command_running);
    let (kind, id, serial) = (d.kind, d.id, d.serial);
    for member in &mut d.members {
        let Some(host) = enrolled_host(member, view, now_ms) else {
            continue;
        };
        if member.state == MemberState::Pending {
            match kind {
                DeploymentKind::Deploy | DeploymentKind::Rollback
                    if view.desired_serial >= serial =>
                {
                    member.state = MemberState::Dispatched;
                    member.dispatched_ms = Some(now_ms);
                }
                DeploymentKind::Deploy | DeploymentKind::Rollback => {}
                DeploymentKind::Restart => {
                    member.command_id = Some(command_id(id, &member.instance_id));
                    member.state = MemberState::Dispatched;
                    member.dispatched_ms = Some(now_ms);
                }
            }
        }
        if member.state == MemberState::Dispatched {
            if kind.is_deploy() {
                deploy_result(member, host, serial, now_ms, &mut out);
            } else {
                restart_result(member, host, now_ms, MemberState::Healthy);
            }
        }
        // Asked for again on every step until its result is in: a controller that stored the
        // deployment and crashed before queueing the command queues it after the restart
        // (the queue and the agent dedupe by id).
        if kind == DeploymentKind::Restart
            && member.state == MemberState::Dispatched
            && now_ms <= deadline
            && let Some(command) = &member.command_id
        {
            commands.push((member.instance_id.clone(), command.clone()));
        }
        if member.state == MemberState::Deployed {
            if settings.ignore_health_check {
                // AllAtOnce has no batch to hold back: the gate is skipped.
                member.state = MemberState::Healthy;
                member.done_ms = Some(now_ms);
            } else {
                health_gate(member, host, settings);
            }
        }
        if now_ms > deadline {
            time_out(member, settings, now_ms);
        }
    }

    let running_after = d.members.iter().any(command_running);
    let mut command_failed: Vec<&str> = d
        .members
        .iter()
        .filter(|m| command_failure(m))
        .map(|m| m.instance_id.as_str())
        .collect();
    // Sorted, so the message names the same hosts the same way whatever order they enrolled in.
    command_failed.sort_unstable();
    let mut abort_message = None;
    if running_before && !running_after {
        let failed = command_failed.len();
        out.info(&format!(
            "Command execution completed on all instances. Summary: [Successful: {}, Failed: {failed}].",
            d.members.len() - failed
        ));
    }
    if !running_after && !command_failed.is_empty() {
        abort_message = Some(format!(
            "Unsuccessful command execution on instance id(s) '{}'. Aborting the operation.",
            command_failed.join(",")
        ));
    } else if !running_after && d.members.iter().all(|m| is_final(m.state)) {
        let unhealthy: Vec<&str> = d
            .members
            .iter()
            .filter(|m| m.state != MemberState::Healthy)
            .map(|m| m.instance_id.as_str())
            .collect();
        if !unhealthy.is_empty() {
            abort_message = Some(format!(
                "Instance id(s) '{}' did not pass health check after command execution. Aborting the operation.",
                unhealthy.join(",")
            ));
        }
    }
    if let Some(message) = abort_message {
        out.failed(kind, &message);
        d.status = DeploymentStatus::Failed;
        d.finished_ms = Some(now_ms);
        d.message = Some(message);
    } else if d.members.iter().all(|m| m.state == MemberState::Healthy) {
        out.succeeded(kind);
        d.status = DeploymentStatus::Succeeded;
        d.finished_ms = Some(now_ms);
    }
    out.finish(d, commands)
}

/// `AbortEnvironmentUpdate` (any policy): stops scheduling. Members not yet dispatched (or
/// still draining) are failed; hosts already deploying finish (or roll back) on their own,
/// as EB's do. The load balancer's states follow: a finished deployment drains nothing.
pub fn abort(deployment: &Deployment, now_ms: Millis, reason: &str) -> StepOutcome {
    let mut d = deployment.clone();
    let mut out = Emitter::new(&d, now_ms);
    if d.status.is_finished() {
        return out.finish(d, Vec::new());
    }
    let not_sent = |state| matches!(state, MemberState::Pending | MemberState::Draining);
    let dispatched = d.members.iter().any(|m| !not_sent(m.state));
    for member in &mut d.members {
        if not_sent(member.state) {
            member.state = MemberState::Failed;
            member.message = Some("Not dispatched: the deployment was aborted.".into());
            member.done_ms = Some(now_ms);
        }
    }
    // Ours: EB's abort event text was not found.
    out.push(
        None,
        EventSeverity::Warn,
        &format!("Environment update aborted: {reason}"),
    );
    if d.kind.is_deploy() && dispatched {
        out.error(ABORTED_NOTE);
    }
    d.status = DeploymentStatus::Aborted;
    d.finished_ms = Some(now_ms);
    d.message = Some(reason.to_string());
    out.finish(d, Vec::new())
}

#[cfg(test)]
#[path = "allatonce_tests.rs"]
mod tests;
