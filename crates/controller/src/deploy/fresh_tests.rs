//! Tests of the policies that launch hosts, through the rolling machine's `step` (each step
//! checked to be idempotent), with the orchestrator's part (naming launched hosts, the
//! provisioner releasing them) played by hand.

use hostmanager_protocol::{DesiredResult, Outcome};

use super::super::rolling::step;
use super::super::{FleetView, InstanceView, LbServer, StepOutcome, new_deployment};
use super::*;
use crate::health::Status;
use crate::model::DeploymentKind;
use crate::options::BatchSizeType;

const T0: i64 = 1_000_000;

fn settings() -> DeploySettings {
    DeploySettings {
        timeout_s: 60,
        ignore_health_check: false,
        threshold: Status::Ok,
        gate_reports: 1,
        gate_min_ms: 0,
        margin_s: 0,
        drain_timeout_ms: 20_000,
        new_version_percent: 25,
        evaluation_ms: 5_000,
    }
}

fn options(policy: DeploymentPolicy) -> CommandOptions {
    CommandOptions {
        policy,
        batch_size_type: BatchSizeType::Fixed,
        batch_size: 1,
        ..CommandOptions::default()
    }
}

fn laid_out(policy: DeploymentPolicy, existing: &[&str]) -> Deployment {
    let d = new_deployment(
        7,
        "env",
        DeploymentKind::Deploy,
        Some("v2"),
        5,
        existing.iter().copied(),
        T0,
    );
    layout(d, &options(policy)).expect("a policy that launches")
}

/// An original host serving v1, in rotation.
fn original() -> InstanceView {
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
            in_rotation: true,
            up: true,
            sessions: 0,
        }),
    }
}

/// A launched host that enrolled, deployed serial 5 with `outcome` and reported `health` at `at`.
fn launched(outcome: Outcome, health: Status, at: i64) -> InstanceView {
    InstanceView {
        applied_serial: 5,
        serving_serial: outcome.is_success().then_some(5),
        serving_version: outcome.is_success().then(|| "v2".into()),
        result: Some(DesiredResult {
            serial: 5,
            deployment_id: Some(7),
            outcome,
            step: None,
            message: (!outcome.is_success()).then(|| "boom".into()),
            finished_ms: at,
        }),
        command: None,
        health,
        // Its report after it finished counts toward the gate.
        report_ms: Some(at + 50),
        enrolled: true,
        lb: Some(LbServer {
            in_rotation: outcome.is_success(),
            up: outcome.is_success(),
            sessions: 0,
        }),
    }
}

fn fleet(ids: &[&str]) -> FleetView {
    FleetView {
        desired_serial: 4,
        instances: ids.iter().map(|id| (id.to_string(), original())).collect(),
    }
}

fn run(d: &Deployment, view: &FleetView, now: i64) -> StepOutcome {
    super::super::step_idempotently(step, d, view, &settings(), now)
}

/// What the orchestrator does with a launch: the current batch's slots get these ids.
fn name(d: &mut Deployment, ids: &[&str]) {
    let batch = super::super::rolling::current_batch(d).expect("a batch");
    let slots = d
        .members
        .iter_mut()
        .filter(|m| m.batch == batch && is_slot(m));
    for (member, id) in slots.zip(ids) {
        member.instance_id = id.to_string();
        member.state = MemberState::Launching;
    }
}

fn state(d: &Deployment, id: &str) -> MemberState {
    d.members
        .iter()
        .find(|m| m.instance_id == id)
        .expect("member")
        .state
}

fn messages(out: &StepOutcome) -> Vec<String> {
    out.events.iter().map(|e| e.message.clone()).collect()
}

