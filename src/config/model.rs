//! The validated agent configuration. Every field has a default documented in `docs/config.md`;
//! `parse.rs` builds these from TOML and rejects anything out of range.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::platform_model::PlatformConfig;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub environment: EnvironmentConfig,
    pub app: AppConfig,
    pub supervise: SuperviseConfig,
    pub proxy: ProxyConfig,
    pub health: HealthConfig,
    pub deploy: DeployConfig,
    pub bundle: BundleConfig,
    pub agent: AgentConfig,
    pub aws: AwsConfig,
    pub controller: ControllerConfig,
    pub metrics: MetricsConfig,
    pub cloudwatch: CloudWatchConfig,
    pub events: EventsConfig,
    pub logs: LogsConfig,
    pub platform: PlatformConfig,
    pub worker: super::worker::WorkerConfig,
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
    /// Supplementary groups of the app processes (names); empty clears them.
    pub groups: Vec<String>,
    /// PORT given to the `web` process; nginx proxies to it.
    pub port: u16,
    /// Second port, used by the new web process during a zero-downtime cutover.
    pub alternate_port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuperviseConfig {
    pub stop_signal: StopSignal,
    pub stop_timeout: Duration,
    /// Delay before restarting a process that exited after a stable run (or for the first time).
    pub restart_delay: Duration,
    /// First delay of the backoff applied to a process that keeps exiting quickly.
    pub restart_backoff_initial: Duration,
    pub restart_backoff_max: Duration,
    /// A process that stays up this long gets its backoff reset.
    pub stable_after: Duration,
    /// This many exits within `crash_loop_window` make a crash loop.
    pub crash_loop_exits: u32,
    pub crash_loop_window: Duration,
    /// File mode creation mask of the app processes.
    pub umask: u32,
    /// Period of the per-process CPU and memory samples.
    pub stats_interval: Duration,
    /// Limits of every process unless `processes.<name>` overrides them.
    pub limits: ProcessLimits,
    /// Per-process overrides, by Procfile name.
    pub processes: BTreeMap<String, ProcessOverrides>,
}

/// Resource limits of one process. `None` leaves the limit as the agent has it (rlimits) or
/// unset (cgroup limits).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessLimits {
    /// RLIMIT_NOFILE, soft and hard.
    pub nofile: Option<u64>,
    /// RLIMIT_CORE in bytes, soft and hard; `u64::MAX` is unlimited.
    pub core: Option<u64>,
    /// cgroup v2 `memory.max` in bytes.
    pub memory_max: Option<u64>,
    /// cgroup v2 `cpu.max` as a percentage of one CPU (200 = two CPUs).
    pub cpu_quota_percent: Option<u32>,
}

impl ProcessLimits {
    /// `self`, with every limit `over` sets replaced.
    pub fn overridden_by(self, over: &ProcessLimits) -> Self {
        Self {
            nofile: over.nofile.or(self.nofile),
            core: over.core.or(self.core),
            memory_max: over.memory_max.or(self.memory_max),
            cpu_quota_percent: over.cpu_quota_percent.or(self.cpu_quota_percent),
        }
    }

    pub fn wants_cgroup(&self) -> bool {
        self.memory_max.is_some() || self.cpu_quota_percent.is_some()
    }
}

/// `[supervise.processes.<name>]`: settings of one Procfile process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessOverrides {
    pub stop_signal: Option<StopSignal>,
    pub stop_timeout: Option<Duration>,
    pub limits: ProcessLimits,
}

/// What applies to one process: the `[supervise]` defaults with its overrides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessSettings {
    pub stop_signal: StopSignal,
    pub stop_timeout: Duration,
    pub limits: ProcessLimits,
}

impl SuperviseConfig {
    pub fn settings(&self, process: &str) -> ProcessSettings {
        let over = self.processes.get(process);
        ProcessSettings {
            stop_signal: over.and_then(|o| o.stop_signal).unwrap_or(self.stop_signal),
            stop_timeout: over
                .and_then(|o| o.stop_timeout)
                .unwrap_or(self.stop_timeout),
            limits: over.map_or(self.limits, |o| self.limits.overridden_by(&o.limits)),
        }
    }

