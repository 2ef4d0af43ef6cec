//! Tests of the AllAtOnce machine. Every step goes through [`run`], which also checks that
//! the same step applied again to its own result changes nothing and emits nothing.

use hostmanager_protocol::{CommandResult, DesiredResult, Outcome};

use super::super::members::passes;
use super::super::{DeploySettings, FleetView, InstanceView, StepOutcome, new_deployment};
use super::*;
use crate::health::Status;

const T0: i64 = 1_000_000;

fn settings() -> DeploySettings {
    DeploySettings {
        timeout_s: 600,
        ignore_health_check: false,
        threshold: Status::Ok,
        gate_reports: 3,
        gate_min_ms: 20_000,
        margin_s: 240,
        drain_timeout_ms: 20_000,
        new_version_percent: 10,
        evaluation_ms: 5_000,
    }
}

fn deployment(kind: DeploymentKind) -> Deployment {
    new_deployment(7, "env", kind, Some("v2"), 5, ["i-1", "i-2"], T0)
}

fn host() -> InstanceView {
    InstanceView {
        applied_serial: 4,
        serving_serial: Some(4),
        serving_version: Some("v1".into()),
        result: None,
        command: None,
        health: Status::Ok,
        report_ms: Some(T0),
        enrolled: true,
        lb: None,
    }
}

fn fleet(desired_serial: u64) -> FleetView {
    FleetView {
        desired_serial,
        instances: [("i-1".to_string(), host()), ("i-2".to_string(), host())].into(),
    }
}

fn result(outcome: Outcome, finished_ms: i64) -> Option<DesiredResult> {
    Some(DesiredResult {
        serial: 5,
        deployment_id: Some(90),
        outcome,
        step: (!outcome.is_success()).then(|| "build".to_string()),
        message: (!outcome.is_success()).then(|| "exit status 1".to_string()),
        finished_ms,
    })
}

/// Both hosts report `health` at `report_ms`, with `outcome` for serial 5.
fn reported(outcome: Option<Outcome>, health: Status, report_ms: i64) -> FleetView {
    let mut view = fleet(5);
    for host in view.instances.values_mut() {
        host.result = outcome.and_then(|o| result(o, T0 + 5_000));
        host.health = health;
        host.report_ms = Some(report_ms);
    }
    view
}

fn run(d: &Deployment, view: &FleetView, s: &DeploySettings, now: i64) -> StepOutcome {
    super::super::step_idempotently(step, d, view, s, now)
}

fn messages(out: &StepOutcome) -> Vec<&str> {
    out.events.iter().map(|e| e.message.as_str()).collect()
}

fn states(d: &Deployment) -> Vec<MemberState> {
    d.members.iter().map(|m| m.state).collect()
}

/// Runs the deployment to both members Deployed (results in at T0 + 5 s, a first report at + 6 s).
fn deployed(s: &DeploySettings) -> Deployment {
    let started = run(&deployment(DeploymentKind::Deploy), &fleet(5), s, T0);
    run(
        &started.deployment,
        &reported(Some(Outcome::Succeeded), Status::Ok, T0 + 6_000),
        s,
        T0 + 6_000,
    )
    .deployment
}

#[test]
fn a_successful_deployment_in_ebs_words() {
    let s = settings();
    let start = run(&deployment(DeploymentKind::Deploy), &fleet(4), &s, T0);
    assert_eq!(
        messages(&start),
        [
            "Environment update is starting.",
            "Deploying new version to instance(s)."
        ]
    );
    assert_eq!(start.deployment.status, DeploymentStatus::InProgress);
    assert_eq!(states(&start.deployment), [MemberState::Pending; 2]);
    assert!(
        start
            .events
            .iter()
            .all(|e| e.deployment_id == Some(7) && e.environment == "env")
    );

    let dispatched = run(&start.deployment, &fleet(5), &s, T0 + 1_000);
    assert!(dispatched.events.is_empty());
    assert_eq!(states(&dispatched.deployment), [MemberState::Dispatched; 2]);
    assert_eq!(
        dispatched.deployment.members[0].dispatched_ms,
        Some(T0 + 1_000)
    );

    let done = run(
        &dispatched.deployment,
        &reported(Some(Outcome::Succeeded), Status::Ok, T0 + 6_000),
        &s,
        T0 + 6_000,
    );
    assert_eq!(
        messages(&done),
        [
            "Instance deployment completed successfully.",
            "Instance deployment completed successfully.",
            "Command execution completed on all instances. Summary: [Successful: 2, Failed: 0].",
        ]
    );
    assert_eq!(done.events[0].instance_id.as_deref(), Some("i-1"));
    assert_eq!(done.events[1].instance_id.as_deref(), Some("i-2"));
    // The report at + 6 s, after the hosts finished at + 5 s, is the first one counted.
    assert_eq!(states(&done.deployment), [MemberState::Deployed; 2]);
    assert_eq!(done.deployment.members[0].healthy_reports, 1);

    let two = run(
        &done.deployment,
        &reported(Some(Outcome::Succeeded), Status::Ok, T0 + 16_000),
        &s,
        T0 + 16_000,
    );
    assert!(two.events.is_empty());
    let three = run(
        &two.deployment,
        &reported(Some(Outcome::Succeeded), Status::Ok, T0 + 26_000),
        &s,
        T0 + 26_000,
    );
    assert_eq!(
        messages(&three),
        [
            "New application version was deployed to running EC2 instances.",
            "Environment update completed successfully.",
        ]
    );
    assert_eq!(three.deployment.status, DeploymentStatus::Succeeded);
    assert_eq!(three.deployment.finished_ms, Some(T0 + 26_000));
    assert_eq!(states(&three.deployment), [MemberState::Healthy; 2]);
}

