//! The report round trip: `POST {url}/v1/hosts/{instance_id}/report`, one per interval,
//! initiated by the agent (so hosts behind NAT or strict ingress rules need no open port).
//!
//! Compatibility: every field added after the first version has a serde default, so an older
//! agent's report and an older controller's reply still parse; a newer field an older peer
//! does not know is ignored.

use serde::{Deserialize, Serialize};

use crate::{DeploymentRequest, Event, HostFacts, HostStatus, MetricsWindow};

/// Most events sent in one report; the rest follow in the next round trips.
pub const MAX_EVENTS_PER_REPORT: usize = 500;

/// The agent's report. `S` is the status document: the agent sends its whole local status
/// (`GET /v1/status`), the controller reads the part it needs ([`HostStatus`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report<S = HostStatus> {
    pub instance_id: String,
    pub environment: String,
    pub agent_version: String,
    /// The serial of the last desired state the agent accepted.
    pub applied_serial: u64,
    pub status: S,
    /// Journal events after the controller's last acknowledgement, oldest first.
    pub events: Vec<Event>,
    pub command_results: Vec<CommandResult>,
    /// How each desired state ended, resent until acknowledged (`desired_results_ack`).
    #[serde(default)]
    pub desired_results: Vec<DesiredResult>,
    /// The request metrics of the last complete window, mergeable across hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsWindow>,
    /// Where the host can be reached and what it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facts: Option<HostFacts>,
}

/// The controller's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReportReply {
    /// Every event up to this id is stored by the controller.
    pub events_ack: Option<u64>,
    /// Command results the controller has stored.
    pub commands_ack: Vec<String>,
    /// Serials whose [`DesiredResult`] the controller has stored.
    pub desired_results_ack: Vec<u64>,
    pub desired: Option<DesiredState>,
    pub commands: Vec<Command>,
    /// When to send the next report (the controller paces its fleet); absent: the interval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report_after_ms: Option<u64>,
    /// The host's credential is past most of its lifetime: ask for a new one
    /// (`POST /v1/hosts/{id}/credential`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub rotate_credential: bool,
    /// Whether the host sends its environment's periodic tasks (a worker's `cron.yaml`) now:
    /// the command leader while it reports, else the longest-enrolled host that does. Absent
    /// from older controllers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader: Option<bool>,
}

/// What should run on this host. A higher serial replaces a lower one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredState {
    pub serial: u64,
    pub deployment: DeploymentRequest,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// Unique per command; a command id seen before is not run again.
    pub id: String,
    pub kind: CommandKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandKind {
    Restart,
    Rollback,
    /// `RequestEnvironmentInfo` with `InfoType=tail`: the last lines of the host's logs,
    /// uploaded to `POST /v1/hosts/<id>/logs/<command id>`.
    TailLogs,
    /// `InfoType=bundle`: every log file zipped, uploaded the same way.
    BundleLogs,
    /// A kind this build does not know (a newer controller): answered as refused, so that a
    /// new kind never breaks an older agent's link.
    #[serde(other)]
    Unsupported,
}

/// The largest log tail or bundle a controller accepts at `POST /v1/hosts/<id>/logs/<command
/// id>`: a bigger bundle is refused by the agent before it is sent, naming the limit.
pub const MAX_LOGS_UPLOAD_BYTES: u64 = 64 << 20;

/// The controller's answer to a log upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogsUploaded {
    /// Where the controller keeps it, in its object store.
    pub key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResult {
    pub id: String,
    pub accepted: bool,
    /// The deployment that carries the command out, when accepted.
    pub deployment_id: Option<u64>,
    pub error: Option<String>,
    /// How the command's deployment ended; absent while it runs or for older agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
}

/// How the deployment of one desired state ended on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredResult {
    pub serial: u64,
    /// The host's own deployment id (absent when the document was refused before one began).
    #[serde(default)]
    pub deployment_id: Option<u64>,
    pub outcome: Outcome,
    /// The step that failed, for `failed` and `rolled_back`.
    #[serde(default)]
    pub step: Option<String>,
    /// What went wrong, in the agent's words (the deployment record's error).
    #[serde(default)]
    pub message: Option<String>,
    /// Milliseconds since the epoch when the outcome was known.
    #[serde(default)]
    pub finished_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Serving the new release and past the health gate.
    Succeeded,
    /// Failed before the switch; the previous release kept serving.
    Failed,
    /// Switched, then failed and went back to the previous release.
    RolledBack,
    /// The document was refused (invalid); nothing changed on the host.
    Refused,
    /// The desired state was already serving; nothing to do.
    Noop,
}

impl Outcome {
    /// Whether the host now serves what was asked.
    pub fn is_success(self) -> bool {
        matches!(self, Self::Succeeded | Self::Noop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_of_a_kind_this_build_does_not_know_still_parses() {
        let command: Command =
            serde_json::from_str(r#"{"id":"c-1","kind":"drain_connections"}"#).expect("parses");
        assert_eq!(command.kind, CommandKind::Unsupported);
        let known: Command =
            serde_json::from_str(r#"{"id":"c-2","kind":"bundle_logs"}"#).expect("parses");
        assert_eq!(known.kind, CommandKind::BundleLogs);
    }
}
