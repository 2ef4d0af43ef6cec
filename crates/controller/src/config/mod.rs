//! The controller's TOML config, validated like the agent's: every problem at once, each
//! naming its key; `validate` exits 78 (EX_CONFIG) when there is any. With no file at all the
//! controller runs with SQLite and a local object store under its data directory, listening
//! on loopback.

mod load_balancer;
mod objects;
mod provisioner;

pub use load_balancer::LoadBalancerConfig;
pub use objects::Objects;
pub use provisioner::{Ec2Config, LocalConfig, ProvisionerConfig};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub const DEFAULT_DATA_DIR: &str = "/var/lib/hostmanager-controller";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7600";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// The URL hosts and operators use to reach this controller (bundle download URLs are
    /// built from it). Default: `http(s)://<listen>`.
    pub public_url: String,
    pub tls: Option<TlsFiles>,
    pub database: Database,
    /// Where uploaded bundles and collected logs are kept.
    pub objects: Objects,
    pub hosts: HostsConfig,
    pub deploy: DeployConfig,
    /// Events older than this are deleted (Elastic Beanstalk keeps 6 weeks).
    pub events_retention: Duration,
    pub load_balancer: Option<LoadBalancerConfig>,
    /// Where new hosts come from; `None`: policies that need them are refused.
    pub provisioner: Option<ProvisionerConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    Sqlite(PathBuf),
    /// The URL (it may hold a password: never logged, see `Database::describe`).
    Postgres {
        url: String,
        max_connections: u32,
    },
}

