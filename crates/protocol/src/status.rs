//! The part of the agent's status the controller reads. The agent sends its whole
//! `GET /v1/status` document; these types take the fields they name and ignore the rest, so
//! the agent's status can grow without a protocol change.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HostStatus {
    /// The release nginx sends traffic to.
    pub release: Option<ServingRelease>,
    /// The deployment running on the host, if any.
    pub deployment: Option<ActiveOperation>,
    pub health: HostHealth,
    pub processes: Vec<ProcessSummary>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServingRelease {
    pub deployment_id: u64,
    pub version_label: String,
    pub sha256: String,
    pub deployed_at: String,
    /// The controller serial that produced this release; absent for a local deployment.
    pub serial: Option<u64>,
    /// The language platform the host built it for, and the runtime's version.
    pub platform: Option<ReleasePlatform>,
}

/// `python` / `nodejs` / `go` / `java` / `procfile` and what the runtime said its version is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReleasePlatform {
    pub platform: String,
    pub version: Option<String>,
    /// The application server of the web process (gunicorn, node, java, …).
    pub server: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ActiveOperation {
    pub id: u64,
    pub kind: String,
    pub version_label: String,
    pub started_ms: i64,
    pub step: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HostHealth {
    /// Elastic Beanstalk's status names: Ok, Info, Warning, Degraded, Severe, Pending, Unknown.
    pub status: String,
    pub color: String,
    pub causes: Vec<HostCause>,
    pub checked_at: Option<String>,
}

impl Default for HostHealth {
    fn default() -> Self {
        Self {
            status: "Unknown".into(),
            color: "Grey".into(),
            causes: Vec::new(),
            checked_at: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HostCause {
    pub status: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcessSummary {
    pub name: String,
    pub pid: Option<i32>,
    pub state: String,
    pub restarts: u32,
}