    /// Whether any process asks for cgroup limits.
    pub fn wants_cgroups(&self) -> bool {
        self.limits.wants_cgroup() || self.processes.values().any(|o| o.limits.wants_cgroup())
    }
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
    /// Ports Elastic Beanstalk's platforms run the app on (8080 Node.js, 8000 Python, 5000
    /// Go and Java): an override's `proxy_pass` to 127.0.0.1 or localhost on one of them goes
    /// to the app's web process.
    pub platform_ports: Vec<u16>,
    /// Where nginx's dynamic modules are: the traffic switch loads the NDK and Lua modules
    /// from here; without them each cutover reloads nginx.
    pub modules_dir: PathBuf,
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

/// What a deployment does with a web process that ignores `$PORT` and listens on its
/// platform's default port (or `app.port`) instead (docs/deployments.md#the-port-contract).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FixedPortPolicy {
    /// As Elastic Beanstalk does: nginx proxies to that port, and the next deployments stop
    /// the serving release before starting the new one (no zero downtime).
    StopThenStart,
    /// The deployment fails, naming the port.
    Refuse,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployConfig {
    pub strategy: DeployStrategy,
    pub fixed_port: FixedPortPolicy,
    /// Whole-deployment budget (Elastic Beanstalk's command timeout).
    pub timeout: Duration,
    pub hook_timeout: Duration,
    /// User hooks and Buildfile commands run as (when the agent is root); default: the agent's
    /// user, i.e. root, as on Elastic Beanstalk.
    pub hook_user: Option<String>,
    /// Consecutive successful checks the new release needs before it takes traffic.
    pub health_gate_successes: u32,
    pub health_gate_interval: Duration,
    pub health_gate_timeout: Duration,
    /// How long in-flight requests may finish on the old web process after the switch.
    pub drain_timeout: Duration,
    pub releases_to_keep: usize,
    /// Deployment records kept (newest first), besides those of kept releases and unfinished jobs.
    pub records_keep: usize,
    /// Records of deployments that finished longer ago are deleted (same exceptions).
    pub records_max_age: Duration,
}

/// How bundles are fetched and how much of them is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleConfig {
    pub max_entries: u64,
    pub max_unpacked_bytes: u64,
    pub max_compression_ratio: u64,
    pub max_download_bytes: u64,
    /// Extra CA certificates (PEM) trusted for https:// bundle sources.
    pub ca_file: Option<PathBuf>,
    /// Tries per network download (S3, HTTPS) before the deployment fails.
    pub download_attempts: u32,
}

impl BundleConfig {
    pub fn limits(&self) -> BundleLimits {
        BundleLimits {
            max_entries: self.max_entries,
            max_unpacked_bytes: self.max_unpacked_bytes,
            max_compression_ratio: self.max_compression_ratio,
            max_download_bytes: self.max_download_bytes,
        }
    }
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

/// The optional central controller. Without `url` the agent is standalone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerConfig {
    pub url: Option<String>,
    /// Bearer token for the controller, read at start (keep it 0600).
    pub token_file: Option<PathBuf>,
    /// Extra CA certificates (PEM) trusted for the controller's HTTPS.
    pub ca_file: Option<PathBuf>,
    /// An operator's enrollment token, exchanged once for a per-instance credential.
    pub enrollment_token_file: Option<PathBuf>,
    /// Hashed into the machine fingerprint sent at enrollment.
    pub machine_id_file: PathBuf,
    /// `host:port` where this host's nginx is reachable (the load balancer's target).
    pub advertise_addr: Option<String>,
    /// Time between report round trips.
    pub interval: Duration,
    /// Budget of one round trip.
    pub timeout: Duration,
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
    /// nginx's hourly healthd logs older than this many hours are deleted (once read).
    pub healthd_keep_hours: u64,
    /// At most this many healthd log files are kept (the newest; unread ones are never deleted).
    pub healthd_keep_files: u64,
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
    /// When the agent stops: rotate every log and upload what is pending, within the
    /// shutdown budget (an instance being terminated loses nothing written before).
    pub flush_on_stop: bool,
    pub destination: Option<PublishDestination>,
    /// How often the spool is scanned (rotation also wakes the publisher).
    pub interval: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub concurrency: usize,
    pub multipart_threshold_bytes: u64,
    pub part_size_bytes: u64,
}
