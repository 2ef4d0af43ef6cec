//! Tests of the Rolling machine. Every step goes through [`run`], which also checks that the
//! same step applied again to its own result changes nothing and emits nothing.

use hostmanager_protocol::{DesiredResult, Outcome};

use super::super::{
    DeploySettings, FleetView, InstanceView, LbServer, StepOutcome, new_deployment, with_batches,
};
use super::*;
use crate::health::Status;

const T0: i64 = 1_000_000;
const IDS: [&str; 4] = ["i-1", "i-2", "i-3", "i-4"];

fn settings() -> DeploySettings {
    DeploySettings {
        timeout_s: 60,
        ignore_health_check: false,
        threshold: Status::Ok,
        gate_reports: 2,
        gate_min_ms: 1_000,
        margin_s: 0,
        drain_timeout_ms: 20_000,
        new_version_percent: 10,
        evaluation_ms: 5_000,
    }
}

/// Four hosts in batches of two, serving v1 (serial 4); the deployment sends v2 as serial 5.
fn deployment() -> Deployment {
    with_batches(
        new_deployment(7, "env", DeploymentKind::Deploy, Some("v2"), 5, IDS, T0),
        "Rolling",
        2,
    )
}

fn host(in_rotation: bool) -> InstanceView {
    InstanceView {
        applied_serial: 4,
        serving_serial: Some(4),
        serving_version: Some("v1".into()),
        result: None,
        command: None,
        health: Status::Ok,
        report_ms: Some(T0),
        enrolled: true,
        lb: Some(LbServer {
            in_rotation,
            up: in_rotation,
            sessions: 0,
        }),
    }
}

fn fleet() -> FleetView {
    FleetView {
        desired_serial: 4,
        instances: IDS.iter().map(|id| (id.to_string(), host(true))).collect(),
    }
}

fn result(outcome: Outcome, finished_ms: i64) -> Option<DesiredResult> {
    Some(DesiredResult {
        serial: 5,
        deployment_id: Some(90),
        outcome,
        step: (!outcome.is_success()).then(|| "hook:prebuild/01.sh".to_string()),
        message: (!outcome.is_success()).then(|| "exit status 1: boom".to_string()),
        finished_ms,
    })
}

fn run(d: &Deployment, view: &FleetView, s: &DeploySettings, now: i64) -> StepOutcome {
    super::super::step_idempotently(step, d, view, s, now)
}

fn states(d: &Deployment) -> Vec<MemberState> {
    d.members.iter().map(|m| m.state).collect()
}

fn messages(out: &StepOutcome) -> Vec<String> {
    out.events.iter().map(|e| e.message.clone()).collect()
}

/// The batch's hosts: drained by the load balancer, then deployed with `outcome` at `now`,
/// reporting Ok.
fn deployed(view: &mut FleetView, ids: &[&str], outcome: Outcome, now: i64) {
    for id in ids {
        let host = view.instances.get_mut(*id).expect("member");
        host.result = result(outcome, now);
        host.report_ms = Some(now);
    }
}

fn reports(view: &mut FleetView, ids: &[&str], health: Status, at: i64) {
    for id in ids {
        let host = view.instances.get_mut(*id).expect("member");
        host.health = health;
        host.report_ms = Some(at);
    }
}

fn drained(view: &mut FleetView, ids: &[&str], drained: bool) {
    for id in ids {
        view.instances.get_mut(*id).expect("member").lb = Some(LbServer {
            in_rotation: !drained,
            up: !drained,
            sessions: 0,
        });
    }
}