#[test]
fn the_gate_needs_spaced_reports_and_resets_on_a_worse_one() {
    let s = settings();
    let d = deployed(&s);
    assert_eq!(d.members[0].healthy_reports, 1);
    let ok = Some(Outcome::Succeeded);
    // 2 s later: too close to count (3 reports must span 20 s).
    let close = run(&d, &reported(ok, Status::Ok, T0 + 8_000), &s, T0 + 8_000).deployment;
    assert_eq!(close.members[0].healthy_reports, 1);
    let worse = run(
        &close,
        &reported(ok, Status::Warning, T0 + 9_000),
        &s,
        T0 + 9_000,
    )
    .deployment;
    assert_eq!(worse.members[0].healthy_reports, 0);
    let mut d = worse;
    for n in 1..=3 {
        let at = T0 + 9_000 + n * 10_000;
        d = run(&d, &reported(ok, Status::Ok, at), &s, at).deployment;
    }
    assert_eq!(d.status, DeploymentStatus::Succeeded);
}

#[test]
fn the_threshold_lowers_the_gate() {
    let s = DeploySettings {
        threshold: Status::Warning,
        gate_reports: 1,
        ..settings()
    };
    let d = deployed(&s);
    // The first report counted passes a one-report gate at Warning.
    assert_eq!(d.status, DeploymentStatus::Succeeded);
    let strict = DeploySettings {
        gate_reports: 1,
        ..settings()
    };
    let started = run(&deployment(DeploymentKind::Deploy), &fleet(5), &strict, T0);
    let d = run(
        &started.deployment,
        &reported(Some(Outcome::Succeeded), Status::Warning, T0 + 6_000),
        &strict,
        T0 + 6_000,
    );
    assert_eq!(states(&d.deployment), [MemberState::Deployed; 2]);
    for never in [Status::Unknown, Status::NoData, Status::Pending] {
        assert!(!passes(never, Status::Severe));
    }
    assert!(passes(Status::Info, Status::Ok));
}

#[test]
fn ignore_health_check_skips_the_gate() {
    let s = DeploySettings {
        ignore_health_check: true,
        ..settings()
    };
    let started = run(&deployment(DeploymentKind::Deploy), &fleet(5), &s, T0);
    let out = run(
        &started.deployment,
        &reported(Some(Outcome::Succeeded), Status::Severe, T0 + 6_000),
        &s,
        T0 + 6_000,
    );
    assert_eq!(out.deployment.status, DeploymentStatus::Succeeded);
    assert_eq!(out.events.len(), 5, "{:?}", messages(&out));
}

#[test]
fn a_command_failure_aborts_once_the_commands_are_in() {
    let s = settings();
    let started = run(&deployment(DeploymentKind::Deploy), &fleet(5), &s, T0);
    let mut view = fleet(5);
    if let Some(h) = view.instances.get_mut("i-1") {
        h.result = result(Outcome::Failed, T0 + 3_000);
    }
    let one = run(&started.deployment, &view, &s, T0 + 3_000);
    assert_eq!(
        messages(&one),
        ["Instance deployment failed. Step build: exit status 1"]
    );
    assert_eq!(one.events[0].severity, EventSeverity::Error);
    assert_eq!(one.deployment.status, DeploymentStatus::InProgress);
    let m = &one.deployment.members[0];
    assert_eq!(
        (m.state, m.step.as_deref(), m.message.as_deref()),
        (MemberState::Failed, Some("build"), Some("exit status 1"))
    );
    assert_eq!(m.outcome, Some(Outcome::Failed));

    if let Some(h) = view.instances.get_mut("i-2") {
        h.result = result(Outcome::Succeeded, T0 + 4_000);
    }
    let end = run(&one.deployment, &view, &s, T0 + 4_000);
    assert_eq!(
        messages(&end),
        [
            "Instance deployment completed successfully.",
            "Command execution completed on all instances. Summary: [Successful: 1, Failed: 1].",
            "Unsuccessful command execution on instance id(s) 'i-1'. Aborting the operation.",
            "Failed to deploy application.",
            ABORTED_NOTE,
        ]
    );
    assert_eq!(end.deployment.status, DeploymentStatus::Failed);
    assert_eq!(
        end.deployment.message.as_deref(),
        Some("Unsuccessful command execution on instance id(s) 'i-1'. Aborting the operation.")
    );
    // Nothing more happens to a finished deployment.
    let after = step(
        &end.deployment,
        &reported(Some(Outcome::Succeeded), Status::Ok, T0 + 60_000),
        &s,
        T0 + 60_000,
    );
    assert_eq!(after.deployment, end.deployment);
    assert!(after.events.is_empty());
}

