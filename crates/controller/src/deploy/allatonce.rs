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

use hostmanager_protocol::Outcome;

use super::{
    DeploySettings, EVENT_SOURCE, FleetView, InstanceView, StepOutcome, command_id, deadline_ms,
};
use crate::health::Status;
use crate::model::{
    Deployment, DeploymentKind, DeploymentStatus, EventSeverity, Member, MemberState, Millis,
    NewEvent,
};

const ABORTED_NOTE: &str = "During an aborted deployment, some instances may have deployed the new application version. To ensure all instances are running the same version, re-deploy the appropriate application version.";

/// One step of the deployment against the fleet as it is now.
pub fn step(
    deployment: &Deployment,
    view: &FleetView,
    settings: &DeploySettings,
    now_ms: Millis,
) -> StepOutcome {
    let mut d = deployment.clone();
    let mut out = Emitter::new(&d, now_ms);
    let mut commands = Vec::new();
    if d.status.is_finished() {
        return out.finish(d, commands);
    }
    if d.status == DeploymentStatus::Pending {
        d.status = DeploymentStatus::InProgress;
        match d.kind {
            DeploymentKind::Deploy => {
                out.info("Environment update is starting.");
                out.info("Deploying new version to instance(s).");
            }
            // EB's names its restart events after the API action.
            DeploymentKind::Restart => out.info("restartAppServer is starting."),
        }
    }
    let deadline = deadline_ms(&d, settings.timeout_s);
    let running_before = d.members.iter().any(command_running);
    let (kind, id, serial) = (d.kind, d.id, d.serial);
    for member in &mut d.members {
        let Some(host) = view
            .instances
            .get(&member.instance_id)
            .filter(|v| v.enrolled)
        else {
            if !is_final(member.state) {
                member.state = MemberState::Failed;
                member.message = Some(format!(
                    "Instance {} left the environment (revoked) during the deployment.",
                    member.instance_id
                ));
                member.done_ms = Some(now_ms);
            }
            continue;
        };
        if member.state == MemberState::Pending {
            match kind {
                DeploymentKind::Deploy if view.desired_serial >= serial => {
                    member.state = MemberState::Dispatched;
                    member.dispatched_ms = Some(now_ms);
                }
                DeploymentKind::Deploy => {}
                DeploymentKind::Restart => {
                    member.command_id = Some(command_id(id, &member.instance_id));
                    member.state = MemberState::Dispatched;
                    member.dispatched_ms = Some(now_ms);
                }
            }
        }
        if member.state == MemberState::Dispatched {
            match kind {
                DeploymentKind::Deploy => deploy_result(member, host, serial, now_ms, &mut out),
                DeploymentKind::Restart => restart_result(member, host, now_ms),
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
            health_gate(member, host, settings, now_ms);
        }
        if now_ms > deadline && !is_final(member.state) {
            member.message = Some(if member.state == MemberState::Deployed {
                "The instance did not pass the health check before the command timeout.".into()
            } else {
                format!(
                    "The command did not complete within the command timeout ({} seconds, plus {}).",
                    settings.timeout_s,
                    super::TIMEOUT_MARGIN_S
                )
            });
            member.state = MemberState::TimedOut;
            member.done_ms = Some(now_ms);
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
        out.error(&message);
        if kind == DeploymentKind::Deploy {
            out.error("Failed to deploy application.");
            out.error(ABORTED_NOTE);
        }
        d.status = DeploymentStatus::Failed;
        d.finished_ms = Some(now_ms);
        d.message = Some(message);
    } else if d.members.iter().all(|m| m.state == MemberState::Healthy) {
        match kind {
            DeploymentKind::Deploy => {
                out.info("New application version was deployed to running EC2 instances.");
                out.info("Environment update completed successfully.");
            }
            DeploymentKind::Restart => out.info("restartAppServer completed successfully."),
        }
        d.status = DeploymentStatus::Succeeded;
        d.finished_ms = Some(now_ms);
    }
    out.finish(d, commands)
}

/// `AbortEnvironmentUpdate`: stops scheduling. Members not yet dispatched are failed; hosts
/// already deploying finish (or roll back) on their own, as EB's do.
pub fn abort(deployment: &Deployment, now_ms: Millis, reason: &str) -> StepOutcome {
    let mut d = deployment.clone();
    let mut out = Emitter::new(&d, now_ms);
    if d.status.is_finished() {
        return out.finish(d, Vec::new());
    }
    let dispatched = d.members.iter().any(|m| m.state != MemberState::Pending);
    for member in &mut d.members {
        if member.state == MemberState::Pending {
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
    if d.kind == DeploymentKind::Deploy && dispatched {
        out.error(ABORTED_NOTE);
    }
    d.status = DeploymentStatus::Aborted;
    d.finished_ms = Some(now_ms);
    d.message = Some(reason.to_string());
    out.finish(d, Vec::new())
}

fn deploy_result(
    member: &mut Member,
    host: &InstanceView,
    serial: u64,
    now_ms: Millis,
    out: &mut Emitter,
) {
    let result = host.result.as_ref().filter(|r| r.serial == serial);
    let (outcome, step, message, finished_ms) = match result {
        Some(r) => (r.outcome, r.step.clone(), r.message.clone(), r.finished_ms),
        // The host serves the serial: it succeeded, whatever happened to its outcome.
        None if host.serving_serial == Some(serial) => (Outcome::Succeeded, None, None, 0),
        None => return,
    };
    member.outcome = Some(outcome);
    member.done_ms = Some(if finished_ms > 0 { finished_ms } else { now_ms });
    if outcome.is_success() {
        member.state = MemberState::Deployed;
        member.healthy_reports = 0;
        out.push(
            Some(&member.instance_id),
            EventSeverity::Info,
            "Instance deployment completed successfully.",
        );
    } else {
        member.state = MemberState::Failed;
        member.step = step.clone();
        member.message = message.clone();
        // Ours: EB points at its eb-engine.log; we carry the agent's step and message.
        let detail = match (step, message) {
            (Some(step), Some(message)) => format!(" Step {step}: {message}"),
            (None, Some(message)) => format!(" {message}"),
            (Some(step), None) => format!(" Step {step} failed."),
            (None, None) => String::new(),
        };
        out.push(
            Some(&member.instance_id),
            EventSeverity::Error,
            &format!("Instance deployment failed.{detail}"),
        );
    }
}

fn restart_result(member: &mut Member, host: &InstanceView, now_ms: Millis) {
    let Some(result) = host
        .command
        .as_ref()
        .filter(|c| Some(&c.id) == member.command_id.as_ref())
    else {
        return;
    };
    if !result.accepted {
        member.state = MemberState::Failed;
        member.message = Some(result.error.clone().unwrap_or_else(|| "refused".into()));
        member.done_ms = Some(now_ms);
        return;
    }
    // Accepted but no outcome yet: the restart is still running on the host.
    let Some(outcome) = result.outcome else {
        return;
    };
    member.outcome = Some(outcome);
    member.done_ms = Some(now_ms);
    if outcome.is_success() {
        member.state = MemberState::Healthy;
    } else {
        member.state = MemberState::Failed;
        member.message = result.error.clone();
    }
}

/// Counts a new report toward the gate, or resets the count on a worse one.
///
/// The model keeps one time per member for this, `done_ms`: while Deployed it is the time of
/// the last report counted (first, when the host finished), so the same report is never
/// counted twice, however often `step` runs. Reports count when they are at least
/// `gate_min_ms / (gate_reports - 1)` apart, so `gate_reports` of them span `gate_min_ms`.
fn health_gate(
    member: &mut Member,
    host: &InstanceView,
    settings: &DeploySettings,
    now_ms: Millis,
) {
    if settings.ignore_health_check {
        member.state = MemberState::Healthy;
        member.done_ms = Some(now_ms);
        return;
    }
    let Some(report_ms) = host.report_ms else {
        return;
    };
    let last = member.done_ms.unwrap_or(0);
    if report_ms <= last {
        return;
    }
    if !passes(host.health, settings.threshold) {
        member.healthy_reports = 0;
        member.done_ms = Some(report_ms);
        return;
    }
    let spacing = settings.gate_min_ms / u64::from(settings.gate_reports.max(2) - 1);
    if member.healthy_reports > 0 && report_ms < last.saturating_add(spacing as i64) {
        return;
    }
    member.healthy_reports += 1;
    member.done_ms = Some(report_ms);
    if member.healthy_reports >= settings.gate_reports {
        member.state = MemberState::Healthy;
    }
}

/// At or better than `HealthCheckSuccessThreshold`. Info is as good as Ok (an operation in
/// progress, green); Unknown, Pending and NoData never pass.
fn passes(status: Status, threshold: Status) -> bool {
    let level = |s: Status| match s {
        Status::Ok | Status::Info => Some(0),
        Status::Warning => Some(1),
        Status::Degraded => Some(2),
        Status::Severe => Some(3),
        Status::Unknown | Status::Pending | Status::NoData => None,
    };
    matches!((level(status), level(threshold)), (Some(s), Some(t)) if s <= t)
}

fn is_final(state: MemberState) -> bool {
    matches!(
        state,
        MemberState::Healthy | MemberState::Failed | MemberState::TimedOut
    )
}

fn command_running(member: &Member) -> bool {
    matches!(member.state, MemberState::Pending | MemberState::Dispatched)
}

/// Failed or timed out before the host reported success: a command failure (a member that
/// timed out in its health gate has a success outcome).
fn command_failure(member: &Member) -> bool {
    matches!(member.state, MemberState::Failed | MemberState::TimedOut)
        && !member.outcome.is_some_and(Outcome::is_success)
}

/// Collects a step's events, all stamped with the deployment and the step's time.
struct Emitter {
    environment: String,
    deployment_id: i64,
    now_ms: Millis,
    events: Vec<NewEvent>,
}

impl Emitter {
    fn new(deployment: &Deployment, now_ms: Millis) -> Self {
        Self {
            environment: deployment.environment.clone(),
            deployment_id: deployment.id,
            now_ms,
            events: Vec::new(),
        }
    }

    fn push(&mut self, instance_id: Option<&str>, severity: EventSeverity, message: &str) {
        self.events.push(NewEvent {
            environment: self.environment.clone(),
            instance_id: instance_id.map(str::to_string),
            source_id: None,
            time_ms: self.now_ms,
            severity,
            source: EVENT_SOURCE.to_string(),
            message: message.to_string(),
            deployment_id: Some(self.deployment_id),
        });
    }

    fn info(&mut self, message: &str) {
        self.push(None, EventSeverity::Info, message);
    }

    fn error(&mut self, message: &str) {
        self.push(None, EventSeverity::Error, message);
    }

    fn finish(self, deployment: Deployment, commands: Vec<(String, String)>) -> StepOutcome {
        StepOutcome {
            deployment,
            events: self.events,
            commands,
        }
    }
}

#[cfg(test)]
#[path = "allatonce_tests.rs"]
mod tests;
