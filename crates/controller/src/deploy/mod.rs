//! Deployments as resumable, idempotent state machines over [`Deployment`] and its
//! [`Member`]s: a step reads the stored deployment and a view of the fleet and returns the
//! next deployment, the events to store and the commands to queue. Nothing else is kept, so
//! a controller that restarts (or a replica that takes the lease over) reloads the deployment
//! and carries on; events come only from state transitions, so no event is emitted twice.
//!
//! `AllAtOnce` ([`allatonce`]) dispatches to every member at once through the environment's
//! desired state; `Rolling` ([`rolling`]) goes batch by batch ([`batches`]), each member
//! getting the deployment's desired state in its own replies once its batch is drained
//! ([`targeted_members`]). `RollingWithAdditionalBatch`, `Immutable` and `TrafficSplitting`
//! are batches too, some of hosts a provisioner launches and one of hosts it releases
//! ([`fresh`]); without a provisioner they are refused (`options::validate`).
//!
//! Members are fixed when the deployment is created ([`new_deployment`]): instances that
//! enroll afterwards are not members. They get the environment's desired state in their
//! replies anyway, and the roll-up judges their version like any other instance's.

pub mod allatonce;
pub mod batches;
mod events;
pub mod fresh;
mod members;
pub mod rolling;

use std::collections::BTreeMap;

use hostmanager_protocol::{CommandResult, DesiredResult};

use crate::health::Status;
use crate::model::{
    Deployment, DeploymentKind, DeploymentStatus, Instance, Member, MemberRole, MemberState,
    Millis, NewEvent, Tier,
};
use crate::options::CommandOptions;

/// EB "internally adds 240 seconds" to `Timeout`.
pub const TIMEOUT_MARGIN_S: u64 = 240;

/// Events the deployment machine emits carry this source.
pub const EVENT_SOURCE: &str = "controller";

/// When the deployment (AllAtOnce) or its current batch (batched policies) gives up on
/// members still running: `budget_ms` (`Timeout` + 240 s) after it started, the start of a
/// batch being when its hosts began draining.
pub fn deadline_ms(deployment: &Deployment, budget_ms: u64) -> Millis {
    let started = deployment
        .members
        .iter()
        .filter_map(|m| m.drain_started_ms)
        .max()
        .unwrap_or(deployment.created_ms);
    started.saturating_add(i64::try_from(budget_ms).unwrap_or(i64::MAX))
}

/// One step of `deployment`, by its policy.
pub fn step(
    deployment: &Deployment,
    view: &FleetView,
    settings: &DeploySettings,
    now_ms: Millis,
) -> StepOutcome {
    if is_batched(deployment) {
        rolling::step(deployment, view, settings, now_ms)
    } else {
        allatonce::step(deployment, view, settings, now_ms)
    }
}

/// Whether the deployment goes batch by batch (and drains each batch in the load balancer).
pub fn is_batched(deployment: &Deployment) -> bool {
    deployment.policy != "AllAtOnce"
}

/// The members that get the deployment's desired state in their replies: those of a batched
/// deploy (or rollback) whose batch was drained, and the hosts launched for it (from their
/// first reply). An AllAtOnce deployment goes through the environment's desired state
/// instead; hosts being retired keep what they serve.
pub fn targeted_members(deployment: &Deployment) -> impl Iterator<Item = &Member> {
    let targeted =
        is_batched(deployment) && deployment.kind.is_deploy() && !deployment.status.is_finished();
    deployment.members.iter().filter(move |m| {
        targeted
            && m.role != MemberRole::Retire
            && !m.instance_id.is_empty()
            && !matches!(
                m.state,
                MemberState::Pending
                    | MemberState::Draining
                    | MemberState::Retiring
                    | MemberState::Releasing
                    | MemberState::Released
            )
    })
}

/// `AbortEnvironmentUpdate`: no further batch; hosts launched for the deployment are released
/// (it is Aborting until they are gone).
pub fn abort(deployment: &Deployment, now_ms: Millis, reason: &str) -> StepOutcome {
    // Already on its way out: the release of its hosts goes on.
    if matches!(
        deployment.status,
        DeploymentStatus::Failing | DeploymentStatus::Aborting
    ) {
        return StepOutcome::unchanged(deployment);
    }
    let out = allatonce::abort(deployment, now_ms, reason);
    fresh::after_abort(out, now_ms)
}

