//! Deployments as resumable, idempotent state machines over [`Deployment`] and its
//! [`Member`]s: a step reads the stored deployment and a view of the fleet and returns the
//! next deployment, the events to store and the commands to queue. Nothing else is kept, so
//! a controller that restarts (or a replica that takes the lease over) reloads the deployment
//! and carries on; events come only from state transitions, so no event is emitted twice.
//!
//! Only `AllAtOnce` ([`allatonce`]) is run so far (see `options::validate`).
//!
//! Members are fixed when the deployment is created ([`new_deployment`]): instances that
//! enroll afterwards are not members. They get the environment's desired state in their
//! replies anyway, and the roll-up judges their version like any other instance's.

pub mod allatonce;

use std::collections::BTreeMap;

use hostmanager_protocol::{CommandResult, DesiredResult};

pub use allatonce::{abort, step};

use crate::health::Status;
use crate::model::{
    Deployment, DeploymentKind, DeploymentStatus, Instance, Member, MemberState, Millis, NewEvent,
    Tier,
};
use crate::options::CommandOptions;

/// EB "internally adds 240 seconds" to `Timeout`.
pub const TIMEOUT_MARGIN_S: u64 = 240;

/// Events the deployment machine emits carry this source.
pub const EVENT_SOURCE: &str = "controller";

/// When the deployment gives up on members still running: `Timeout` + 240 s after it was
/// created.
pub fn deadline_ms(deployment: &Deployment, timeout_s: u64) -> Millis {
    let margin_ms = (timeout_s + TIMEOUT_MARGIN_S).saturating_mul(1000);
    deployment
        .created_ms
        .saturating_add(i64::try_from(margin_ms).unwrap_or(i64::MAX))
}

/// The command id a restart sends to one member: derived, so that a step repeated after a
/// crash queues the same command again (the queue and the agent dedupe by id).
pub fn command_id(deployment_id: i64, instance_id: &str) -> String {
    format!("restart-d{deployment_id}-{instance_id}")
}

/// A new deployment whose members are `instance_ids` (in the caller's order: enrollment time,
/// then id), all in batch 0, Pending.
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
        members: instance_ids
            .into_iter()
            .map(|instance_id| Member {
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
            })
            .collect(),
    }
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
        }
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
}

impl StepOutcome {
    pub fn changed(&self, before: &Deployment) -> bool {
        &self.deployment != before
    }
}