#[test]
fn layouts_launch_what_each_policy_needs() {
    let batches = |d: &Deployment| -> Vec<(u32, MemberRole)> {
        d.members.iter().map(|m| (m.batch, m.role)).collect()
    };
    use MemberRole::{Deploy, Launch, Retire};
    let immutable = laid_out(DeploymentPolicy::Immutable, &["i-1", "i-2", "i-3"]);
    assert_eq!(
        batches(&immutable),
        [
            (0, Launch),
            (1, Launch),
            (1, Launch),
            (2, Retire),
            (2, Retire),
            (2, Retire)
        ]
    );
    let split = laid_out(DeploymentPolicy::TrafficSplitting, &["i-1", "i-2"]);
    assert_eq!(
        batches(&split),
        [(0, Launch), (0, Launch), (1, Retire), (1, Retire)]
    );
    let additional = laid_out(
        DeploymentPolicy::RollingWithAdditionalBatch,
        &["i-1", "i-2"],
    );
    assert_eq!(
        batches(&additional),
        [(0, Launch), (1, Deploy), (2, Deploy)]
    );
    assert!(
        additional
            .members
            .iter()
            .filter(|m| m.role == Launch)
            .all(is_slot)
    );
    assert_eq!(
        laid_out(DeploymentPolicy::Immutable, &["i-1"])
            .members
            .iter()
            .map(|m| m.batch)
            .collect::<Vec<_>>(),
        [0, 1],
        "one original: one new host, then the original retires"
    );
    let rolling = new_deployment(7, "env", DeploymentKind::Deploy, Some("v2"), 5, ["i-1"], T0);
    assert!(layout(rolling, &options(DeploymentPolicy::Rolling)).is_none());
}

#[test]
fn immutable_launches_one_then_the_rest_then_releases_the_originals() {
    let d = laid_out(DeploymentPolicy::Immutable, &["i-1", "i-2"]);
    let mut view = fleet(&["i-1", "i-2"]);
    let out = run(&d, &view, T0);
    assert_eq!(out.launch, 1, "one instance first");
    assert!(
        messages(&out)
            .iter()
            .any(|m| m.contains("Launching one instance with the new version"))
    );
    let mut d = out.deployment;
    name(&mut d, &["n-1"]);
    assert_eq!(
        run(&d, &view, T0 + 10).launch,
        0,
        "named: not launched again"
    );
    assert_eq!(
        super::super::targeted_members(&d)
            .map(|m| m.instance_id.as_str())
            .collect::<Vec<_>>(),
        ["n-1"]
    );
    view.instances.insert(
        "n-1".into(),
        launched(Outcome::Succeeded, Status::Ok, T0 + 100),
    );
    let out = run(&d, &view, T0 + 200);
    assert_eq!(
        state(&out.deployment, "n-1"),
        MemberState::Healthy,
        "{:#?}",
        out.deployment.members[0]
    );
    assert_eq!(out.launch, 1, "then the rest: one more for two originals");
    let mut d = out.deployment;
    name(&mut d, &["n-2"]);
    view.instances.insert(
        "n-2".into(),
        launched(Outcome::Succeeded, Status::Ok, T0 + 300),
    );
    let d = run(&d, &view, T0 + 400).deployment;
    assert_eq!(
        state(&d, "i-1"),
        MemberState::Retiring,
        "originals drain once the new hosts pass"
    );
    assert!(super::super::targeted_members(&d).all(|m| m.role == MemberRole::Launch));
    for id in ["i-1", "i-2"] {
        view.instances.get_mut(id).expect("host").lb = Some(LbServer {
            in_rotation: false,
            up: false,
            sessions: 0,
        });
    }
    let out = run(&d, &view, T0 + 500);
    assert_eq!(
        out.release,
        ["i-1", "i-2"],
        "drained: released, asked on every step"
    );
    assert_eq!(
        run(&out.deployment, &view, T0 + 600).release,
        ["i-1", "i-2"]
    );
    for id in ["i-1", "i-2"] {
        view.instances.get_mut(id).expect("host").enrolled = false;
    }
    let out = run(&out.deployment, &view, T0 + 700);
    assert_eq!(out.deployment.status, DeploymentStatus::Succeeded);
    assert_eq!(state(&out.deployment, "i-2"), MemberState::Released);
}

