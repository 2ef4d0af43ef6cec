//! Tests of one instance's effective status.

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
                drain_started_ms: None,
                role: Default::default(),
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
    let h =
        effective(&instance("i-1", Some(NOW - 31_000), "Ok"), &ctx()).expect("the test sets it up");
    assert_eq!(h.status, Status::NoData);
    assert_eq!(h.causes, ["No data. Last seen 31 seconds ago."]);
    let h = effective(&instance("i-1", Some(NOW - 37 * 60_000), "Ok"), &ctx())
        .expect("the test sets it up");
    assert_eq!(h.causes, ["No data. Last seen 37 minutes ago."]);
    assert_eq!(ago(119_999), "119 seconds ago");
    assert_eq!(ago(120_000), "2 minutes ago");
    // Exactly three intervals is not yet silent.
    let h =
        effective(&instance("i-1", Some(NOW - 30_000), "Ok"), &ctx()).expect("the test sets it up");
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

#[test]
fn a_finished_batch_of_a_rolling_deployment_is_not_on_the_wrong_version() {
    let mut d = deployment(&[("i-1", MemberState::Healthy), ("i-2", MemberState::Pending)]);
    d.policy = "Rolling".into();
    let c = InstanceContext {
        active: Some(&d),
        active_deadline_ms: NOW + 1,
        ..ctx()
    };
    let done = effective(&serving(instance("i-1", Some(NOW), "Ok"), "v3", 3), &c)
        .expect("the test sets it up");
    assert_eq!(
        (done.status, done.causes.len()),
        (Status::Ok, 0),
        "{done:?}"
    );
    // A batch not reached yet serves the expected version, and is not deploying either.
    let waiting = effective(&serving(instance("i-2", Some(NOW), "Ok"), "v1", 1), &c)
        .expect("the test sets it up");
    assert_eq!(
        (waiting.status, waiting.basis),
        (Status::Ok, Basis::Reported),
        "{waiting:?}"
    );
    // Once the deployment is over (failed), v3 is the wrong version again.
    let after = effective(&serving(instance("i-1", Some(NOW), "Ok"), "v3", 3), &ctx())
        .expect("the test sets it up");
    assert_eq!(after.status, Status::Degraded);
}
