//! What every policy does with one member: read its host's outcome or command result, and
//! count its health gate. Shared by [`super::allatonce`] and [`super::rolling`].

use hostmanager_protocol::Outcome;

use super::events::Emitter;
use super::{DeploySettings, FleetView, InstanceView};
use crate::health::Status;
use crate::model::{EventSeverity, Member, MemberRole, MemberState, Millis};

/// The member's host, or `None` when it left the environment (revoked or gone): the member
/// then fails, saying so, unless it was done already.
pub(super) fn enrolled_host<'a>(
    member: &mut Member,
    view: &'a FleetView,
    now_ms: Millis,
) -> Option<&'a InstanceView> {
    let host = view
        .instances
        .get(&member.instance_id)
        .filter(|v| v.enrolled);
    if host.is_none() && !is_final(member.state) {
        member.state = MemberState::Failed;
        member.message = Some(format!(
            "Instance {} left the environment (revoked) during the deployment.",
            member.instance_id
        ));
        member.done_ms = Some(now_ms);
    }
    host
}

/// Past the deadline: a member not done times out, saying whether its command or its gate
/// ran out of time.
pub(super) fn time_out(member: &mut Member, settings: &DeploySettings, now_ms: Millis) {
    if is_final(member.state) {
        return;
    }
    member.message = Some(if member.state == MemberState::Deployed {
        "The instance did not pass the health check before the command timeout.".into()
    } else {
        format!(
            "The command did not complete within the command timeout ({} seconds, plus {}).",
            settings.timeout_s, settings.margin_s
        )
    });
    member.state = MemberState::TimedOut;
    member.done_ms = Some(now_ms);
}

pub(super) fn deploy_result(
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

/// A restart's result: on success the member becomes `succeeded` (Healthy when it has no
/// gate, Deployed when a gate follows).
pub(super) fn restart_result(
    member: &mut Member,
    host: &InstanceView,
    now_ms: Millis,
    succeeded: MemberState,
) {
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
        member.state = succeeded;
        member.healthy_reports = 0;
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
pub(super) fn health_gate(member: &mut Member, host: &InstanceView, settings: &DeploySettings) {
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
    // A launched host takes no traffic before its checks pass: a report counts only once
    // they do (and its first one puts it in rotation, see `lb::render::answer`).
    if member.role == MemberRole::Launch && host.lb.as_ref().is_some_and(|lb| !lb.up) {
        return;
    }
    let spacing = settings.gate_min_ms / u64::from(settings.gate_reports.max(2) - 1);
    if member.healthy_reports > 0 && report_ms < last.saturating_add(spacing as i64) {
        return;
    }
    member.healthy_reports += 1;
    member.done_ms = Some(report_ms);
    // Behind a load balancer the host passes only once it takes traffic again (EB: "waiting
    // for them to be healthy" after registering them).
    let in_rotation = host.lb.as_ref().is_none_or(|lb| lb.in_rotation);
    if member.healthy_reports >= settings.gate_reports && in_rotation {
        member.state = MemberState::Healthy;
    }
}

/// At or better than `HealthCheckSuccessThreshold`. Info is as good as Ok (an operation in
/// progress, green); Unknown, Pending and NoData never pass.
pub(super) fn passes(status: Status, threshold: Status) -> bool {
    let level = |s: Status| match s {
        Status::Ok | Status::Info => Some(0),
        Status::Warning => Some(1),
        Status::Degraded => Some(2),
        Status::Severe => Some(3),
        Status::Unknown | Status::Pending | Status::NoData => None,
    };
    matches!((level(status), level(threshold)), (Some(s), Some(t)) if s <= t)
}

pub(crate) fn is_final(state: MemberState) -> bool {
    matches!(
        state,
        MemberState::Healthy | MemberState::Failed | MemberState::TimedOut | MemberState::Released
    )
}

pub(super) fn command_running(member: &Member) -> bool {
    matches!(
        member.state,
        MemberState::Pending
            | MemberState::Draining
            | MemberState::Dispatched
            | MemberState::Launching
    )
}

/// Failed or timed out before the host reported success: a command failure (a member that
/// timed out in its health gate has a success outcome).
pub(super) fn command_failure(member: &Member) -> bool {
    matches!(member.state, MemberState::Failed | MemberState::TimedOut)
        && !member.outcome.is_some_and(Outcome::is_success)
}