#[test]
fn batches_drain_deploy_and_pass_their_gate_one_after_another_in_ebs_words() {
    use MemberState::*;
    let s = settings();
    let mut view = fleet();
    let out = run(&deployment(), &view, &s, T0);
    assert_eq!(
        states(&out.deployment),
        [Draining, Draining, Pending, Pending]
    );
    assert_eq!(
        messages(&out),
        [
            "Environment update is starting.",
            "Deploying new version to instance(s).",
            "Batch 1: Starting application deployment on instance(s) [i-1,i-2].",
        ]
    );
    // Still in rotation: nothing is sent before the load balancer drained the batch.
    let out = run(&out.deployment, &view, &s, T0 + 100);
    assert_eq!(
        states(&out.deployment),
        [Draining, Draining, Pending, Pending]
    );
    drained(&mut view, &["i-1", "i-2"], true);
    let out = run(&out.deployment, &view, &s, T0 + 200);
    assert_eq!(
        states(&out.deployment),
        [Dispatched, Dispatched, Pending, Pending]
    );
    assert_eq!(
        messages(&out),
        ["Batch 1: Starting application deployment command execution."]
    );
    deployed(&mut view, &["i-1", "i-2"], Outcome::Succeeded, T0 + 1_000);
    let out = run(&out.deployment, &view, &s, T0 + 1_000);
    assert_eq!(
        states(&out.deployment),
        [Deployed, Deployed, Pending, Pending]
    );
    assert_eq!(
        messages(&out),
        [
            "Instance deployment completed successfully.",
            "Instance deployment completed successfully.",
            "Batch 1: Completed application deployment command execution.",
            "Command execution completed on 2 of 4 instances in environment.",
            "Batch 1: Registering instance(s) with the load balancer and waiting for them to be healthy.",
        ]
    );
    // Two good reports a gate apart, but the hosts are not back in rotation yet.
    reports(&mut view, &["i-1", "i-2"], Status::Ok, T0 + 2_100);
    let out = run(&out.deployment, &view, &s, T0 + 2_100);
    assert_eq!(
        states(&out.deployment),
        [Deployed, Deployed, Pending, Pending]
    );
    drained(&mut view, &["i-1", "i-2"], false);
    reports(&mut view, &["i-1", "i-2"], Status::Ok, T0 + 3_200);
    let out = run(&out.deployment, &view, &s, T0 + 3_200);
    assert_eq!(
        states(&out.deployment),
        [Healthy, Healthy, Draining, Draining]
    );
    assert_eq!(
        messages(&out),
        [
            "Batch 1: Completed application deployment.",
            "Batch 2: Starting application deployment on instance(s) [i-3,i-4].",
        ]
    );
    // Batch 2: the drain times out (sessions stay open), then it deploys and passes.
    view.instances.get_mut("i-3").expect("member").lb = Some(LbServer {
        in_rotation: false,
        up: false,
        sessions: 4,
    });
    let out = run(&out.deployment, &view, &s, T0 + 3_300);
    assert_eq!(states(&out.deployment)[2..], [Draining, Draining]);
    let drain_over = T0 + 3_200 + 20_000;
    let out = run(&out.deployment, &view, &s, drain_over);
    assert_eq!(states(&out.deployment)[2..], [Dispatched, Dispatched]);
    deployed(
        &mut view,
        &["i-3", "i-4"],
        Outcome::Succeeded,
        drain_over + 10,
    );
    let out = run(&out.deployment, &view, &s, drain_over + 10);
    assert!(
        messages(&out).contains(
            &"Command execution completed on 4 of 4 instances in environment.".to_string()
        )
    );
    for host in ["i-3", "i-4"] {
        view.instances.get_mut(host).expect("member").lb = Some(LbServer {
            in_rotation: true,
            up: true,
            sessions: 0,
        });
    }
    reports(&mut view, &["i-3", "i-4"], Status::Ok, drain_over + 1_100);
    let out = run(&out.deployment, &view, &s, drain_over + 1_100);
    reports(&mut view, &["i-3", "i-4"], Status::Ok, drain_over + 2_200);
    let out = run(&out.deployment, &view, &s, drain_over + 2_200);
    assert_eq!(out.deployment.status, DeploymentStatus::Succeeded);
    assert_eq!(
        messages(&out),
        [
            "Batch 2: Completed application deployment.",
            "New application version was deployed to running EC2 instances.",
            "Environment update completed successfully.",
        ]
    );
}

