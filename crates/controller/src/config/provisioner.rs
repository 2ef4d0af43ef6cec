//! `[provisioner]`: where the hosts come from that `RollingWithAdditionalBatch`, `Immutable`
//! and `TrafficSplitting` need. Absent: those policies are refused (a 400 that says why).

use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProvisionerConfig {
    /// Enrolled idle hosts of environment `pool`, moved into an environment and back.
    Standby { pool: String },
    /// Agents started on this machine, each in a fresh root (demos, tests).
    Local(LocalConfig),
    /// An EC2 Auto Scaling group per environment, through the AWS SDK.
    Ec2(Ec2Config),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalConfig {
    /// The agent binary to run.
    pub agent: PathBuf,
    /// An `agent.toml` the new hosts start from; the provisioner sets each one's instance id,
    /// ports, controller URL and enrollment token file.
    pub template: PathBuf,
    /// Where the hosts' roots go (`<dir>/<instance id>`); every directory above it must be
    /// searchable by the hosts' app users.
    pub dir: PathBuf,
    /// Loopback ports the hosts' nginx and apps take (three per host).
    pub ports: RangeInclusive<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ec2Config {
    /// The group's name; `{environment}` is replaced by the environment's name.
    pub auto_scaling_group: String,
    pub region: Option<String>,
    /// An endpoint override (moto_server in tests).
    pub endpoint_url: Option<String>,
    /// How long a launch waits for the group to list the new instances.
    pub launch_timeout: Duration,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProvisioner {
    kind: Option<String>,
    pool: Option<String>,
    agent: Option<PathBuf>,
    template: Option<PathBuf>,
    dir: Option<PathBuf>,
    ports: Option<String>,
    auto_scaling_group: Option<String>,
    region: Option<String>,
    endpoint_url: Option<String>,
    launch_timeout: Option<String>,
}

pub(super) fn parse(
    raw: Option<RawProvisioner>,
    problems: &mut Vec<String>,
) -> Option<ProvisionerConfig> {
    let raw = raw?;
    let mut required = |key: &str, value: Option<PathBuf>, kind: &str| {
        value.or_else(|| {
            problems.push(format!(
                "provisioner.{key}: required with kind = \"{kind}\""
            ));
            None
        })
    };
    match raw.kind.as_deref() {
        Some("standby") => Some(ProvisionerConfig::Standby {
            pool: raw.pool.unwrap_or_else(|| "standby".to_string()),
        }),
        Some("local") => {
            let agent = required("agent", raw.agent, "local");
            let template = required("template", raw.template, "local");
            let ports = ports(raw.ports.as_deref().unwrap_or("18600-18999"), problems);
            Some(ProvisionerConfig::Local(LocalConfig {
                agent: agent?,
                template: template?,
                // Not under the data directory, which is private: the hosts' app users must
                // reach their releases.
                dir: raw
                    .dir
                    .unwrap_or_else(|| PathBuf::from("/var/lib/hostmanager-controller/hosts")),
                ports: ports?,
            }))
        }
        Some("ec2") => {
            let launch_timeout = match raw.launch_timeout.as_deref().map(humantime::parse_duration)
            {
                None => Some(Duration::from_secs(300)),
                Some(Ok(value)) if !value.is_zero() => Some(value),
                Some(_) => {
                    problems.push(format!(
                        "provisioner.launch_timeout: {:?} is not a duration like 5m",
                        raw.launch_timeout.unwrap_or_default()
                    ));
                    None
                }
            };
            Some(ProvisionerConfig::Ec2(Ec2Config {
                auto_scaling_group: raw
                    .auto_scaling_group
                    .unwrap_or_else(|| "hostmanager-{environment}".to_string()),
                region: raw.region,
                endpoint_url: raw.endpoint_url,
                launch_timeout: launch_timeout?,
            }))
        }
        other => {
            problems.push(format!(
                "provisioner.kind: {:?} is not valid; one of standby, local, ec2",
                other.unwrap_or("")
            ));
            None
        }
    }
}

/// `first-last`, both loopback ports, at least three of them.
fn ports(text: &str, problems: &mut Vec<String>) -> Option<RangeInclusive<u16>> {
    let range = text
        .split_once('-')
        .and_then(|(a, b)| Some(a.trim().parse::<u16>().ok()?..=b.trim().parse::<u16>().ok()?))
        .filter(|r| *r.start() >= 1024 && r.end() >= r.start() && r.end() - r.start() >= 2);
    if range.is_none() {
        problems.push(format!(
            "provisioner.ports: {text:?} is not a range like 18600-18999 (at least three ports, from 1024)"
        ));
    }
    range
}