#[test]
fn a_failed_new_host_is_released_and_the_originals_are_untouched() {
    let mut d = run(
        &laid_out(DeploymentPolicy::Immutable, &["i-1", "i-2"]),
        &fleet(&["i-1", "i-2"]),
        T0,
    )
    .deployment;
    name(&mut d, &["n-1"]);
    let mut view = fleet(&["i-1", "i-2"]);
    view.instances.insert(
        "n-1".into(),
        launched(Outcome::Failed, Status::Severe, T0 + 100),
    );
    let out = run(&d, &view, T0 + 200);
    assert_eq!(out.deployment.status, DeploymentStatus::Failing);
    assert_eq!(out.release, ["n-1"], "never served: released at once");
    let texts = messages(&out);
    assert!(
        texts.iter().any(|m| m
            == "Unsuccessful command execution on instance id(s) 'n-1'. Aborting the operation."),
        "{texts:?}"
    );
    assert!(
        texts
            .iter()
            .any(|m| m.contains("Terminating the new instance(s) [n-1]")),
        "{texts:?}"
    );
    assert_eq!(state(&out.deployment, "i-1"), MemberState::Failed);
    assert!(
        out.deployment
            .members
            .iter()
            .filter(|m| m.role == MemberRole::Retire)
            .all(|m| m.message.as_deref()
                == Some("Kept in service: the deployment did not complete."))
    );
    view.instances.get_mut("n-1").expect("host").enrolled = false;
    let out = run(&out.deployment, &view, T0 + 300);
    assert_eq!(out.deployment.status, DeploymentStatus::Failed);
    assert!(out.deployment.finished_ms.is_some());
}

#[test]
fn a_launch_the_provisioner_refused_fails_the_deployment_with_its_words() {
    let mut d = run(
        &laid_out(DeploymentPolicy::TrafficSplitting, &["i-1"]),
        &fleet(&["i-1"]),
        T0,
    )
    .deployment;
    for member in d.members.iter_mut().filter(|m| is_slot(m)) {
        member.state = MemberState::Failed;
        member.message =
            Some("the standby pool \"standby\" has 0 idle reporting host(s), 1 needed".into());
    }
    let out = run(&d, &fleet(&["i-1"]), T0 + 10);
    assert_eq!(
        out.deployment.status,
        DeploymentStatus::Failed,
        "nothing launched, nothing to release"
    );
    assert_eq!(
        out.deployment.message.as_deref(),
        Some(
            "Could not launch 1 new instance(s): the standby pool \"standby\" has 0 idle reporting host(s), 1 needed. Aborting the operation."
        )
    );
}

#[test]
fn traffic_splitting_evaluates_then_shifts_or_sends_the_traffic_back() {
    let mut d = run(
        &laid_out(DeploymentPolicy::TrafficSplitting, &["i-1", "i-2"]),
        &fleet(&["i-1", "i-2"]),
        T0,
    )
    .deployment;
    name(&mut d, &["n-1", "n-2"]);
    let mut view = fleet(&["i-1", "i-2"]);
    for id in ["n-1", "n-2"] {
        view.instances.insert(
            id.into(),
            launched(Outcome::Succeeded, Status::Ok, T0 + 100),
        );
    }
    let out = run(&d, &view, T0 + 100);
    assert!(
        messages(&out).iter().any(|m| m
            == "Sending 25% of the traffic to the new instance(s) for 5 seconds to evaluate them."),
        "{:?}",
        messages(&out)
    );
    let d = out.deployment;
    assert_eq!(
        split_weights(&d, 25),
        Some((33, 100)),
        "25 % over 2 new and 2 old hosts: 33:100"
    );
    let d = run(&d, &view, T0 + 4_000).deployment;
    assert_eq!(state(&d, "i-1"), MemberState::Pending, "still evaluating");
    // A healthy evaluation shifts everything to the new hosts.
    let shifted = run(&d, &view, T0 + 5_200).deployment;
    assert_eq!(state(&shifted, "i-1"), MemberState::Retiring);
    assert_eq!(split_weights(&shifted, 25), None);
    // A new host turning unhealthy during it sends the traffic back and releases them.
    view.instances.get_mut("n-2").expect("host").health = Status::Degraded;
    let out = run(&d, &view, T0 + 4_500);
    assert_eq!(out.deployment.status, DeploymentStatus::Failing);
    assert_eq!(
        split_weights(&out.deployment, 25),
        None,
        "the originals get all of it"
    );
    assert!(messages(&out).iter().any(|m| m == "Instance id(s) 'n-2' did not pass health check during the traffic splitting evaluation. Aborting the operation."));
    assert_eq!(
        state(&out.deployment, "n-1"),
        MemberState::Retiring,
        "it served: drained first"
    );
    assert_eq!(state(&out.deployment, "i-1"), MemberState::Failed);
}