/// The command id a restart sends to one member: derived, so that a step repeated after a
/// crash queues the same command again (the queue and the agent dedupe by id).
pub fn command_id(deployment_id: i64, instance_id: &str) -> String {
    format!("restart-d{deployment_id}-{instance_id}")
}

/// A new AllAtOnce deployment whose members are `instance_ids` (in the caller's order:
/// enrollment time, then id), all in batch 0, Pending. [`with_batches`] makes it batched.
pub fn new_deployment<'a>(
    id: i64,
    environment: &str,
    kind: DeploymentKind,
    version_label: Option<&str>,
    serial: u64,
    instance_ids: impl IntoIterator<Item = &'a str>,
    now_ms: Millis,
) -> Deployment {
    Deployment {
        id,
        environment: environment.to_string(),
        kind,
        version_label: version_label.map(str::to_string),
        serial,
        policy: "AllAtOnce".to_string(),
        status: DeploymentStatus::Pending,
        created_ms: now_ms,
        finished_ms: None,
        message: None,
        members: instance_ids.into_iter().map(pending_member).collect(),
    }
}

/// A member not yet sent anything, in batch 0, to deploy to.
pub fn pending_member(instance_id: &str) -> Member {
    Member {
        instance_id: instance_id.to_string(),
        batch: 0,
        state: MemberState::Pending,
        outcome: None,
        step: None,
        message: None,
        dispatched_ms: None,
        done_ms: None,
        healthy_reports: 0,
        command_id: None,
        drain_started_ms: None,
        role: MemberRole::Deploy,
    }
}

/// The deployment under `policy` with its members in consecutive batches of `batch_size`
/// (in member order; the last batch may be smaller).
pub fn with_batches(mut deployment: Deployment, policy: &str, batch_size: usize) -> Deployment {
    deployment.policy = policy.to_string();
    for (index, member) in deployment.members.iter_mut().enumerate() {
        member.batch = u32::try_from(index / batch_size.max(1)).unwrap_or(u32::MAX);
    }
    deployment
}

/// How the machine judges members, from the environment's options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeploySettings {
    pub timeout_s: u64,
    pub ignore_health_check: bool,
    /// `HealthCheckSuccessThreshold`: reports at or better than this pass the gate.
    pub threshold: Status,
    /// Consecutive passing reports a member needs after its host finished.
    pub gate_reports: u32,
    /// The span those reports must cover at least.
    pub gate_min_ms: u64,
    /// Added to `timeout_s` for the deadline (EB: 240 s; the controller's config may shorten it).
    pub margin_s: u64,
    /// How long a batch's hosts may take to drain before they are sent the new version
    /// anyway (`DeregistrationDelay`, EB: 20 s).
    pub drain_timeout_ms: u64,
    /// `TrafficSplitting`: the new hosts' share of the traffic during the evaluation, and
    /// how long the evaluation lasts.
    pub new_version_percent: u32,
    pub evaluation_ms: u64,
}

impl DeploySettings {
    /// EB: "12 consecutive health checks with an OK status within two minutes for web server
    /// environments, and 18 health checks within three minutes for worker environments";
    /// at 10 s reports, 12 reports span 110 s and 18 span 170 s.
    pub fn new(options: &CommandOptions, tier: Tier) -> Self {
        let (gate_reports, gate_min_ms) = match tier {
            Tier::Web => (12, 110_000),
            Tier::Worker => (18, 170_000),
        };
        Self {
            timeout_s: options.timeout_s,
            ignore_health_check: options.ignore_health_check,
            threshold: options.health_threshold,
            gate_reports,
            gate_min_ms,
            margin_s: TIMEOUT_MARGIN_S,
            drain_timeout_ms: options.drain_timeout_s.saturating_mul(1000),
            new_version_percent: options.new_version_percent,
            evaluation_ms: options.evaluation_time_min.saturating_mul(60_000),
        }
    }

    /// `Timeout` plus the margin, in milliseconds.
    pub fn budget_ms(&self) -> u64 {
        (self.timeout_s + self.margin_s).saturating_mul(1000)
    }
}

