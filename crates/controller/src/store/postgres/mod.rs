//! The backend for several controller replicas: PostgreSQL 15+. One pool; transactions are
//! READ COMMITTED, and every rule that must hold across replicas is enforced by the database
//! itself (a partial unique index for "one unfinished deployment", row locks for enrollment,
//! an upsert with a condition for leases, an advisory lock ordering event seqs).

mod apps;
mod deployments;
mod events;
mod instances;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use super::{Footprint, Store, StoreError, StoreResult};
use crate::model::*;

#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects and brings the schema up to date. Migrations take PostgreSQL's advisory lock,
    /// so replicas starting together apply them once.
    pub async fn connect(url: &str, max_connections: u32) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .connect(url)
            .await?;
        sqlx::migrate!("migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Database(format!("migrations: {e}")))?;
        Ok(Self { pool })
    }
}

impl Store for PostgresStore {
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
        let mut tx = self.pool.begin().await?;
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