#[test]
fn weights_give_the_new_hosts_their_share() {
    let share = |new: u64, old: u64, (w_new, w_old): (u32, u32)| {
        let (n, o) = (new * u64::from(w_new), old * u64::from(w_old));
        n as f64 / (n + o) as f64 * 100.0
    };
    for (percent, new, old) in [
        (10, 2, 2),
        (25, 2, 2),
        (50, 1, 3),
        (90, 3, 1),
        (1, 4, 4),
        (100, 2, 2),
    ] {
        let mut d = laid_out(DeploymentPolicy::TrafficSplitting, &["o"]);
        d.status = DeploymentStatus::InProgress;
        let (mut slot, original) = (d.members[0].clone(), d.members[1].clone());
        slot.state = MemberState::Healthy;
        d.members = std::iter::repeat_n(slot, new as usize)
            .chain(std::iter::repeat_n(original, old as usize))
            .collect();
        let weights = split_weights(&d, percent).expect("splitting");
        let got = share(new, old, weights);
        assert!(
            (got - f64::from(percent)).abs() <= 1.5,
            "{percent} % with {new} new, {old} old: {weights:?} gives {got:.1} %"
        );
    }
}

#[test]
fn an_abort_releases_the_launched_hosts_before_it_is_aborted() {
    let mut d = run(
        &laid_out(DeploymentPolicy::Immutable, &["i-1"]),
        &fleet(&["i-1"]),
        T0,
    )
    .deployment;
    name(&mut d, &["n-1"]);
    let out = super::super::abort(&d, T0 + 10, "Aborted by the operator.");
    assert_eq!(out.deployment.status, DeploymentStatus::Aborting);
    assert_eq!(
        super::super::abort(&out.deployment, T0 + 20, "again").deployment,
        out.deployment
    );
    let mut view = fleet(&["i-1"]);
    let out = run(&out.deployment, &view, T0 + 30);
    assert_eq!(
        out.release,
        ["n-1"],
        "asked once even though it never enrolled"
    );
    view.instances.insert(
        "n-1".into(),
        InstanceView {
            enrolled: false,
            ..original()
        },
    );
    let out = run(&out.deployment, &view, T0 + 40);
    assert_eq!(out.deployment.status, DeploymentStatus::Aborted);
    assert_eq!(
        state(&out.deployment, "i-1"),
        MemberState::Failed,
        "the original kept serving"
    );
}

#[test]
fn the_additional_batch_is_released_once_every_batch_is_done() {
    let mut d = run(
        &laid_out(DeploymentPolicy::RollingWithAdditionalBatch, &["i-1"]),
        &fleet(&["i-1"]),
        T0,
    )
    .deployment;
    name(&mut d, &["n-1"]);
    let mut view = fleet(&["i-1"]);
    view.instances.insert(
        "n-1".into(),
        launched(Outcome::Succeeded, Status::Ok, T0 + 100),
    );
    let d = run(&d, &view, T0 + 100).deployment;
    assert_eq!(
        state(&d, "i-1"),
        MemberState::Draining,
        "capacity kept: the original rolls next"
    );
    view.instances.insert(
        "i-1".into(),
        InstanceView {
            lb: Some(LbServer {
                in_rotation: false,
                up: false,
                sessions: 0,
            }),
            ..original()
        },
    );
    let d = run(&d, &view, T0 + 200).deployment;
    view.instances.insert(
        "i-1".into(),
        launched(Outcome::Succeeded, Status::Ok, T0 + 300),
    );
    let d = run(&d, &view, T0 + 300).deployment;
    assert_eq!(state(&d, "i-1"), MemberState::Healthy);
    assert_eq!(
        state(&d, "n-1"),
        MemberState::Retiring,
        "then the additional host goes"
    );
    view.instances.get_mut("n-1").expect("host").lb = Some(LbServer {
        in_rotation: false,
        up: false,
        sessions: 0,
    });
    let out = run(&d, &view, T0 + 400);
    assert_eq!(out.release, ["n-1"]);
    view.instances.remove("n-1");
    let out = run(&out.deployment, &view, T0 + 500);
    assert_eq!(out.deployment.status, DeploymentStatus::Succeeded);
}
