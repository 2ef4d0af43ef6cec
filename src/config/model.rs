//! The validated agent configuration. Every field has a default documented in `docs/config.md`;
//! `parse.rs` builds these from TOML and rejects anything out of range.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub environment: EnvironmentConfig,
    pub app: AppConfig,
    pub supervise: SuperviseConfig,
    pub proxy: ProxyConfig,
    pub health: HealthConfig,
    pub deploy: DeployConfig,
    pub bundle: BundleLimits,
    pub agent: AgentConfig,
    pub aws: AwsConfig,
    pub metrics: MetricsConfig,
    pub cloudwatch: CloudWatchConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvironmentConfig {
    /// Elastic Beanstalk's EnvironmentName.
    pub name: String,
    /// Elastic Beanstalk's environment id (`e-…`), used in S3 keys.
    pub id: String,
    /// Fixed instance id; when absent the agent uses the host name.
    pub instance_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppConfig {
    /// Unprivileged user the app runs as when the agent is root.
    pub user: String,
    /// Must be set explicitly before `user = "root"` is accepted.
    pub allow_root: bool,
    /// PORT given to the `web` process; nginx proxies to it.
    pub port: u16,
    /// Second port, used by the new web process during a zero-downtime cutover.
    pub alternate_port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuperviseConfig {
    pub stop_signal: StopSignal,
    pub stop_timeout: Duration,
    pub restart_backoff_initial: Duration,
    pub restart_backoff_max: Duration,
    /// A process that stays up this long gets its backoff reset.
    pub stable_after: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    Term,
    Int,
    Quit,
    Hup,
    Usr1,
    Usr2,
}

impl StopSignal {
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim_start_matches("SIG").to_ascii_uppercase().as_str() {
            "TERM" => Some(Self::Term),
            "INT" => Some(Self::Int),
            "QUIT" => Some(Self::Quit),
            "HUP" => Some(Self::Hup),
            "USR1" => Some(Self::Usr1),
            "USR2" => Some(Self::Usr2),
            _ => None,
        }
    }

    pub fn signal(self) -> nix::sys::signal::Signal {
        use nix::sys::signal::Signal;
        match self {
            Self::Term => Signal::SIGTERM,
            Self::Int => Signal::SIGINT,
            Self::Quit => Signal::SIGQUIT,
            Self::Hup => Signal::SIGHUP,
            Self::Usr1 => Signal::SIGUSR1,
            Self::Usr2 => Signal::SIGUSR2,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    pub enabled: bool,
    pub nginx_binary: PathBuf,
    pub listen: SocketAddr,
    /// nginx syntax: a number with an optional k/m/g suffix.
    pub client_max_body_size: String,
    /// `auto` or a number.
    pub worker_processes: String,
    pub worker_connections: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthConfig {
    /// Path requested on the app (directly and through nginx).
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive failed checks before the status leaves Ok.
    pub failures_before_unhealthy: u32,
    /// Consecutive evaluations that must agree before the status changes (hysteresis).
    pub status_change_after: u32,
    pub thresholds: HealthThresholds,
}

/// The published thresholds of the request, CPU and disk rules (docs/health.md).
#[derive(Debug, Clone, PartialEq)]
pub struct HealthThresholds {
    /// A window with fewer requests is too small to judge failure rates.
    pub min_requests: u64,
    /// Percent of requests answered 5xx.
    pub requests_5xx: Levels,
    /// Percent of requests answered 4xx (Elastic Beanstalk's optional rule; `{}` turns it off).
    pub requests_4xx: Levels,
    /// Percent of CPU in use (everything but idle).
    pub cpu: Levels,
    /// Percent of the root filesystem in use.
    pub root_filesystem: Levels,
}

impl HealthThresholds {
    pub const DEFAULT: Self = Self {
        min_requests: 10,
        requests_5xx: Levels::new(Some(1.0), Some(10.0), Some(25.0)),
        requests_4xx: Levels::new(Some(10.0), Some(25.0), None),
        cpu: Levels::new(Some(90.0), Some(95.0), None),
        root_filesystem: Levels::new(Some(90.0), Some(95.0), None),
    };
}

/// Where a measured percentage starts to count as Warning, Degraded, Severe (absent: never).
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Levels {
    pub warning: Option<f64>,
    pub degraded: Option<f64>,
    pub severe: Option<f64>,
}

impl Levels {
    pub const fn new(warning: Option<f64>, degraded: Option<f64>, severe: Option<f64>) -> Self {
        Self {
            warning,
            degraded,
            severe,
        }
    }
}

/// Request statistics and host metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Length of a statistics window (Elastic Beanstalk: 10 s).
    pub window: Duration,
}

/// Publication of the metrics to CloudWatch (`PutMetricData`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudWatchConfig {
    pub enabled: bool,
    /// Custom metrics may not live under `AWS/`.
    pub namespace: String,
    /// Aggregation period of every datum: 60 s (standard resolution) or 1, 5, 10, 30 s
    /// (high resolution, charged more).
    pub period: Duration,
    /// Datums kept while CloudWatch is unreachable; the oldest are dropped past it.
    pub buffer: usize,
    /// Budget of one `PutMetricData` call, retries included.
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeployStrategy {
    /// New web process on the alternate port, health gate, nginx switch, drain, stop the old.
    ZeroDowntime,
    /// Stop the old processes, then start the new ones on the main port.
    AllAtOnce,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployConfig {
    pub strategy: DeployStrategy,
    /// Whole-deployment budget (Elastic Beanstalk's command timeout).
    pub timeout: Duration,
    pub hook_timeout: Duration,
    /// Consecutive successful checks the new release needs before it takes traffic.
    pub health_gate_successes: u32,
    pub health_gate_interval: Duration,
    pub health_gate_timeout: Duration,
    /// How long in-flight requests may finish on the old web process after the switch.
    pub drain_timeout: Duration,
    pub releases_to_keep: usize,
}

/// Bounds that stop a hostile bundle from filling the disk or escaping the release directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BundleLimits {
    pub max_entries: u64,
    pub max_unpacked_bytes: u64,
    pub max_compression_ratio: u64,
    pub max_download_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// Budget for a clean stop after SIGTERM; a second signal exits at once.
    pub shutdown_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumPolicy {
    /// The SDK's default: checksums on every request that supports them.
    WhenSupported,
    /// Only where the API requires one (what most S3-compatible servers accept).
    WhenRequired,
}

/// How the agent reaches AWS (or an S3-compatible server). Credentials always come from the
/// standard chain: environment, profile, container or instance role (IMDS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsConfig {
    /// Default: AWS_REGION, then the instance's region from IMDS.
    pub region: Option<String>,
    /// Endpoint override for every AWS service (an S3-compatible server, a test server).
    pub endpoint_url: Option<String>,
    pub force_path_style: bool,
    pub checksums: ChecksumPolicy,
    /// The instance metadata service (IMDSv2) base URL.
    pub imds_endpoint: String,
    pub imds_timeout: Duration,
}