#[test]
fn a_health_failure_aborts_at_the_deadline() {
    let s = settings();
    let d = deployed(&s);
    let deadline = T0 + 840_000;
    let bad = reported(Some(Outcome::Succeeded), Status::Severe, deadline);
    let before = run(&d, &bad, &s, deadline);
    assert_eq!(
        before.deployment.status,
        DeploymentStatus::InProgress,
        "not before the deadline"
    );
    let end = run(&before.deployment, &bad, &s, deadline + 1);
    assert_eq!(
        messages(&end),
        [
            "Instance id(s) 'i-1,i-2' did not pass health check after command execution. Aborting the operation.",
            "Failed to deploy application.",
            ABORTED_NOTE,
        ]
    );
    assert_eq!(states(&end.deployment), [MemberState::TimedOut; 2]);
    assert_eq!(end.deployment.status, DeploymentStatus::Failed);
}

#[test]
fn silent_hosts_time_out_as_command_failures() {
    let s = settings();
    let started = run(&deployment(DeploymentKind::Deploy), &fleet(5), &s, T0);
    let end = run(&started.deployment, &fleet(5), &s, T0 + 840_001);
    assert_eq!(
        messages(&end)[..2],
        [
            "Command execution completed on all instances. Summary: [Successful: 0, Failed: 2].",
            "Unsuccessful command execution on instance id(s) 'i-1,i-2'. Aborting the operation.",
        ]
    );
    assert!(
        end.deployment.members[0]
            .message
            .as_deref()
            .unwrap_or("")
            .contains("600 seconds, plus 240")
    );
}

#[test]
fn a_host_serving_the_serial_counts_as_deployed() {
    let s = settings();
    let started = run(&deployment(DeploymentKind::Deploy), &fleet(5), &s, T0);
    let mut view = fleet(5);
    for h in view.instances.values_mut() {
        h.serving_serial = Some(5);
        h.report_ms = Some(T0 + 2_000);
    }
    let out = run(&started.deployment, &view, &s, T0 + 2_000);
    assert_eq!(states(&out.deployment), [MemberState::Deployed; 2]);
}

#[test]
fn a_member_that_leaves_is_failed_with_a_reason() {
    let s = settings();
    let started = run(&deployment(DeploymentKind::Deploy), &fleet(5), &s, T0);
    let mut view = reported(Some(Outcome::Succeeded), Status::Ok, T0 + 6_000);
    if let Some(h) = view.instances.get_mut("i-2") {
        h.enrolled = false;
    }
    let out = run(&started.deployment, &view, &s, T0 + 6_000);
    assert_eq!(
        out.deployment.members[1].message.as_deref(),
        Some("Instance i-2 left the environment (revoked) during the deployment.")
    );
    assert!(messages(&out).contains(
        &"Unsuccessful command execution on instance id(s) 'i-2'. Aborting the operation."
    ));
    assert_eq!(out.deployment.status, DeploymentStatus::Failed);
}

#[test]
fn a_restarted_controller_continues_without_re_emitting() {
    let s = settings();
    let d = deployed(&s);
    // The store round trip: what a new controller (or another replica) loads.
    let stored = serde_json::to_string(&d).expect("the test sets it up");
    let reloaded: Deployment = serde_json::from_str(&stored).expect("the test sets it up");
    assert_eq!(reloaded, d);
    // The last report it sees is the one already counted: nothing happens.
    let view = reported(Some(Outcome::Succeeded), Status::Ok, T0 + 6_000);
    let resumed = run(&reloaded, &view, &s, T0 + 100_000);
    assert!(resumed.events.is_empty());
    assert_eq!(resumed.deployment, d);
    let mut d = resumed.deployment;
    let mut all = Vec::new();
    for at in [T0 + 110_000, T0 + 120_000] {
        let out = run(
            &d,
            &reported(Some(Outcome::Succeeded), Status::Ok, at),
            &s,
            at,
        );
        all.extend(out.events.iter().map(|e| e.message.clone()));
        d = out.deployment;
    }
    assert_eq!(d.status, DeploymentStatus::Succeeded);
    assert_eq!(
        all,
        [
            "New application version was deployed to running EC2 instances.",
            "Environment update completed successfully.",
        ]
    );
}

