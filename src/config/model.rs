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
    pub events: EventsConfig,
    pub logs: LogsConfig,
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// Path requested on the app (directly and through nginx).
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive failed checks before the status leaves Ok.
    pub failures_before_unhealthy: u32,
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

/// Retention of the durable event journal (`var/lib/hostmanager/events/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventsConfig {
    pub segment_bytes: u64,
    pub retention_bytes: u64,
    /// Segments whose newest event is older than this are deleted.
    pub max_age: Duration,
}

/// Log files: rotation, the severe-error watcher, publication, tail and bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogsConfig {
    /// A log at least this large is rotated at the next check.
    pub rotate_size_bytes: u64,
    /// A non-empty log is rotated when this much time passed since its last rotation.
    pub rotate_interval: Duration,
    /// How often sizes and ages are checked.
    pub check_interval: Duration,
    /// After a rename rotation, how long writers get to reopen before the old file is compressed.
    pub reopen_timeout: Duration,
    /// Globs (under the root) of more files to rotate, watch, tail, bundle and publish.
    pub extra_files: Vec<String>,
    /// Disk budget of `var/log/rotated/` (published and waiting files together).
    pub spool_budget_bytes: u64,
    pub tail_lines: usize,
    pub watch: WatchConfig,
    pub publish: PublishConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchConfig {
    pub enabled: bool,
    /// Use the built-in patterns (tracebacks, panics, Java exceptions, FATAL/CRITICAL, segfaults).
    pub default_patterns: bool,
    /// More regular expressions; a matching line is a severe error (validated at load).
    pub patterns: Vec<String>,
    /// Globs (under the root) of files that are watched only (not rotated or published).
    pub files: Vec<String>,
    /// A stack trace is closed after this much silence.
    pub group_idle: Duration,
    /// At most one event per fingerprint per interval; the others are counted.
    pub event_interval: Duration,
    pub max_events_per_minute: u32,
    /// Window of the "N severe errors in the last ..." health cause.
    pub health_window: Duration,
}

/// Where rotated logs are published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishDestination {
    S3 {
        bucket: String,
    },
    /// A directory, relative to the root prefix like every path of the agent.
    Local(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishConfig {
    pub enabled: bool,
    pub destination: Option<PublishDestination>,
    /// How often the spool is scanned (rotation also wakes the publisher).
    pub interval: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub concurrency: usize,
    pub multipart_threshold_bytes: u64,
    pub part_size_bytes: u64,
}
