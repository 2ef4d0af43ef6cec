//! Elastic Beanstalk's API response shapes, field for field as boto3 prints them (PascalCase),
//! and their constructors from the controller's model (`docs/controller.md`, "API"). Dates are
//! RFC 3339 in UTC with milliseconds. Extensions EB does not have are marked.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::health::{InstanceHealth, InstancesHealth};
use crate::metrics::{ApplicationMetrics, instance_metrics};
use crate::model::{
    AppVersion, EnvStatus, Environment, EventSeverity, Instance, Millis, StoredEvent, Tier,
};

/// EB: "Causes … 255 characters" at most, each.
pub const MAX_CAUSE_CHARS: usize = 255;

/// `2026-12-03T22:01:13.123Z`; the epoch for a time out of range.
pub fn date(ms: Millis) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// At most [`MAX_CAUSE_CHARS`] characters, cut on a character boundary, with `…` at the end
/// when cut.
pub fn truncate_cause(cause: &str) -> String {
    if cause.chars().count() <= MAX_CAUSE_CHARS {
        return cause.to_string();
    }
    let mut cut: String = cause.chars().take(MAX_CAUSE_CHARS - 1).collect();
    cut.push('…');
    cut
}

fn causes(all: &[String]) -> Vec<String> {
    all.iter().map(|c| truncate_cause(c)).collect()
}

/// `e-<id>`.
pub fn environment_id(id: i64) -> String {
    format!("e-{id}")
}