/// What the machine knows of one member's host.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceView {
    /// The serial of the last desired state the agent accepted.
    pub applied_serial: u64,
    pub serving_serial: Option<u64>,
    pub serving_version: Option<String>,
    /// The host's outcome for this deployment's serial, once reported.
    pub result: Option<DesiredResult>,
    /// The result of the member's restart command, once reported.
    pub command: Option<CommandResult>,
    /// The agent's own published status (not the roll-up's effective one).
    pub health: Status,
    /// When `health` was reported (the instance's `last_seen_ms`).
    pub report_ms: Option<Millis>,
    /// False once the instance is revoked.
    pub enrolled: bool,
    /// What the load balancer says of the host; `None` without a load balancer, or when it
    /// has no server for the host (no advertised address).
    pub lb: Option<LbServer>,
}

/// One server's state in the load balancer (HAProxy's `show stat`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbServer {
    /// Takes new traffic: UP and not draining or in maintenance.
    pub in_rotation: bool,
    /// Its active checks pass (UP, or DRAIN: up but taking no new traffic), whatever the
    /// responder told HAProxy: a new host's gate needs this before it takes traffic.
    pub up: bool,
    /// HAProxy's `scur`: sessions open on the server now.
    pub sessions: u64,
}

impl InstanceView {
    /// The view of `instance` with the results the store holds for it.
    pub fn of(
        instance: &Instance,
        result: Option<DesiredResult>,
        command: Option<CommandResult>,
    ) -> Self {
        let release = instance.status.release.as_ref();
        Self {
            applied_serial: instance.applied_serial,
            serving_serial: release.and_then(|r| r.serial),
            serving_version: release.map(|r| r.version_label.clone()),
            result,
            command,
            health: Status::parse_lenient(&instance.status.health.status),
            report_ms: instance.last_seen_ms,
            enrolled: instance.revoked_ms.is_none(),
            lb: None,
        }
    }
}

/// The fleet as one step sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FleetView {
    /// The environment's desired serial: once it equals the deployment's serial, replies
    /// carry the new desired state, so Pending members count as dispatched.
    pub desired_serial: u64,
    /// By instance id. A member missing here has left the environment.
    pub instances: BTreeMap<String, InstanceView>,
}

/// What a step (or an abort) produced.
#[derive(Debug, Clone, PartialEq)]
pub struct StepOutcome {
    /// The deployment to store (equal to the input when nothing happened).
    pub deployment: Deployment,
    /// Events to store, in order.
    pub events: Vec<NewEvent>,
    /// Commands to queue, as (instance id, command id): every dispatched restart whose result
    /// is not in yet (queueing is idempotent by id).
    pub commands: Vec<(String, String)>,
    /// Hosts to ask the provisioner for: the current batch's unnamed members (the
    /// orchestrator names them with what the provisioner launched).
    pub launch: usize,
    /// Hosts to give back to the provisioner, asked for on every step until they are gone
    /// (releasing is idempotent).
    pub release: Vec<String>,
}

impl StepOutcome {
    /// Nothing happened: the deployment as it was, no event, no command.
    pub fn unchanged(deployment: &Deployment) -> Self {
        Self {
            deployment: deployment.clone(),
            events: Vec::new(),
            commands: Vec::new(),
            launch: 0,
            release: Vec::new(),
        }
    }

    pub fn changed(&self, before: &Deployment) -> bool {
        &self.deployment != before
    }
}

/// Steps `d` with `step`, and checks that the same step applied again to its own result
/// changes nothing and emits nothing (what makes a resumed deployment safe).
#[cfg(test)]
pub(crate) fn step_idempotently(
    step: impl Fn(&Deployment, &FleetView, &DeploySettings, Millis) -> StepOutcome,
    d: &Deployment,
    view: &FleetView,
    s: &DeploySettings,
    now: Millis,
) -> StepOutcome {
    let out = step(d, view, s, now);
    let again = step(&out.deployment, view, s, now);
    assert_eq!(
        again.deployment, out.deployment,
        "a repeated step changes nothing"
    );
    assert!(
        again.events.is_empty(),
        "repeated step emitted {:?}",
        again.events
    );
    out
}
