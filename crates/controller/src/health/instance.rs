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
        && matches!(
            member.state,
            MemberState::Pending | MemberState::Dispatched | MemberState::Deployed
        )
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
                DeploymentKind::Deploy => {
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

    if let (Some(expected), Some(release)) = (ctx.expected_version, &instance.status.release)
        && release.version_label != expected
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
mod tests {
    use super::super::fixtures::*;
    use super::*;
    use crate::model::{DeploymentStatus, Member};

    const NOW: i64 = 1_000_000;
    const NO_SERIALS: &BTreeMap<u64, i64> = &BTreeMap::new();

    fn ctx<'a>() -> InstanceContext<'a> {
        InstanceContext {
            now_ms: NOW,
            interval_ms: 10_000,
            missed_reports: 3,
            grace_until_ms: 0,
            expected_version: Some("v1"),
            expected_deployment: Some(1),
            active: None,
            active_deadline_ms: 0,
            deployments_by_serial: NO_SERIALS,
        }
    }

    fn deployment(members: &[(&str, MemberState)]) -> Deployment {
        Deployment {
            id: 3,
            environment: "env".into(),
            kind: DeploymentKind::Deploy,
            version_label: Some("v3".into()),
            serial: 3,
            policy: "AllAtOnce".into(),
            status: DeploymentStatus::InProgress,
            created_ms: NOW - 7_000,
            finished_ms: None,
            message: None,
            members: members
                .iter()
                .map(|(id, state)| Member {
                    instance_id: id.to_string(),
                    batch: 0,
                    state: *state,
                    outcome: None,
                    step: None,
                    message: None,
                    dispatched_ms: Some(NOW - 3_000),
                    done_ms: None,
                    healthy_reports: 0,
                    command_id: None,
                })
                .collect(),
        }
    }

    #[test]
    fn revoked_instances_are_excluded() {
        let mut i = instance("i-1", Some(NOW), "Ok");
        i.revoked_ms = Some(NOW);
        assert_eq!(effective(&i, &ctx()), None);
    }

    #[test]
    fn silent_instances_are_nodata_in_seconds_then_minutes() {
        let h = effective(&instance("i-1", Some(NOW - 31_000), "Ok"), &ctx())
            .expect("the test sets it up");
        assert_eq!(h.status, Status::NoData);
        assert_eq!(h.causes, ["No data. Last seen 31 seconds ago."]);
        let h = effective(&instance("i-1", Some(NOW - 37 * 60_000), "Ok"), &ctx())
            .expect("the test sets it up");
        assert_eq!(h.causes, ["No data. Last seen 37 minutes ago."]);
        assert_eq!(ago(119_999), "119 seconds ago");
        assert_eq!(ago(120_000), "2 minutes ago");
        // Exactly three intervals is not yet silent.
        let h = effective(&instance("i-1", Some(NOW - 30_000), "Ok"), &ctx())
            .expect("the test sets it up");
        assert_eq!(h.status, Status::Ok);
    }

    #[test]
    fn no_nodata_during_the_failover_grace() {
        let c = InstanceContext {
            grace_until_ms: NOW + 1,
            ..ctx()
        };
        let i = with_cause(
            instance("i-1", Some(NOW - 600_000), "Warning"),
            "Warning",
            "slow",
        );
        let h = effective(&i, &c).expect("the test sets it up");
        assert_eq!(
            (h.status, h.causes),
            (Status::Warning, vec!["slow".to_string()])
        );
    }

    #[test]
    fn never_reported_is_pending_initialization() {
        let mut i = instance("i-1", None, "Unknown");
        i.enrolled_ms = NOW - 12_000;
        let h = effective(&i, &ctx()).expect("the test sets it up");
        assert_eq!(h.status, Status::Pending);
        assert_eq!(
            h.causes,
            ["Performing initialization (running for 12 seconds)."]
        );
    }

    #[test]
    fn deploying_members_are_info_under_the_deadline() {
        let d = deployment(&[
            ("i-1", MemberState::Dispatched),
            ("i-2", MemberState::Healthy),
        ]);
        let c = InstanceContext {
            active: Some(&d),
            active_deadline_ms: NOW,
            ..ctx()
        };
        let failing = serving(instance("i-1", Some(NOW), "Severe"), "v0", 0);
        let h = effective(&failing, &c).expect("the test sets it up");
        assert_eq!(h.status, Status::Info);
        assert_eq!(
            h.causes,
            ["Performing application deployment (running for 3 seconds)."]
        );
        // The agent's own Info cause is kept.
        let told = with_cause(
            instance("i-1", Some(NOW), "Info"),
            "Info",
            "Running hook postdeploy.",
        );
        assert_eq!(
            effective(&told, &c).expect("the test sets it up").causes,
            ["Running hook postdeploy."]
        );
        // A member done with its part is judged as usual.
        let done = instance("i-2", Some(NOW), "Warning");
        assert_eq!(
            effective(&done, &c).expect("the test sets it up").status,
            Status::Warning
        );
        // Past the deadline, failing checks count again (and so does the version).
        let late = InstanceContext {
            active_deadline_ms: NOW - 1,
            ..c
        };
        let h = effective(&failing, &late).expect("the test sets it up");
        assert_eq!((h.status, h.basis), (Status::Severe, Basis::WrongVersion));
    }

    #[test]
    fn wrong_version_is_at_least_degraded_with_ebs_text() {
        let serials = BTreeMap::from([(2, 2)]);
        let c = InstanceContext {
            deployments_by_serial: &serials,
            ..ctx()
        };
        let h = effective(&serving(instance("i-1", Some(NOW), "Ok"), "v2", 2), &c)
            .expect("the test sets it up");
        assert_eq!(h.status, Status::Degraded);
        assert_eq!(h.basis, Basis::WrongVersion);
        assert_eq!(
            h.causes,
            [
                "Incorrect application version \"v2\" (deployment 2). Expected version \"v1\" (deployment 1)."
            ]
        );
        let severe = with_cause(
            instance("i-1", Some(NOW), "Severe"),
            "Severe",
            "Process web is not running.",
        );
        let h = effective(&serving(severe, "v2", 2), &c).expect("the test sets it up");
        assert_eq!(h.status, Status::Severe);
        assert_eq!(h.causes[0], "Process web is not running.");
        let right = serving(instance("i-1", Some(NOW), "Ok"), "v1", 1);
        assert_eq!(
            effective(&right, &c).expect("the test sets it up").status,
            Status::Ok
        );
    }

    #[test]
    fn otherwise_the_agents_status_with_causes_worst_first() {
        let i = with_cause(
            with_cause(instance("i-1", Some(NOW), "Degraded"), "Warning", "w"),
            "Degraded",
            "d",
        );
        let h = effective(&i, &ctx()).expect("the test sets it up");
        assert_eq!((h.status, h.basis), (Status::Degraded, Basis::Reported));
        assert_eq!(h.causes, ["d", "w"]);
        let odd = instance("i-1", Some(NOW), "Suspended");
        assert_eq!(
            effective(&odd, &ctx()).expect("the test sets it up").status,
            Status::Unknown
        );
    }
}
