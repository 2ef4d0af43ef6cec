//! The control API's documents and the tiny query-string reader. Pure.

use serde::{Deserialize, Serialize};

use crate::deploy::{ActiveDeployment, DeploymentRecord};
use crate::health::HealthReport;
use crate::metrics::{MetricsSnapshot, SinkStatus};
use crate::proxy::ProxyStatus;
use crate::supervise::ProcessStatus;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    pub version: String,
    pub pid: u32,
    pub root: String,
    pub environment: String,
    pub started_at: String,
    /// Events lost because their channel was full.
    pub events_dropped: u64,
}

/// The serving release as status shows it (no property values).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseView {
    pub deployment_id: u64,
    pub version_label: String,
    pub source: String,
    pub sha256: String,
    pub deployed_at: String,
    /// Where the web process listens and nginx proxies.
    pub web_port: u16,
    /// The `$PORT` the web process was given and ignored for `web_port` (a fixed-port app:
    /// no zero-downtime deployments); none when it listens on `$PORT`.
    #[serde(default)]
    pub given_port: Option<u16>,
    /// Outcome of the deployment that made this release serve.
    pub status: Option<String>,
    /// The controller serial whose desired state this release is; none for local deployments.
    #[serde(default)]
    pub serial: Option<u64>,
    /// The language platform it was built for and the runtime's version (docs/platforms.md).
    #[serde(default)]
    pub platform: Option<crate::deploy::RuntimeInfo>,
    /// Its settings with where each came from (`hostmanager config --effective`); property
    /// values are never in here, only their names.
    #[serde(default)]
    pub settings: Option<crate::ebext::ReleaseSettings>,
}

/// `GET /v1/status`. Not `Eq`: process CPU shares are floating point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub agent: AgentInfo,
    pub proxy: ProxyStatus,
    pub release: Option<ReleaseView>,
    pub deployment: Option<ActiveDeployment>,
    /// The newest deployment record (whatever its outcome).
    pub last_deployment: Option<DeploymentRecord>,
    pub processes: Vec<ProcessStatus>,
    /// The central controller link; absent when the agent is standalone.
    #[serde(default)]
    pub controller: Option<crate::controller_link::LinkStatus>,
    pub health: HealthReport,
    /// The SQS daemon of a worker host; absent on a web server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<crate::worker::WorkerStatus>,
}

/// `GET /v1/health`: the graded status with its causes, the last window's metrics, and the
/// state of the CloudWatch publication (absent when it is off).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthView {
    #[serde(flatten)]
    pub report: HealthReport,
    pub metrics: Option<MetricsSnapshot>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloudwatch: Option<SinkStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<crate::worker::WorkerStatus>,
}

/// Error body of every non-2xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
}

/// Splits `a=1&b=x` into pairs; values are plain (ids, numbers, words), no percent-decoding.
pub fn query_pairs(query: Option<&str>) -> Vec<(&str, &str)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .collect()
}

/// Reads one numeric query parameter; `Err` names it.
pub fn query_number<T: std::str::FromStr>(
    pairs: &[(&str, &str)],
    key: &str,
) -> Result<Option<T>, String> {
    match pairs.iter().find(|(k, _)| *k == key) {
        None => Ok(None),
        Some((_, value)) => value
            .parse()
            .map(Some)
            .map_err(|_| format!("query parameter {key}={value:?} is not a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_split() {
        let pairs = query_pairs(Some("after=3&severity=error&flag"));
        assert_eq!(pairs, [("after", "3"), ("severity", "error"), ("flag", "")]);
        assert_eq!(query_number::<u64>(&pairs, "after"), Ok(Some(3)));
        assert_eq!(query_number::<u64>(&pairs, "limit"), Ok(None));
        assert!(query_number::<u64>(&pairs, "severity").is_err());
        assert!(query_pairs(None).is_empty());
    }
}
