//! Rows as both backends read them and columns as both bind them. The row structs derive
//! `FromRow` generically, so one struct decodes a SQLite row and a PostgreSQL row (which
//! selects its JSONB columns `::text`).

use super::StoreResult;
use super::codec::{from_json, from_name, int, json, name, severity_from_rank, uint};
use crate::model::*;

#[derive(sqlx::FromRow)]
pub(crate) struct ApplicationRow {
    name: String,
    description: String,
    created_ms: i64,
}

impl From<ApplicationRow> for Application {
    fn from(row: ApplicationRow) -> Self {
        Application {
            name: row.name,
            description: row.description,
            created_ms: row.created_ms,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct VersionRow {
    application: String,
    label: String,
    source: String,
    sha256: Option<String>,
    description: String,
    size_bytes: Option<i64>,
    created_ms: i64,
}

impl VersionRow {
    pub(crate) fn into_model(self) -> StoreResult<AppVersion> {
        Ok(AppVersion {
            application: self.application,
            label: self.label,
            source: self.source,
            sha256: self.sha256,
            description: self.description,
            size_bytes: self.size_bytes.map(uint).transpose()?,
            created_ms: self.created_ms,
        })
    }
}

/// An environment's columns, encoded for binding.
pub(crate) struct EnvironmentCols {
    pub tier: String,
    pub options: String,
    pub status: String,
    pub desired_serial: i64,
    pub health: String,
}

impl EnvironmentCols {
    pub(crate) fn new(env: &Environment) -> StoreResult<Self> {
        Ok(Self {
            tier: name(&env.tier)?,
            options: json(&env.options)?,
            status: name(&env.status)?,
            desired_serial: int(env.desired_serial)?,
            health: json(&env.health)?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct EnvironmentRow {
    id: i64,
    name: String,
    application: String,
    tier: String,
    options: String,
    status: String,
    expected_version: Option<String>,
    expected_deployment: Option<i64>,
    desired_serial: i64,
    desired_version: Option<String>,
    cname: Option<String>,
    health: String,
    created_ms: i64,
    updated_ms: i64,
}

impl EnvironmentRow {
    pub(crate) fn into_model(self) -> StoreResult<Environment> {
        Ok(Environment {
            id: self.id,
            name: self.name,
            application: self.application,
            tier: from_name(&self.tier, "tier")?,
            options: from_json(&self.options, "options")?,
            status: from_name(&self.status, "status")?,
            expected_version: self.expected_version,
            expected_deployment: self.expected_deployment,
            desired_serial: uint(self.desired_serial)?,
            desired_version: self.desired_version,
            cname: self.cname,
            health: from_json(&self.health, "health")?,
            created_ms: self.created_ms,
            updated_ms: self.updated_ms,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct TokenRow {
    pub environment: String,
    pub uses_left: i64,
    pub expires_ms: i64,
    pub revoked: bool,
}

impl TokenRow {
    /// Why the token cannot enroll at `now_ms`, checked in the order an operator would fix it.
    pub(crate) fn refusal(&self, now_ms: Millis) -> Option<EnrollRefusal> {
        if self.revoked {
            Some(EnrollRefusal::Revoked)
        } else if self.expires_ms <= now_ms {
            Some(EnrollRefusal::Expired)
        } else if self.uses_left <= 0 {
            Some(EnrollRefusal::UsedUp)
        } else {
            None
        }
    }
}

/// An instance's columns, encoded for binding.
pub(crate) struct InstanceCols {
    pub facts: String,
    pub credential: String,
    pub status: String,
    pub metrics: Option<String>,
    pub applied_serial: i64,
    pub events_cursor: i64,
    pub desired_results: String,
}

impl InstanceCols {
    pub(crate) fn new(instance: &Instance) -> StoreResult<Self> {
        Ok(Self {
            facts: json(&instance.facts)?,
            credential: json(&instance.credential)?,
            status: json(&instance.status)?,
            metrics: instance.metrics.as_ref().map(json).transpose()?,
            applied_serial: int(instance.applied_serial)?,
            events_cursor: int(instance.events_cursor)?,
            desired_results: json(&instance.desired_results)?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct InstanceRow {
    id: String,
    environment: String,
    enrolled_ms: i64,
    machine_fingerprint: String,
    facts: String,
    agent_version: String,
    credential: String,
    revoked_ms: Option<i64>,
    last_seen_ms: Option<i64>,
    status: String,
    metrics: Option<String>,
    applied_serial: i64,
    events_cursor: i64,
    desired_results: String,
}

impl InstanceRow {
    pub(crate) fn into_model(self) -> StoreResult<Instance> {
        Ok(Instance {
            id: self.id,
            environment: self.environment,
            enrolled_ms: self.enrolled_ms,
            machine_fingerprint: self.machine_fingerprint,
            facts: from_json(&self.facts, "facts")?,
            agent_version: self.agent_version,
            credential: from_json(&self.credential, "credential")?,
            revoked_ms: self.revoked_ms,
            last_seen_ms: self.last_seen_ms,
            status: from_json(&self.status, "status")?,
            metrics: self.metrics.map(|m| from_json(&m, "metrics")).transpose()?,
            applied_serial: uint(self.applied_serial)?,
            events_cursor: uint(self.events_cursor)?,
            desired_results: from_json(&self.desired_results, "desired_results")?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct EventRow {
    seq: i64,
    environment: String,
    instance_id: Option<String>,
    source_id: Option<i64>,
    time_ms: i64,
    severity: i64,
    source: String,
    message: String,
    deployment_id: Option<i64>,
}

impl EventRow {
    pub(crate) fn into_model(self) -> StoreResult<StoredEvent> {
        Ok(StoredEvent {
            seq: self.seq,
            event: NewEvent {
                environment: self.environment,
                instance_id: self.instance_id,
                source_id: self.source_id.map(uint).transpose()?,
                time_ms: self.time_ms,
                severity: severity_from_rank(self.severity)?,
                source: self.source,
                message: self.message,
                deployment_id: self.deployment_id,
            },
        })
    }
}

/// A deployment's columns, encoded for binding.
pub(crate) struct DeploymentCols {
    pub kind: String,
    pub serial: i64,
    pub status: String,
    pub members: String,
}

impl DeploymentCols {
    pub(crate) fn new(deployment: &Deployment) -> StoreResult<Self> {
        Ok(Self {
            kind: name(&deployment.kind)?,
            serial: int(deployment.serial)?,
            status: name(&deployment.status)?,
            members: json(&deployment.members)?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct DeploymentRow {
    id: i64,
    environment: String,
    kind: String,
    version_label: Option<String>,
    serial: i64,
    policy: String,
    status: String,
    created_ms: i64,
    finished_ms: Option<i64>,
    message: Option<String>,
    members: String,
}

impl DeploymentRow {
    pub(crate) fn into_model(self) -> StoreResult<Deployment> {
        Ok(Deployment {
            id: self.id,
            environment: self.environment,
            kind: from_name(&self.kind, "kind")?,
            version_label: self.version_label,
            serial: uint(self.serial)?,
            policy: self.policy,
            status: from_name(&self.status, "status")?,
            created_ms: self.created_ms,
            finished_ms: self.finished_ms,
            message: self.message,
            members: from_json(&self.members, "members")?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct CommandRow {
    id: String,
    instance_id: String,
    kind: String,
    deployment_id: Option<i64>,
    created_ms: i64,
    result: Option<String>,
}

impl CommandRow {
    pub(crate) fn into_model(self) -> StoreResult<QueuedCommand> {
        Ok(QueuedCommand {
            id: self.id,
            instance_id: self.instance_id,
            kind: from_name(&self.kind, "kind")?,
            deployment_id: self.deployment_id,
            created_ms: self.created_ms,
            result: self.result.map(|r| from_json(&r, "result")).transpose()?,
        })
    }
}
