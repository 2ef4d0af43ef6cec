//! Deployments and queued commands. "One unfinished deployment per environment" is the partial
//! unique index `deployments_one_unfinished`: two replicas inserting at once serialize on the
//! index entry, the second waits for the first to commit and then gets a unique violation, so
//! no interleaving can start two (a check-then-insert would need SERIALIZABLE to be safe).

use super::PostgresStore;
use crate::model::*;
use crate::store::codec::{self};
use crate::store::rows::{CommandRow, DeploymentCols, DeploymentRow};
use crate::store::{StoreError, StoreResult};

const COLUMNS: &str = "id, environment, kind, version_label, serial, policy, status, \
     created_ms, finished_ms, message, members::text AS members";

pub(super) async fn create(store: &PostgresStore, d: &Deployment) -> StoreResult<Deployment> {
    let cols = DeploymentCols::new(d)?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO deployments (environment, kind, version_label, serial, policy, status, \
         created_ms, finished_ms, message, members) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb) RETURNING id",
    )
    .bind(&d.environment)
    .bind(&cols.kind)
    .bind(&d.version_label)
    .bind(cols.serial)
    .bind(&d.policy)
    .bind(&cols.status)
    .bind(d.created_ms)
    .bind(d.finished_ms)
    .bind(&d.message)
    .bind(&cols.members)
    .fetch_one(&store.pool)
    .await
    .map_err(|e| unfinished_error(e, &d.environment))?;
    Ok(Deployment { id, ..d.clone() })
}

fn unfinished_error(error: sqlx::Error, environment: &str) -> StoreError {
    if codec::is_unique_violation(&error) {
        codec::busy_environment(environment)
    } else if codec::is_foreign_key_violation(&error) {
        StoreError::NotFound(format!("environment {environment}"))
    } else {
        error.into()
    }
}

pub(super) async fn by_id(store: &PostgresStore, id: i64) -> StoreResult<Option<Deployment>> {
    let sql = format!("SELECT {COLUMNS} FROM deployments WHERE id = $1");
    let row: Option<DeploymentRow> = sqlx::query_as(&sql)
        .bind(id)
        .fetch_optional(&store.pool)
        .await?;
    row.map(DeploymentRow::into_model).transpose()
}

pub(super) async fn list(
    store: &PostgresStore,
    environment: &str,
    limit: u32,
) -> StoreResult<Vec<Deployment>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM deployments WHERE environment = $1 ORDER BY id DESC LIMIT $2"
    );
    let rows: Vec<DeploymentRow> = sqlx::query_as(&sql)
        .bind(environment)
        .bind(codec::limit(limit))
        .fetch_all(&store.pool)
        .await?;
    codec::all(rows, DeploymentRow::into_model)
}

pub(super) async fn active(
    store: &PostgresStore,
    environment: &str,
) -> StoreResult<Option<Deployment>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM deployments \
         WHERE environment = $1 AND status IN ('Pending', 'InProgress', 'Failing', 'Aborting')"
    );
    let row: Option<DeploymentRow> = sqlx::query_as(&sql)
        .bind(environment)
        .fetch_optional(&store.pool)
        .await?;
    row.map(DeploymentRow::into_model).transpose()
}

pub(super) async fn save(
    store: &PostgresStore,
    d: &Deployment,
    before: &Deployment,
) -> StoreResult<()> {
    let cols = DeploymentCols::new(d)?;
    let was = DeploymentCols::new(before)?;
    // The environment is not rewritten: a deployment belongs to the one it was created for.
    // Compare-and-set on what the change was computed from: a step and an operator's abort
    // computed from the same row cannot both land, and a finished deployment is final.
    let done = sqlx::query(
        "UPDATE deployments SET kind = $2, version_label = $3, serial = $4, policy = $5, \
         status = $6, created_ms = $7, finished_ms = $8, message = $9, members = $10::jsonb \
         WHERE id = $1 AND status IN ('Pending', 'InProgress', 'Failing', 'Aborting') \
         AND status = $11 AND members = $12::jsonb",
    )
    .bind(d.id)
    .bind(&cols.kind)
    .bind(&d.version_label)
    .bind(cols.serial)
    .bind(&d.policy)
    .bind(&cols.status)
    .bind(d.created_ms)
    .bind(d.finished_ms)
    .bind(&d.message)
    .bind(&cols.members)
    .bind(&was.status)
    .bind(&was.members)
    .execute(&store.pool)
    .await
    .map_err(|e| unfinished_error(e, &d.environment))?;
    if done.rows_affected() == 0 {
        return Err(match by_id(store, d.id).await? {
            Some(stored) if stored.status.is_finished() => {
                StoreError::Conflict(format!("deployment {} is finished", d.id))
            }
            Some(_) => StoreError::Conflict(format!("deployment {} changed meanwhile", d.id)),
            None => StoreError::NotFound(format!("deployment {}", d.id)),
        });
    }
    Ok(())
}

const COMMAND_COLUMNS: &str =
    "id, instance_id, kind, deployment_id, created_ms, result::text AS result";

pub(super) async fn queue_command(store: &PostgresStore, c: &QueuedCommand) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO commands (id, instance_id, kind, deployment_id, created_ms, result) \
         VALUES ($1, $2, $3, $4, $5, $6::jsonb)",
    )
    .bind(&c.id)
    .bind(&c.instance_id)
    .bind(codec::name(&c.kind)?)
    .bind(c.deployment_id)
    .bind(c.created_ms)
    .bind(c.result.as_ref().map(codec::json).transpose()?)
    .execute(&store.pool)
    .await
    .map_err(|e| {
        codec::insert_error(
            e,
            format!("command {} already exists", c.id),
            &format!("instance {}", c.instance_id),
        )
    })?;
    Ok(())
}

pub(super) async fn pending_commands(
    store: &PostgresStore,
    instance_id: &str,
) -> StoreResult<Vec<QueuedCommand>> {
    let sql = format!(
        "SELECT {COMMAND_COLUMNS} FROM commands WHERE instance_id = $1 AND result IS NULL \
         ORDER BY created_ms, id"
    );
    let rows: Vec<CommandRow> = sqlx::query_as(&sql)
        .bind(instance_id)
        .fetch_all(&store.pool)
        .await?;
    codec::all(rows, CommandRow::into_model)
}

pub(super) async fn command(store: &PostgresStore, id: &str) -> StoreResult<Option<QueuedCommand>> {
    let sql = format!("SELECT {COMMAND_COLUMNS} FROM commands WHERE id = $1");
    let row: Option<CommandRow> = sqlx::query_as(&sql)
        .bind(id)
        .fetch_optional(&store.pool)
        .await?;
    row.map(CommandRow::into_model).transpose()
}
