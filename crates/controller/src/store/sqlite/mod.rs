//! The embedded backend: one SQLite file in WAL mode. Every write goes through one dedicated
//! connection (a pool of one), so writers queue in the pool instead of fighting over the file
//! lock, and each write transaction starts with `BEGIN IMMEDIATE`: a deferred transaction that
//! reads and then writes can fail with `SQLITE_BUSY_SNAPSHOT` without calling the busy handler.
//! Reads use a separate pool of read-only connections, which WAL lets run beside the writer.

mod apps;
mod deployments;
mod events;
mod instances;

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use super::{Footprint, Store, StoreResult};
use crate::model::*;

/// How long a connection waits for a lock another process holds (a backup, the sqlite3 shell)
/// before failing with "database is locked". Within this process the write pool queues writers.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
const READERS: u32 = 4;

#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `path` and brings its schema up to date.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL with NORMAL is durable against process crashes, and loses at most the last
            // commits on power loss: the documented trade-off for WAL, far fewer fsyncs.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            // A writer never sits idle-closed: reopening it would re-run the pragmas.
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.clone())
            .await?;
        // Migrations before the readers open: a read-only connection cannot create the WAL
        // files, and must not see a half-made schema.
        sqlx::migrate!("migrations/sqlite")
            .run(&writer)
            .await
            .map_err(|e| super::StoreError::Database(format!("migrations: {e}")))?;
        let reader = SqlitePoolOptions::new()
            .max_connections(READERS)
            .connect_with(options.read_only(true))
            .await?;
        Ok(Self { writer, reader })
    }

    /// A write transaction on the single writer connection, begun IMMEDIATE so the write lock
    /// is taken up front. Dropping it without `commit` rolls it back (sqlx queues the rollback
    /// on the connection), so a cancelled request cannot leave the writer inside a transaction.
    async fn write(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }
}

impl Store for SqliteStore {
    async fn create_application(&self, app: &Application) -> StoreResult<()> {
        apps::create_application(self, app).await
    }
    async fn applications(&self) -> StoreResult<Vec<Application>> {
        apps::applications(self).await
    }
    async fn create_version(&self, version: &AppVersion) -> StoreResult<()> {
        apps::create_version(self, version).await
    }
    async fn version(&self, application: &str, label: &str) -> StoreResult<Option<AppVersion>> {
        apps::version(self, application, label).await
    }
    async fn versions(&self, application: &str) -> StoreResult<Vec<AppVersion>> {
        apps::versions(self, application).await
    }
    async fn create_environment(&self, env: &Environment) -> StoreResult<Environment> {
        apps::create_environment(self, env).await
    }
    async fn environment(&self, name: &str) -> StoreResult<Option<Environment>> {
        apps::environment(self, name).await
    }
    async fn environments(&self) -> StoreResult<Vec<Environment>> {
        apps::environments(self).await
    }
    async fn save_environment(&self, env: &Environment) -> StoreResult<()> {
        apps::save_environment(self, env).await
    }
    async fn save_environment_state(&self, env: &Environment) -> StoreResult<()> {
        apps::save_environment_state(self, env).await
    }
    async fn set_cnames(&self, first: (&str, &str), second: (&str, &str)) -> StoreResult<()> {
        apps::set_cnames(self, first, second).await
    }
    async fn create_enrollment_token(&self, token: &EnrollmentToken) -> StoreResult<()> {
        instances::create_enrollment_token(self, token).await
    }
    async fn revoke_enrollment_token(&self, id: &str) -> StoreResult<()> {
        instances::revoke_enrollment_token(self, id).await
    }
    async fn enroll(
        &self,
        token_hash: &str,
        instance: &Instance,
        now_ms: Millis,
    ) -> StoreResult<Result<Instance, EnrollRefusal>> {
        instances::enroll(self, token_hash, instance, now_ms).await
    }
    async fn instance(&self, id: &str) -> StoreResult<Option<Instance>> {
        instances::instance(self, id).await
    }
    async fn instances(&self, environment: &str) -> StoreResult<Vec<Instance>> {
        instances::instances(self, Some(environment)).await
    }
    async fn all_instances(&self) -> StoreResult<Vec<Instance>> {
        instances::instances(self, None).await
    }
    async fn save_credential(
        &self,
        instance_id: &str,
        credential: &CredentialHashes,
    ) -> StoreResult<()> {
        instances::save_credential(self, instance_id, credential).await
    }
    async fn move_instance(&self, instance_id: &str, environment: &str) -> StoreResult<()> {
        instances::move_instance(self, instance_id, environment).await
    }
    async fn revoke_instance(&self, instance_id: &str, now_ms: Millis) -> StoreResult<()> {
        instances::revoke_instance(self, instance_id, now_ms).await
    }
    async fn commit_reports(&self, writes: &[ReportWrite]) -> StoreResult<()> {
        instances::commit_reports(self, writes).await
    }
    async fn append_events(&self, events: &[NewEvent]) -> StoreResult<()> {
        let mut tx = self.write().await?;
        events::insert(&mut tx, events.iter()).await?;
        Ok(tx.commit().await?)
    }
    async fn events(&self, filter: &EventFilter) -> StoreResult<Vec<StoredEvent>> {
        events::select(self, filter).await
    }
    async fn prune_events(&self, before_ms: Millis) -> StoreResult<u64> {
        events::prune(self, before_ms).await
    }
    async fn create_deployment(&self, deployment: &Deployment) -> StoreResult<Deployment> {
        deployments::create(self, deployment).await
    }
    async fn deployment(&self, id: i64) -> StoreResult<Option<Deployment>> {
        deployments::by_id(self, id).await
    }
    async fn deployments(&self, environment: &str, limit: u32) -> StoreResult<Vec<Deployment>> {
        deployments::list(self, environment, limit).await
    }
    async fn active_deployment(&self, environment: &str) -> StoreResult<Option<Deployment>> {
        deployments::active(self, environment).await
    }
    async fn save_deployment(
        &self,
        deployment: &Deployment,
        before: &Deployment,
    ) -> StoreResult<()> {
        deployments::save(self, deployment, before).await
    }
    async fn queue_command(&self, command: &QueuedCommand) -> StoreResult<()> {
        deployments::queue_command(self, command).await
    }
    async fn pending_commands(&self, instance_id: &str) -> StoreResult<Vec<QueuedCommand>> {
        deployments::pending_commands(self, instance_id).await
    }
    async fn command(&self, id: &str) -> StoreResult<Option<QueuedCommand>> {
        deployments::command(self, id).await
    }
    async fn add_admin_token(&self, hash: &str, created_ms: Millis) -> StoreResult<()> {
        apps::add_admin_token(self, hash, created_ms).await
    }
    async fn is_admin_token(&self, hash: &str) -> StoreResult<bool> {
        apps::is_admin_token(self, hash).await
    }
    async fn try_lease(
        &self,
        name: &str,
        owner: &str,
        now_ms: Millis,
        until_ms: Millis,
    ) -> StoreResult<bool> {
        apps::try_lease(self, name, owner, now_ms, until_ms).await
    }
    async fn shared_secret(&self, name: &str, candidate: &str) -> StoreResult<String> {
        apps::shared_secret(self, name, candidate).await
    }
    async fn footprint(&self) -> StoreResult<Footprint> {
        apps::footprint(self).await
    }
}