/// Runs batch 1 to Healthy (no load balancer), returning the deployment and the view.
fn first_batch_done(s: &DeploySettings) -> (Deployment, FleetView) {
    let mut view = fleet();
    for host in view.instances.values_mut() {
        host.lb = None;
    }
    let out = run(&deployment(), &view, s, T0);
    deployed(&mut view, &["i-1", "i-2"], Outcome::Succeeded, T0 + 10);
    let out = run(&out.deployment, &view, s, T0 + 10);
    reports(&mut view, &["i-1", "i-2"], Status::Ok, T0 + 1_100);
    let out = run(&out.deployment, &view, s, T0 + 1_100);
    reports(&mut view, &["i-1", "i-2"], Status::Ok, T0 + 2_200);
    let out = run(&out.deployment, &view, s, T0 + 2_200);
    assert_eq!(
        states(&out.deployment),
        [
            MemberState::Healthy,
            MemberState::Healthy,
            MemberState::Dispatched,
            MemberState::Dispatched
        ],
        "without a load balancer a batch has nothing to drain"
    );
    (out.deployment, view)
}

#[test]
fn a_failed_hook_aborts_once_the_batchs_commands_are_done_and_earlier_batches_keep_the_version() {
    let s = settings();
    let (d, mut view) = first_batch_done(&s);
    deployed(&mut view, &["i-3"], Outcome::Failed, T0 + 3_000);
    let out = run(&d, &view, &s, T0 + 3_000);
    assert_eq!(
        out.deployment.status,
        DeploymentStatus::InProgress,
        "i-4 still runs"
    );
    deployed(&mut view, &["i-4"], Outcome::Succeeded, T0 + 3_500);
    let out = run(&out.deployment, &view, &s, T0 + 3_500);
    assert_eq!(out.deployment.status, DeploymentStatus::Failed);
    assert_eq!(
        out.deployment.message.as_deref(),
        Some("Unsuccessful command execution on instance id(s) 'i-3'. Aborting the operation.")
    );
    let member = &out.deployment.members[2];
    assert_eq!(member.step.as_deref(), Some("hook:prebuild/01.sh"));
    assert_eq!(member.message.as_deref(), Some("exit status 1: boom"));
    assert_eq!(out.deployment.members[0].state, MemberState::Healthy);
    let text = messages(&out);
    assert!(
        text.contains(&"Failed to deploy application.".to_string()),
        "{text:?}"
    );
}

#[test]
fn a_failed_gate_aborts_at_the_batch_deadline_unless_health_checks_are_ignored() {
    let s = settings();
    let (d, mut view) = first_batch_done(&s);
    deployed(&mut view, &["i-3", "i-4"], Outcome::Succeeded, T0 + 3_000);
    reports(&mut view, &["i-3", "i-4"], Status::Severe, T0 + 4_000);
    let out = run(&d, &view, &s, T0 + 4_000);
    assert_eq!(out.deployment.status, DeploymentStatus::InProgress);
    // Batch 2 started at T0 + 2 200 (when batch 1 passed): its deadline is 60 s later.
    let late = T0 + 2_200 + 60_001;
    let failed = run(&out.deployment, &view, &s, late);
    assert_eq!(failed.deployment.status, DeploymentStatus::Failed);
    assert_eq!(
        failed.deployment.message.as_deref(),
        Some(
            "Instance id(s) 'i-3,i-4' did not pass health check after command execution. Aborting the operation."
        )
    );
    let ignoring = DeploySettings {
        ignore_health_check: true,
        ..s
    };
    let went_on = run(&out.deployment, &view, &ignoring, late);
    assert_eq!(went_on.deployment.status, DeploymentStatus::Succeeded);
    assert!(messages(&went_on).iter().any(|m| m
        == "Batch 2: Instance id(s) 'i-3,i-4' did not pass health check after command execution. Continuing: IgnoreHealthCheck is set."));
    // A lower threshold lets the Severe hosts pass before the deadline.
    let lenient = DeploySettings {
        threshold: Status::Severe,
        ..s
    };
    reports(&mut view, &["i-3", "i-4"], Status::Severe, T0 + 5_100);
    let counted = run(&out.deployment, &view, &lenient, T0 + 5_100);
    reports(&mut view, &["i-3", "i-4"], Status::Severe, T0 + 6_200);
    let passed = run(&counted.deployment, &view, &lenient, T0 + 6_200);
    assert_eq!(passed.deployment.status, DeploymentStatus::Succeeded);
}