pub fn env_status(status: EnvStatus) -> &'static str {
    match status {
        EnvStatus::Launching => "Launching",
        EnvStatus::Ready => "Ready",
        EnvStatus::Updating => "Updating",
        EnvStatus::Terminating => "Terminating",
        EnvStatus::Terminated => "Terminated",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EnvironmentTier {
    /// `WebServer` or `Worker`.
    pub name: String,
    /// `Standard` or `SQS/HTTP`.
    #[serde(rename = "Type")]
    pub kind: String,
    pub version: String,
}

impl From<Tier> for EnvironmentTier {
    fn from(tier: Tier) -> Self {
        let (name, kind) = match tier {
            Tier::Web => ("WebServer", "Standard"),
            Tier::Worker => ("Worker", "SQS/HTTP"),
        };
        Self {
            name: name.into(),
            kind: kind.into(),
            version: "1.0".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EnvironmentDescription {
    pub environment_name: String,
    pub environment_id: String,
    pub application_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_label: Option<String>,
    pub status: String,
    /// The colour: Green, Yellow, Red, Grey.
    pub health: String,
    pub health_status: String,
    pub tier: EnvironmentTier,
    pub date_created: String,
    pub date_updated: String,
    #[serde(rename = "CNAME", default, skip_serializing_if = "Option::is_none")]
    pub cname: Option<String>,
    #[serde(
        rename = "EndpointURL",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub endpoint_url: Option<String>,
}

pub fn environment_description(
    env: &Environment,
    cname: Option<&str>,
    endpoint_url: Option<&str>,
) -> EnvironmentDescription {
    EnvironmentDescription {
        environment_name: env.name.clone(),
        environment_id: environment_id(env.id),
        application_name: env.application.clone(),
        version_label: env.expected_version.clone(),
        status: env_status(env.status).into(),
        health: env.health.color.clone(),
        health_status: env.health.status.clone(),
        tier: env.tier.into(),
        date_created: date(env.created_ms),
        date_updated: date(env.updated_ms),
        cname: cname.map(str::to_string),
        endpoint_url: endpoint_url.map(str::to_string),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeEnvironmentHealthResult {
    pub environment_name: String,
    pub health_status: String,
    pub status: String,
    pub color: String,
    pub causes: Vec<String>,
    pub application_metrics: ApplicationMetrics,
    pub instances_health: InstancesHealth,
    pub refreshed_at: String,
}

/// The environment's published health with the last evaluation's metrics and counts.
pub fn environment_health(
    env: &Environment,
    metrics: ApplicationMetrics,
    counts: InstancesHealth,
    refreshed_ms: Millis,
) -> DescribeEnvironmentHealthResult {
    DescribeEnvironmentHealthResult {
        environment_name: env.name.clone(),
        health_status: env.health.status.clone(),
        status: env_status(env.status).into(),
        color: env.health.color.clone(),
        causes: causes(&env.health.causes),
        application_metrics: metrics,
        instances_health: counts,
        refreshed_at: date(refreshed_ms),
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuUtilization {
    #[serde(rename = "User")]
    pub user: f64,
    #[serde(rename = "Nice")]
    pub nice: f64,
    #[serde(rename = "System")]
    pub system: f64,
    #[serde(rename = "Idle")]
    pub idle: f64,
    #[serde(rename = "IOWait")]
    pub io_wait: f64,
    #[serde(rename = "IRQ")]
    pub irq: f64,
    #[serde(rename = "SoftIRQ")]
    pub soft_irq: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SystemStats {
    #[serde(
        rename = "CPUUtilization",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub cpu_utilization: Option<CpuUtilization>,
    pub load_average: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceDeployment {
    pub version_label: String,
    pub deployment_id: i64,
    /// EB's `In Progress`, `Deployed`, `Failed`.
    pub status: String,
    pub deployment_time: String,
    /// Ours: the platform the host built the release for and its runtime
    /// (`python (Python 3.11.2)`), as the host reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SingleInstanceHealth {
    pub instance_id: String,
    pub health_status: String,
    pub color: String,
    pub causes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launched_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_metrics: Option<ApplicationMetrics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<SystemStats>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<InstanceDeployment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
}

/// One instance's health as `DescribeInstancesHealth` lists it. `deployments_by_serial` names
/// the controller deployment behind the serving release (else the host's own id is shown).
pub fn instance_health(
    instance: &Instance,
    health: &InstanceHealth,
    deployments_by_serial: &BTreeMap<u64, i64>,
) -> SingleInstanceHealth {
    let metrics = instance.metrics.as_ref();
    let system = metrics
        .filter(|m| m.cpu.is_some() || m.load_average.is_some())
        .map(|m| SystemStats {
            cpu_utilization: m.cpu.map(|c| CpuUtilization {
                user: c.user,
                nice: c.nice,
                system: c.system,
                idle: c.idle,
                io_wait: c.iowait,
                irq: c.irq,
                soft_irq: c.softirq,
            }),
            load_average: m.load_average.map(|l| l.to_vec()).unwrap_or_default(),
        });
    let deployment = instance.status.release.as_ref().map(|release| {
        let status = if instance.status.deployment.is_some() {
            "In Progress"
        } else {
            "Deployed"
        };
        InstanceDeployment {
            version_label: release.version_label.clone(),
            deployment_id: release
                .serial
                .and_then(|serial| deployments_by_serial.get(&serial).copied())
                .unwrap_or(release.deployment_id as i64),
            status: status.into(),
            deployment_time: release.deployed_at.clone(),
            platform: release.platform.as_ref().map(|p| match &p.version {
                Some(version) => format!("{} ({version})", p.platform),
                None => p.platform.clone(),
            }),
        }
    });
    SingleInstanceHealth {
        instance_id: instance.id.clone(),
        health_status: health.status.as_str().into(),
        color: health.status.color().as_str().into(),
        causes: causes(&health.causes),
        launched_at: Some(
            instance
                .facts
                .launched_at
                .clone()
                .unwrap_or_else(|| date(instance.enrolled_ms)),
        ),
        application_metrics: metrics.map(instance_metrics),
        system,
        deployment,
        availability_zone: instance.facts.availability_zone.clone(),
        instance_type: instance.facts.instance_type.clone(),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeInstancesHealthResult {
    pub instance_health_list: Vec<SingleInstanceHealth>,
    pub refreshed_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EventDescription {
    pub event_date: String,
    pub message: String,
    pub application_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_label: Option<String>,
    pub environment_name: String,
    /// Ours: the deployment that emitted the event (`d-<id>`); EB's is the API request's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// TRACE, DEBUG, INFO, WARN, ERROR, FATAL.
    pub severity: EventSeverity,
    /// Extension: the instance the event is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
}

pub fn event_description(
    event: &StoredEvent,
    application: &str,
    version_label: Option<&str>,
) -> EventDescription {
    let e = &event.event;
    EventDescription {
        event_date: date(e.time_ms),
        message: e.message.clone(),
        application_name: application.to_string(),
        version_label: version_label.map(str::to_string),
        environment_name: e.environment.clone(),
        request_id: e.deployment_id.map(|id| format!("d-{id}")),
        severity: e.severity,
        instance_id: e.instance_id.clone(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SourceBundle {
    #[serde(rename = "S3Bucket")]
    pub s3_bucket: String,
    #[serde(rename = "S3Key")]
    pub s3_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ApplicationVersionDescription {
    pub application_name: String,
    pub version_label: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Set for `s3://` sources, as EB shows them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_bundle: Option<SourceBundle>,
    /// Extension: where the bundle is, whatever its scheme.
    pub source_location: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    pub date_created: String,
    pub date_updated: String,
    /// EB's `Processed`: versions are usable once created.
    pub status: String,
}

pub fn application_version(version: &AppVersion) -> ApplicationVersionDescription {
    let source_bundle = version
        .source
        .strip_prefix("s3://")
        .and_then(|rest| rest.split_once('/'))
        .map(|(bucket, key)| SourceBundle {
            s3_bucket: bucket.to_string(),
            s3_key: key.to_string(),
        });
    ApplicationVersionDescription {
        application_name: version.application.clone(),
        version_label: version.label.clone(),
        description: version.description.clone(),
        source_bundle,
        source_location: version.source.clone(),
        sha256: version.sha256.clone(),
        date_created: date(version.created_ms),
        date_updated: date(version.created_ms),
        status: "Processed".into(),
    }
}

#[cfg(test)]
#[path = "eb_tests.rs"]
mod tests;
