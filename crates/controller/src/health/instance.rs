//! One instance's effective status, from its last report and what the controller knows about
//! it (`docs/controller.md` ("Health")). Texts are Elastic Beanstalk's.

use std::collections::BTreeMap;

use hostmanager_protocol::HostCause;

use super::Status;
use crate::model::{Deployment, DeploymentKind, Instance, MemberState, Millis};

/// Why an instance has its effective status: the roll-up counts some reasons separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// The agent's published status.
    Reported,
    /// No report for too long.
    NoData,
    /// Enrolled, never reported.
    Initializing,
    /// A member of the running deployment, under its deadline.
    Deploying,
    /// Serving another version than the expected one.
    WrongVersion,
}

/// An instance's effective health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceHealth {
    pub instance_id: String,
    pub status: Status,
    /// Worst first.
    pub causes: Vec<String>,
    pub basis: Basis,
}

/// What the effective status depends on besides the instance.
#[derive(Debug, Clone, Copy)]
pub struct InstanceContext<'a> {
    pub now_ms: Millis,
    /// The agents' report interval.
    pub interval_ms: u64,
    /// Reports an instance may miss before it is NoData (EB: three).
    pub missed_reports: u32,
    /// Failover grace: before this time no instance becomes NoData.
    pub grace_until_ms: Millis,
    pub expected_version: Option<&'a str>,
    pub expected_deployment: Option<i64>,
    /// The running deployment, if any.
    pub active: Option<&'a Deployment>,
    /// The deployment's deadline (`Timeout` + 240 s from its start).
    pub active_deadline_ms: Millis,
    /// Controller deployment ids by desired-state serial, to name the deployment an instance's
    /// release came from (EB's "(deployment 2)").
    pub deployments_by_serial: &'a BTreeMap<u64, i64>,
}

/// The instance's effective status, or `None` for a revoked instance (not counted at all).
pub fn effective(instance: &Instance, ctx: &InstanceContext<'_>) -> Option<InstanceHealth> {
    if instance.revoked_ms.is_some() {
        return None;
    }
    let health = |status, causes, basis| {
        Some(InstanceHealth {
            instance_id: instance.id.clone(),
            status,
            causes,
            basis,
        })
    };
    let Some(last_seen_ms) = instance.last_seen_ms else {
        let secs = seconds_between(instance.enrolled_ms, ctx.now_ms);
        return health(
            Status::Pending,
            vec![format!(
                "Performing initialization (running for {secs} seconds)."
            )],
            Basis::Initializing,
        );
    };
    // Past the failover grace only: a controller that just started has not heard from hosts
    // that are fine, and must not call them NoData (Nomad's lesson).
    let silent_ms = ctx.now_ms.saturating_sub(last_seen_ms);
    if silent_ms > (u64::from(ctx.missed_reports) * ctx.interval_ms) as i64
        && ctx.now_ms >= ctx.grace_until_ms
    {
        return health(
            Status::NoData,
            vec![format!("No data. Last seen {}.", ago(silent_ms))],
            Basis::NoData,
        );
    }
    let reported = Status::parse_lenient(&instance.status.health.status);
    let mut causes = sorted_causes(&instance.status.health.causes);

    if let Some(deployment) = ctx.active
        && ctx.now_ms <= ctx.active_deadline_ms
        && let Some(member) = deployment
            .members
            .iter()
            .find(|member| member.instance_id == instance.id)
        && (matches!(
            member.state,
            MemberState::Draining | MemberState::Dispatched | MemberState::Deployed
        ) || (member.state == MemberState::Pending && !crate::deploy::is_batched(deployment)))
    {
        // EB: "Before the command times out, Elastic Beanstalk doesn't lower an environment's
        // health status when health checks fail" — the member shows as Info.
        if reported != Status::Info || causes.is_empty() {
            let started = instance
                .status
                .deployment
                .as_ref()
                .map(|op| op.started_ms)
                .filter(|ms| *ms > 0)
                .or(member.dispatched_ms)
                .unwrap_or(deployment.created_ms);
            let secs = seconds_between(started, ctx.now_ms);
            causes = vec![match deployment.kind {
                DeploymentKind::Deploy | DeploymentKind::Rollback => {
                    format!("Performing application deployment (running for {secs} seconds).")
                }
                // Ours: EB's restart has no instance text we found.
                DeploymentKind::Restart => {
                    format!("Restarting application server (running for {secs} seconds).")
                }
            }];
        }
        return health(Status::Info, causes, Basis::Deploying);
    }

    // A batch that finished during a rolling deployment serves the version being deployed:
    // that is not the wrong version.
    let deploying_to_it = |label: &str| {
        ctx.active.is_some_and(|d| {
            d.kind.is_deploy()
                && d.version_label.as_deref() == Some(label)
                && crate::deploy::targeted_members(d).any(|m| m.instance_id == instance.id)
        })
    };
    if let (Some(expected), Some(release)) = (ctx.expected_version, &instance.status.release)
        && release.version_label != expected
        && !deploying_to_it(&release.version_label)
    {
        let serving_deployment = release
            .serial
            .and_then(|serial| ctx.deployments_by_serial.get(&serial).copied())
            .unwrap_or(release.deployment_id as i64);
        let mut all = vec![format!(
            "Incorrect application version \"{}\" (deployment {serving_deployment}). Expected version \"{expected}\"{}.",
            release.version_label,
            deployment_suffix(ctx.expected_deployment),
        )];
        // The agent's own impairments stay visible, after the version cause unless worse.
        let status = reported.worst(Status::Degraded);
        if reported.is_worse_than(Status::Degraded) {
            all.splice(0..0, causes);
        } else {
            all.extend(causes);
        }
        return health(status, all, Basis::WrongVersion);
    }
    health(reported, causes, Basis::Reported)
}

/// EB's `(deployment 1)` after an expected version, empty when the id is unknown.
pub(crate) fn deployment_suffix(deployment: Option<i64>) -> String {
    deployment
        .map(|id| format!(" (deployment {id})"))
        .unwrap_or_default()
}

/// The agent's causes, worst first (stable among equals).
fn sorted_causes(causes: &[HostCause]) -> Vec<String> {
    let mut ranked: Vec<_> = causes
        .iter()
        .map(|cause| (Status::parse_lenient(&cause.status).rank(), &cause.message))
        .collect();
    ranked.sort_by_key(|(rank, _)| std::cmp::Reverse(*rank));
    ranked.into_iter().map(|(_, m)| m.clone()).collect()
}

fn seconds_between(from_ms: Millis, to_ms: Millis) -> i64 {
    to_ms.saturating_sub(from_ms).max(0) / 1000
}

/// `N seconds ago`, or `N minutes ago` from two minutes on, like EB's
/// "No data. Last seen 37 minutes ago."
pub fn ago(elapsed_ms: Millis) -> String {
    let secs = elapsed_ms.max(0) / 1000;
    if secs >= 120 {
        format!("{} minutes ago", secs / 60)
    } else {
        format!("{secs} seconds ago")
    }
}

#[cfg(test)]
#[path = "instance_tests.rs"]
mod tests;
