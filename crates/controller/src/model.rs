//! What the controller keeps: applications, their versions, environments, enrolled instances,
//! deployments, events, commands, tokens. Plain data, shared by the store backends, the API and
//! the pure cores (health roll-up, deployment state machine).

use std::collections::BTreeMap;

use hostmanager_protocol::{HostFacts, HostStatus, MetricsWindow, Outcome};
use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch: every time the controller stores.
pub type Millis = i64;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Application {
    pub name: String,
    pub description: String,
    pub created_ms: Millis,
}

/// An application version: a bundle with a label, as Elastic Beanstalk's
/// `CreateApplicationVersion` makes one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppVersion {
    pub application: String,
    pub label: String,
    /// `s3://`, `https://`, `file://`, or `upload:<key>` for a bundle in the controller's
    /// own object store.
    pub source: String,
    pub sha256: Option<String>,
    pub description: String,
    pub size_bytes: Option<u64>,
    pub created_ms: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Web,
    Worker,
}

/// Elastic Beanstalk's environment `Status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EnvStatus {
    Launching,
    Ready,
    Updating,
    Terminating,
    Terminated,
}

/// One option setting, in Elastic Beanstalk's namespaces (`aws:elasticbeanstalk:command`,
/// `aws:elasticbeanstalk:application:environment`, …), keyed `namespace:option`.
pub type OptionSettings = BTreeMap<String, String>;

/// The environment's health as last published (after hysteresis), with what is pending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedHealth {
    /// Ok, Info, Warning, Degraded, Severe, NoData, Unknown, Pending.
    pub status: String,
    /// Green, Yellow, Red, Grey.
    pub color: String,
    pub causes: Vec<String>,
    pub since_ms: Millis,
    /// A different candidate seen in the last evaluations, and how many times in a row.
    pub pending: Option<(String, u32)>,
}

impl Default for PublishedHealth {
    fn default() -> Self {
        Self {
            status: "Unknown".into(),
            color: "Grey".into(),
            causes: Vec::new(),
            since_ms: 0,
            pending: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Environment {
    /// Stable, also in the `EnvironmentId` the API shows (`e-<id>`).
    pub id: i64,
    pub name: String,
    pub application: String,
    pub tier: Tier,
    pub options: OptionSettings,
    pub status: EnvStatus,
    /// The version hosts are asked to run: the newest deployment's (`None` before the first).
    #[serde(default)]
    pub desired_version: Option<String>,
    /// The version every instance should serve for health: the last one deployed
    /// successfully (Elastic Beanstalk falls back to it when a deployment fails).
    pub expected_version: Option<String>,
    /// The deployment that set `expected_version`.
    pub expected_deployment: Option<i64>,
    /// The serial of the environment's current desired state; each deployment raises it.
    pub desired_serial: u64,
    pub health: PublishedHealth,
    pub created_ms: Millis,
    pub updated_ms: Millis,
    /// The host name the load balancer routes here; `None`: `<name>.<domain>`. A CNAME swap
    /// sets it on both environments.
    #[serde(default)]
    pub cname: Option<String>,
}

/// An enrolled host. The hot fields (`last_seen_ms`, `status`, `metrics`) change with reports;
/// a report that changes nothing but `last_seen_ms` is coalesced, not written one by one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub id: String,
    pub environment: String,
    pub enrolled_ms: Millis,
    pub machine_fingerprint: String,
    pub facts: HostFacts,
    pub agent_version: String,
    pub credential: CredentialHashes,
    pub revoked_ms: Option<Millis>,
    pub last_seen_ms: Option<Millis>,
    /// The part of the agent's status the controller reads, as of the last report.
    pub status: HostStatus,
    pub metrics: Option<MetricsWindow>,
    pub applied_serial: u64,
    /// The last journal event id stored from this host (`events_ack`).
    pub events_cursor: u64,
    /// How the host's recent desired states ended (the newest few, by serial).
    #[serde(default)]
    pub desired_results: Vec<hostmanager_protocol::DesiredResult>,
}

/// The instance's secrets, as sha256 hex (never the secrets themselves).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialHashes {
    pub current: String,
    pub expires_ms: Millis,
    /// The secret a rotation replaced, accepted until `previous_until_ms`.
    pub previous: Option<String>,
    pub previous_until_ms: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentKind {
    Deploy,
    Restart,
    /// `AutoRollback`: the previous version deployed back over the batches a failed
    /// deployment reached, newest batch first. A deploy in every other respect.
    Rollback,
}

impl DeploymentKind {
    /// Whether it dispatches a desired state (a deploy or a rollback), not a command.
    pub fn is_deploy(self) -> bool {
        matches!(self, Self::Deploy | Self::Rollback)
    }
}

/// A deployment's machine-readable status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DeploymentStatus {
    Pending,
    InProgress,
    /// Failed, and the hosts it launched are being released before it is Failed.
    Failing,
    /// Aborted, and the hosts it launched are being released before it is Aborted.
    Aborting,
    Succeeded,
    Failed,
    Aborted,
}

impl DeploymentStatus {
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Aborted)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    pub id: i64,
    pub environment: String,
    pub kind: DeploymentKind,
    pub version_label: Option<String>,
    /// The desired-state serial this deployment dispatches (deploy, rollback); a restart
    /// dispatches none and carries the highest serial used before it.
    pub serial: u64,
    /// `AllAtOnce`, `Rolling`, `RollingWithAdditionalBatch`, `Immutable` or
    /// `TrafficSplitting` (the batches are the members' `batch`).
    pub policy: String,
    pub status: DeploymentStatus,
    pub created_ms: Millis,
    pub finished_ms: Option<Millis>,
    /// Why it failed or was aborted, in Elastic Beanstalk's words.
    pub message: Option<String>,
    pub members: Vec<Member>,
}