#[test]
fn restarts_run_on_the_same_machine() {
    let s = settings();
    let start = run(&deployment(DeploymentKind::Restart), &fleet(0), &s, T0);
    assert_eq!(messages(&start), ["restartAppServer is starting."]);
    assert_eq!(
        start.commands,
        [
            ("i-1".to_string(), "restart-d7-i-1".to_string()),
            ("i-2".to_string(), "restart-d7-i-2".to_string()),
        ]
    );
    assert_eq!(
        start.deployment.members[0].command_id.as_deref(),
        Some("restart-d7-i-1")
    );
    // Asked for again until the result is in (the queue dedupes by id).
    let again = step(&start.deployment, &fleet(0), &s, T0 + 1_000);
    assert_eq!(again.commands, start.commands);

    let mut view = fleet(0);
    for (id, h) in view.instances.iter_mut() {
        h.command = Some(CommandResult {
            id: format!("restart-d7-{id}"),
            accepted: true,
            deployment_id: Some(3),
            error: None,
            outcome: (id == "i-1").then_some(Outcome::Succeeded),
        });
    }
    let one = run(&start.deployment, &view, &s, T0 + 2_000);
    assert_eq!(
        states(&one.deployment),
        [MemberState::Healthy, MemberState::Dispatched]
    );
    assert_eq!(
        one.commands,
        [("i-2".to_string(), "restart-d7-i-2".to_string())]
    );
    if let Some(h) = view.instances.get_mut("i-2") {
        h.command = Some(CommandResult {
            accepted: false,
            error: Some("busy".into()),
            outcome: None,
            ..h.command.clone().expect("the test sets it up")
        });
    }
    let end = run(&one.deployment, &view, &s, T0 + 3_000);
    assert_eq!(
        messages(&end),
        [
            "Command execution completed on all instances. Summary: [Successful: 1, Failed: 1].",
            "Unsuccessful command execution on instance id(s) 'i-2'. Aborting the operation.",
        ]
    );
    assert_eq!(end.deployment.members[1].message.as_deref(), Some("busy"));
    assert_eq!(end.deployment.status, DeploymentStatus::Failed);
}

#[test]
fn a_successful_restart() {
    let s = settings();
    let start = run(&deployment(DeploymentKind::Restart), &fleet(0), &s, T0);
    let mut view = fleet(0);
    for (id, h) in view.instances.iter_mut() {
        h.command = Some(CommandResult {
            id: format!("restart-d7-{id}"),
            accepted: true,
            deployment_id: None,
            error: None,
            outcome: Some(Outcome::Succeeded),
        });
    }
    let end = run(&start.deployment, &view, &s, T0 + 2_000);
    assert_eq!(
        messages(&end),
        [
            "Command execution completed on all instances. Summary: [Successful: 2, Failed: 0].",
            "restartAppServer completed successfully.",
        ]
    );
    assert!(end.commands.is_empty());
    assert_eq!(end.deployment.status, DeploymentStatus::Succeeded);
}

#[test]
fn abort_stops_scheduling_once() {
    let s = settings();
    let started = run(&deployment(DeploymentKind::Deploy), &fleet(5), &s, T0);
    let out = abort(
        &started.deployment,
        T0 + 5_000,
        "Requested by the operator.",
    );
    assert_eq!(out.deployment.status, DeploymentStatus::Aborted);
    assert_eq!(
        out.deployment.message.as_deref(),
        Some("Requested by the operator.")
    );
    assert_eq!(
        messages(&out),
        [
            "Environment update aborted: Requested by the operator.",
            ABORTED_NOTE
        ]
    );
    // In-flight members are left to finish on their hosts.
    assert_eq!(states(&out.deployment), [MemberState::Dispatched; 2]);
    let twice = abort(&out.deployment, T0 + 6_000, "again");
    assert!(twice.events.is_empty());
    assert_eq!(twice.deployment, out.deployment);
    let stepped = step(&out.deployment, &fleet(5), &s, T0 + 7_000);
    assert!(stepped.events.is_empty());
    // Before anything was dispatched: members are failed, no version note.
    let early = abort(&deployment(DeploymentKind::Deploy), T0, "stop");
    assert_eq!(states(&early.deployment), [MemberState::Failed; 2]);
    assert_eq!(early.events.len(), 1);
}

#[test]
fn an_empty_deployment_succeeds() {
    let d = new_deployment(1, "env", DeploymentKind::Deploy, Some("v1"), 1, [], T0);
    let out = run(&d, &FleetView::default(), &settings(), T0);
    assert_eq!(out.deployment.status, DeploymentStatus::Succeeded);
}