#[test]
fn an_abort_fails_the_members_not_yet_sent_and_keeps_the_rest() {
    let s = settings();
    let (d, _) = first_batch_done(&s);
    let mut pending = d.clone();
    pending.members[2].state = MemberState::Draining;
    pending.members[3].state = MemberState::Pending;
    let out = super::super::abort(&pending, T0 + 5_000, "Aborted by the operator.");
    assert_eq!(out.deployment.status, DeploymentStatus::Aborted);
    assert_eq!(
        states(&out.deployment),
        [
            MemberState::Healthy,
            MemberState::Healthy,
            MemberState::Failed,
            MemberState::Failed
        ]
    );
}

#[test]
fn a_rollback_covers_the_hosts_the_failed_version_reached_newest_batch_first() {
    let s = settings();
    let (mut d, mut view) = first_batch_done(&s);
    d.status = DeploymentStatus::Failed;
    d.members[2].state = MemberState::Failed;
    for id in ["i-1", "i-2", "i-3"] {
        view.instances.get_mut(id).expect("member").serving_version = Some("v2".into());
    }
    // i-4 got v2 too but rolled back on its own host: it serves v1 and is left alone.
    view.instances
        .get_mut("i-4")
        .expect("member")
        .serving_version = Some("v1".into());
    let rollback = rollback_of(&d, &view, "v1", 9, T0 + 9_000).expect("a rollback");
    assert_eq!(rollback.kind, DeploymentKind::Rollback);
    assert_eq!(rollback.version_label.as_deref(), Some("v1"));
    assert_eq!((rollback.serial, rollback.policy.as_str()), (9, "Rolling"));
    let batches: Vec<(&str, u32)> = rollback
        .members
        .iter()
        .map(|m| (m.instance_id.as_str(), m.batch))
        .collect();
    assert_eq!(batches, [("i-3", 0), ("i-1", 1), ("i-2", 1)]);
    for host in view.instances.values_mut() {
        host.serving_version = Some("v1".into());
    }
    assert!(
        rollback_of(&d, &view, "v1", 9, T0).is_none(),
        "nothing to roll back"
    );
}

#[test]
fn a_rolling_restart_drains_restarts_and_gates_each_batch() {
    let s = settings();
    let restart = with_batches(
        new_deployment(8, "env", DeploymentKind::Restart, Some("v1"), 0, IDS, T0),
        "Rolling",
        2,
    );
    let mut view = fleet();
    drained(&mut view, &IDS, true);
    let out = run(&restart, &view, &s, T0);
    assert_eq!(
        out.commands,
        [
            ("i-1".to_string(), "restart-d8-i-1".to_string()),
            ("i-2".to_string(), "restart-d8-i-2".to_string())
        ],
        "only the first batch is restarted"
    );
    for id in ["i-1", "i-2"] {
        view.instances.get_mut(id).expect("member").command =
            Some(hostmanager_protocol::CommandResult {
                id: format!("restart-d8-{id}"),
                accepted: true,
                deployment_id: Some(3),
                error: None,
                outcome: Some(Outcome::Succeeded),
            });
    }
    let out = run(&out.deployment, &view, &s, T0 + 100);
    assert_eq!(out.deployment.members[0].state, MemberState::Deployed);
    assert!(out.commands.is_empty());
}