/// One instance's part in a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub instance_id: String,
    pub batch: u32,
    pub state: MemberState,
    /// The agent's outcome, failing step and message.
    pub outcome: Option<Outcome>,
    pub step: Option<String>,
    pub message: Option<String>,
    pub dispatched_ms: Option<Millis>,
    pub done_ms: Option<Millis>,
    /// Consecutive reports at or better than the health threshold since the host finished.
    pub healthy_reports: u32,
    /// The command id sent for a restart.
    pub command_id: Option<String>,
    /// When the load balancer was asked to drain the host before its batch (batched
    /// policies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_started_ms: Option<Millis>,
    /// What the member is for: an existing host to deploy to (default), a host the
    /// provisioner launches for the deployment, or an existing host it retires.
    #[serde(default, skip_serializing_if = "MemberRole::is_deploy")]
    pub role: MemberRole,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberRole {
    /// An existing host that gets the new version.
    #[default]
    Deploy,
    /// A host the provisioner launches for this deployment; its `instance_id` is empty until
    /// the provisioner names it.
    Launch,
    /// An existing host that is drained and released once the new hosts take over
    /// (Immutable, TrafficSplitting).
    Retire,
}

impl MemberRole {
    pub fn is_deploy(&self) -> bool {
        *self == Self::Deploy
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberState {
    /// Not yet sent.
    Pending,
    /// Its batch started: the load balancer drains it before it is sent anything.
    Draining,
    /// Sent in a reply; the host has not reported an outcome.
    Dispatched,
    /// The host reported success; its health gate is running.
    Deployed,
    /// Deployed and past the health gate.
    Healthy,
    Failed,
    TimedOut,
    /// A launched host the provisioner was asked for, not enrolled yet.
    Launching,
    /// Being drained before it is released.
    Retiring,
    /// Drained; the provisioner is asked to release it until it leaves the environment.
    Releasing,
    /// Released: terminated, or back in the standby pool.
    Released,
}

/// Elastic Beanstalk's event severities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EventSeverity {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

impl EventSeverity {
    /// EB's names, any case.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text.to_ascii_uppercase().as_str() {
            "TRACE" => Self::Trace,
            "DEBUG" => Self::Debug,
            "INFO" => Self::Info,
            "WARN" => Self::Warn,
            "ERROR" => Self::Error,
            "FATAL" => Self::Fatal,
            _ => return None,
        })
    }
}

/// An event as the controller stores it: from a host (with its journal id, so a report sent
/// twice stores it once) or from the controller itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEvent {
    pub environment: String,
    pub instance_id: Option<String>,
    /// The host journal's id; `None` for the controller's own events.
    pub source_id: Option<u64>,
    pub time_ms: Millis,
    pub severity: EventSeverity,
    pub source: String,
    pub message: String,
    pub deployment_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// Increasing in commit order; pages and `--follow` continue after it.
    pub seq: i64,
    #[serde(flatten)]
    pub event: NewEvent,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventFilter {
    pub environment: Option<String>,
    pub instance_id: Option<String>,
    /// At least this severe.
    pub min_severity: Option<EventSeverity>,
    pub since_ms: Option<Millis>,
    pub until_ms: Option<Millis>,
    /// Only events after this sequence number (the page token).
    pub after_seq: Option<i64>,
    /// Newest first when true (DescribeEvents), oldest first otherwise (follow).
    pub newest_first: bool,
    pub limit: u32,
}

/// A command queued for one instance (restart, rollback), sent until its result is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedCommand {
    pub id: String,
    pub instance_id: String,
    pub kind: hostmanager_protocol::CommandKind,
    pub deployment_id: Option<i64>,
    pub created_ms: Millis,
    pub result: Option<hostmanager_protocol::CommandResult>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollmentToken {
    /// Public id (shown in lists, used to revoke); the token itself is only ever hashed.
    pub id: String,
    pub hash: String,
    pub environment: String,
    pub uses_left: u32,
    pub expires_ms: Millis,
    pub created_ms: Millis,
    pub revoked: bool,
}

/// Why an enrollment was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrollRefusal {
    UnknownToken,
    Expired,
    UsedUp,
    Revoked,
    /// The instance id is enrolled from another machine.
    FingerprintMismatch,
}

/// What one report changes, as the report path hands it to the store's group commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportWrite {
    pub instance_id: String,
    pub seen_ms: Millis,
    /// The instance's new row when something other than `last_seen_ms` changed.
    pub instance: Option<Instance>,
    pub events: Vec<NewEvent>,
    /// Command results to store (by command id).
    pub command_results: Vec<hostmanager_protocol::CommandResult>,
}