impl Database {
    /// For logs and status: the SQLite path, or the PostgreSQL URL without its password.
    pub fn describe(&self) -> String {
        match self {
            Database::Sqlite(path) => format!("sqlite {}", path.display()),
            Database::Postgres { url, .. } => {
                format!("postgres {}", hostmanager::secret::shown_source(url))
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostsConfig {
    /// The report interval the controller asks hosts for.
    pub interval: Duration,
    /// A host silent for this many intervals is NoData.
    pub missed_reports: u32,
    /// After the controller starts, no host becomes NoData before this (at least 3 intervals):
    /// a controller outage is not the hosts' fault.
    pub failover_grace: Duration,
    /// How long an instance secret is valid; rotation is asked at 67 % of it.
    pub credential_lifetime: Duration,
    /// How long a rotated secret stays valid next to its replacement.
    pub rotation_grace: Duration,
    /// How long an enrollment token is valid when `--expires` is not given.
    pub enrollment_token_ttl: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeployConfig {
    /// Reports at or better than the health threshold, in a row, before a host passes the
    /// deployment's health gate. Unset: Elastic Beanstalk's, by tier (web 12 within 2 minutes,
    /// worker 18 within 3).
    pub health_gate_reports: Option<u32>,
    /// And the span those reports cover at least (unset: by tier, as above).
    pub health_gate_min: Option<Duration>,
    /// How often the orchestrator steps deployments and rolls up health.
    pub tick: Duration,
    /// An environment's lease: another replica takes over after this.
    pub lease: Duration,
    /// Extra wait for company before a group of reports commits (zero: none).
    pub commit_window: Duration,
    /// Added to `Timeout` for a deployment's (or batch's) deadline: EB's 240 s by default.
    pub timeout_margin: Duration,
    /// Overrides every environment's `EvaluationTime` (EB counts it in minutes; tests and
    /// demos shorten it).
    pub evaluation_time: Option<Duration>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    data_dir: Option<PathBuf>,
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    database: RawDatabase,
    #[serde(default)]
    hosts: RawHosts,
    #[serde(default)]
    deploy: RawDeploy,
    #[serde(default)]
    events: RawEvents,
    #[serde(default)]
    objects: objects::RawObjects,
    load_balancer: Option<load_balancer::RawLoadBalancer>,
    provisioner: Option<provisioner::RawProvisioner>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    public_url: Option<String>,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    url: Option<String>,
    max_connections: Option<u32>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHosts {
    interval: Option<String>,
    missed_reports: Option<u32>,
    failover_grace: Option<String>,
    credential_lifetime: Option<String>,
    rotation_grace: Option<String>,
    enrollment_token_ttl: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDeploy {
    health_gate_reports: Option<u32>,
    health_gate_min: Option<String>,
    tick: Option<String>,
    lease: Option<String>,
    commit_window: Option<String>,
    timeout_margin: Option<String>,
    evaluation_time: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawEvents {
    retention: Option<String>,
}

/// Reads `file` (when given) and applies the data directory from `--data`, which wins.
pub fn load(file: Option<&Path>, data_dir: Option<&Path>) -> Result<Config, Vec<String>> {
    let (raw, origin) = match file {
        None => (RawConfig::default(), String::from("defaults")),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| vec![format!("{}: {e}", path.display())])?;
            let raw: RawConfig = toml::from_str(&text)
                .map_err(|e| vec![format!("{}: {}", path.display(), e.to_string().trim())])?;
            (raw, path.display().to_string())
        }
    };
    resolve(raw, data_dir).map_err(|problems| {
        problems
            .into_iter()
            .map(|problem| format!("{origin}: {problem}"))
            .collect()
    })
}

/// Parses a config from text (tests, `validate`).
pub fn parse(text: &str, data_dir: Option<&Path>) -> Result<Config, Vec<String>> {
    let raw: RawConfig =
        toml::from_str(text).map_err(|e| vec![e.to_string().trim().to_string()])?;
    resolve(raw, data_dir)
}

fn resolve(raw: RawConfig, data_dir: Option<&Path>) -> Result<Config, Vec<String>> {
    let mut problems = Vec::new();
    let data_dir = data_dir
        .map(Path::to_path_buf)
        .or(raw.data_dir)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let listen_text = raw
        .server
        .listen
        .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
    let listen = listen_text.parse::<SocketAddr>().unwrap_or_else(|_| {
        problems.push(format!(
            "server.listen: {listen_text:?} is not an address:port (e.g. 127.0.0.1:7600)"
        ));
        SocketAddr::from(([127, 0, 0, 1], 7600))
    });
    let tls = match (raw.server.tls_cert_file, raw.server.tls_key_file) {
        (Some(cert_file), Some(key_file)) => Some(TlsFiles {
            cert_file,
            key_file,
        }),
        (None, None) => None,
        (Some(_), None) => {
            problems.push("server.tls_key_file: required with server.tls_cert_file".into());
            None
        }
        (None, Some(_)) => {
            problems.push("server.tls_cert_file: required with server.tls_key_file".into());
            None
        }
    };
    if tls.is_none() && !listen.ip().is_loopback() {
        problems.push(format!(
            "server.listen: {listen} is not a loopback address, so it needs TLS \
             (server.tls_cert_file and server.tls_key_file): host secrets and admin tokens \
             must not cross a network in clear text"
        ));
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    let public_url = raw
        .server
        .public_url
        .unwrap_or_else(|| format!("{scheme}://{listen}"))
        .trim_end_matches('/')
        .to_string();
    if !public_url.starts_with("http://") && !public_url.starts_with("https://") {
        problems.push(format!(
            "server.public_url: {public_url:?} must start with http:// or https://"
        ));
    }
    let objects = objects::parse(raw.objects, &data_dir, &mut problems);
    let database = match raw.database.url {
        None => Database::Sqlite(data_dir.join("controller.db")),
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Database::Postgres {
                url,
                max_connections: raw.database.max_connections.unwrap_or(16).max(1),
            }
        }
        Some(url) => match url.strip_prefix("sqlite://") {
            Some(path) if !path.is_empty() => Database::Sqlite(PathBuf::from(path)),
            _ => {
                problems.push(format!(
                    "database.url: {:?} is neither sqlite:///path nor postgres://…",
                    hostmanager::secret::shown_source(&url)
                ));
                Database::Sqlite(data_dir.join("controller.db"))
            }
        },
    };
    let mut duration = |key: &str, value: Option<String>, default: Duration| match value {
        None => default,
        Some(text) => match humantime::parse_duration(&text) {
            Ok(value) if !value.is_zero() => value,
            _ => {
                problems.push(format!(
                    "{key}: {text:?} is not a duration like 10s, 5m or 30d"
                ));
                default
            }
        },
    };
    let interval = duration(
        "hosts.interval",
        raw.hosts.interval,
        Duration::from_secs(10),
    );
    let failover_grace = duration(
        "hosts.failover_grace",
        raw.hosts.failover_grace,
        Duration::from_secs(300),
    );
    let credential_lifetime = duration(
        "hosts.credential_lifetime",
        raw.hosts.credential_lifetime,
        Duration::from_secs(30 * 86_400),
    );
    let rotation_grace = duration(
        "hosts.rotation_grace",
        raw.hosts.rotation_grace,
        Duration::from_secs(600),
    );
    let enrollment_token_ttl = duration(
        "hosts.enrollment_token_ttl",
        raw.hosts.enrollment_token_ttl,
        Duration::from_secs(3600),
    );
    let health_gate_min = raw
        .deploy
        .health_gate_min
        .map(|text| duration("deploy.health_gate_min", Some(text), Duration::ZERO));
    let evaluation_time = raw
        .deploy
        .evaluation_time
        .map(|text| duration("deploy.evaluation_time", Some(text), Duration::ZERO));
    let tick = duration("deploy.tick", raw.deploy.tick, Duration::from_secs(1));
    let lease = duration("deploy.lease", raw.deploy.lease, Duration::from_secs(15));
    let events_retention = duration(
        "events.retention",
        raw.events.retention,
        Duration::from_secs(42 * 86_400),
    );
    // Zero is this one's default and means "no extra wait", unlike the others.
    let commit_window = match raw.deploy.commit_window.as_deref() {
        None => Duration::ZERO,
        Some(text) => humantime::parse_duration(text).unwrap_or_else(|_| {
            problems.push(format!(
                "deploy.commit_window: {text:?} is not a duration like 0s or 20ms"
            ));
            Duration::ZERO
        }),
    };
    let timeout_margin = match raw.deploy.timeout_margin.as_deref() {
        None => Duration::from_secs(crate::deploy::TIMEOUT_MARGIN_S),
        Some(text) => humantime::parse_duration(text).unwrap_or_else(|_| {
            problems.push(format!(
                "deploy.timeout_margin: {text:?} is not a duration like 0s or 240s"
            ));
            Duration::from_secs(crate::deploy::TIMEOUT_MARGIN_S)
        }),
    };
    let load_balancer = load_balancer::parse(raw.load_balancer, &data_dir, &mut problems);
    let provisioner = provisioner::parse(raw.provisioner, &mut problems);
    let missed_reports = raw.hosts.missed_reports.unwrap_or(3);
    if missed_reports == 0 {
        problems.push("hosts.missed_reports: must be at least 1".into());
    }
    let health_gate_reports = raw.deploy.health_gate_reports;
    if health_gate_reports == Some(0) {
        problems.push("deploy.health_gate_reports: must be at least 1".into());
    }
    if lease <= tick * 2 {
        problems.push(format!(
            "deploy.lease: {} must be longer than two ticks ({}), or a busy replica loses its \
             lease between two steps",
            humantime::format_duration(lease),
            humantime::format_duration(tick * 2)
        ));
    }
    if credential_lifetime < interval * 10 {
        problems.push("hosts.credential_lifetime: must be at least 10 report intervals".into());
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Config {
        objects,
        data_dir,
        listen,
        public_url,
        tls,
        database,
        hosts: HostsConfig {
            interval,
            missed_reports,
            failover_grace: failover_grace.max(interval * 3),
            credential_lifetime,
            rotation_grace,
            enrollment_token_ttl,
        },
        deploy: DeployConfig {
            health_gate_reports,
            health_gate_min,
            tick,
            lease,
            commit_window,
            timeout_margin,
            evaluation_time,
        },
        events_retention,
        load_balancer,
        provisioner,
    })
}

#[cfg(test)]
mod tests;
