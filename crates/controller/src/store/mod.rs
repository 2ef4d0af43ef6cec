//! The controller's storage behind one trait, with two sqlx backends that pass the same
//! conformance suite (`tests/store_conformance.rs`): SQLite, embedded, the default for one
//! controller; PostgreSQL 15+, for several stateless controller replicas behind one address.
//!
//! Rules every backend keeps:
//! - A report's writes ([`ReportWrite`]) are committed in groups (`commit_reports`), and the
//!   report path acknowledges events only after the group is committed.
//! - Events from hosts are idempotent on `(instance_id, source_id)`: a report sent twice
//!   stores its events once.
//! - `create_deployment` refuses a second unfinished deployment on one environment
//!   ([`StoreError::Conflict`]), atomically, so two replicas cannot both start one.
//! - `save_deployment` is a compare-and-set against the deployment the change was computed
//!   from, and a finished deployment is final: otherwise [`StoreError::Conflict`], so a step
//!   and an operator's abort computed from the same row cannot both land.
//! - Leases (`try_lease`) are rows with an owner and an expiry: whoever holds an
//!   environment's lease runs its deployment and its health roll-up.

pub(crate) mod codec;
pub mod postgres;
mod rows;
pub mod sqlite;

use std::future::Future;

use crate::model::*;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    /// A unique name taken, or an operation already running: the API answers 409.
    #[error("{0}")]
    Conflict(String),
    #[error("database: {0}")]
    Database(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        StoreError::Database(error.to_string())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Every read and write the controller makes. All times are [`Millis`].
pub trait Store: Send + Sync + 'static {
    // Applications and versions.
    fn create_application(&self, app: &Application)
    -> impl Future<Output = StoreResult<()>> + Send;
    fn applications(&self) -> impl Future<Output = StoreResult<Vec<Application>>> + Send;
    fn create_version(&self, version: &AppVersion) -> impl Future<Output = StoreResult<()>> + Send;
    fn version(
        &self,
        application: &str,
        label: &str,
    ) -> impl Future<Output = StoreResult<Option<AppVersion>>> + Send;
    fn versions(
        &self,
        application: &str,
    ) -> impl Future<Output = StoreResult<Vec<AppVersion>>> + Send;

    // Environments. `create_environment` assigns the id (the given one is ignored).
    fn create_environment(
        &self,
        env: &Environment,
    ) -> impl Future<Output = StoreResult<Environment>> + Send;
    fn environment(
        &self,
        name: &str,
    ) -> impl Future<Output = StoreResult<Option<Environment>>> + Send;
    fn environments(&self) -> impl Future<Output = StoreResult<Vec<Environment>>> + Send;
    /// Writes the whole row (by name), except `cname`: only creation and [`Store::set_cnames`]
    /// write it, so a row read before a swap cannot undo it.
    fn save_environment(&self, env: &Environment) -> impl Future<Output = StoreResult<()>> + Send;
    /// Writes only what the orchestrator owns (status, desired and expected versions and
    /// serial, health, `updated_ms`): an operator's option change written meanwhile is kept.
    fn save_environment_state(
        &self,
        env: &Environment,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Sets two environments' CNAMEs in one statement (a swap is never half done).
    fn set_cnames(
        &self,
        first: (&str, &str),
        second: (&str, &str),
    ) -> impl Future<Output = StoreResult<()>> + Send;

    // Enrollment and instances.
    fn create_enrollment_token(
        &self,
        token: &EnrollmentToken,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    fn revoke_enrollment_token(&self, id: &str) -> impl Future<Output = StoreResult<()>> + Send;
    /// In one transaction: checks the token (by hash) against `now_ms`, takes one use, and
    /// inserts the instance, or replaces the credential of an instance enrolled before from
    /// the same machine. The instance's `environment` is the token's.
    fn enroll(
        &self,
        token_hash: &str,
        instance: &Instance,
        now_ms: Millis,
    ) -> impl Future<Output = StoreResult<Result<Instance, EnrollRefusal>>> + Send;
    fn instance(&self, id: &str) -> impl Future<Output = StoreResult<Option<Instance>>> + Send;
    /// Every instance of an environment (revoked ones included), in enrollment order.
    fn instances(
        &self,
        environment: &str,
    ) -> impl Future<Output = StoreResult<Vec<Instance>>> + Send;
    /// Every instance of every environment (the report path's cache is filled from it).
    fn all_instances(&self) -> impl Future<Output = StoreResult<Vec<Instance>>> + Send;
    fn save_credential(
        &self,
        instance_id: &str,
        credential: &CredentialHashes,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Moves an enrolled instance into `environment` (the standby pool hands hosts out and
    /// takes them back). Reports never write an instance's environment, so none undoes it.
    fn move_instance(
        &self,
        instance_id: &str,
        environment: &str,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    fn revoke_instance(
        &self,
        instance_id: &str,
        now_ms: Millis,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// One group commit of reports: instance rows that changed, `last_seen_ms` of the rest,
    /// events (idempotent), command results. Returns when it is durable.
    fn commit_reports(
        &self,
        writes: &[ReportWrite],
    ) -> impl Future<Output = StoreResult<()>> + Send;

    // Events.
    /// The controller's own events (deployments, health transitions).
    fn append_events(&self, events: &[NewEvent]) -> impl Future<Output = StoreResult<()>> + Send;
    fn events(
        &self,
        filter: &EventFilter,
    ) -> impl Future<Output = StoreResult<Vec<StoredEvent>>> + Send;
    /// Deletes events older than `before_ms`; returns how many.
    fn prune_events(&self, before_ms: Millis) -> impl Future<Output = StoreResult<u64>> + Send;

    // Deployments.
    /// Inserts it and assigns its id, unless the environment has an unfinished one.
    fn create_deployment(
        &self,
        deployment: &Deployment,
    ) -> impl Future<Output = StoreResult<Deployment>> + Send;
    fn deployment(&self, id: i64) -> impl Future<Output = StoreResult<Option<Deployment>>> + Send;
    /// Newest first.
    fn deployments(
        &self,
        environment: &str,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<Deployment>>> + Send;
    /// The environment's unfinished deployment, if any.
    fn active_deployment(
        &self,
        environment: &str,
    ) -> impl Future<Output = StoreResult<Option<Deployment>>> + Send;
    /// Saves `deployment` if the stored one is still `before` (its status and members) and
    /// unfinished; else [`StoreError::Conflict`].
    fn save_deployment(
        &self,
        deployment: &Deployment,
        before: &Deployment,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    // Commands.
    fn queue_command(
        &self,
        command: &QueuedCommand,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// The instance's commands without a stored result, oldest first.
    fn pending_commands(
        &self,
        instance_id: &str,
    ) -> impl Future<Output = StoreResult<Vec<QueuedCommand>>> + Send;
    fn command(&self, id: &str) -> impl Future<Output = StoreResult<Option<QueuedCommand>>> + Send;

    // Operator tokens (sha256 hex).
    fn add_admin_token(
        &self,
        hash: &str,
        created_ms: Millis,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    fn is_admin_token(&self, hash: &str) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Takes or renews the lease `name` for `owner` until `until_ms`, if it is free, expired
    /// at `now_ms`, or already `owner`'s. Returns whether `owner` holds it.
    fn try_lease(
        &self,
        name: &str,
        owner: &str,
        now_ms: Millis,
        until_ms: Millis,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// The secret named `name` that every replica shares (the bundle URLs' signing key):
    /// `candidate` becomes it when none is stored yet, else the stored one is returned.
    fn shared_secret(
        &self,
        name: &str,
        candidate: &str,
    ) -> impl Future<Output = StoreResult<String>> + Send;

    /// Rows per table and the database's size in bytes, for `/metrics` and the benchmark.
    fn footprint(&self) -> impl Future<Output = StoreResult<Footprint>> + Send;
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Footprint {
    pub rows: std::collections::BTreeMap<String, u64>,
    pub bytes: u64,
}
