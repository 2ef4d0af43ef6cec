//! Applications, versions, environments, operator tokens, leases and the footprint. Single
//! statements run on the writer pool without an explicit transaction: one statement is its own
//! transaction, and the single writer connection already orders them.

use super::SqliteStore;
use crate::model::*;
use crate::store::codec::{self};
use crate::store::rows::{ApplicationRow, EnvironmentCols, EnvironmentRow, VersionRow};
use crate::store::{Footprint, StoreError, StoreResult};

pub(super) async fn create_application(store: &SqliteStore, app: &Application) -> StoreResult<()> {
    sqlx::query("INSERT INTO applications (name, description, created_ms) VALUES ($1, $2, $3)")
        .bind(&app.name)
        .bind(&app.description)
        .bind(app.created_ms)
        .execute(&store.writer)
        .await
        .map_err(|e| {
            codec::insert_error(e, format!("Application {} already exists.", app.name), "")
        })?;
    Ok(())
}

pub(super) async fn applications(store: &SqliteStore) -> StoreResult<Vec<Application>> {
    let rows: Vec<ApplicationRow> =
        sqlx::query_as("SELECT name, description, created_ms FROM applications ORDER BY name")
            .fetch_all(&store.reader)
            .await?;
    Ok(rows.into_iter().map(Application::from).collect())
}

pub(super) async fn create_version(store: &SqliteStore, v: &AppVersion) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO app_versions \
         (application, label, source, sha256, description, size_bytes, created_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&v.application)
    .bind(&v.label)
    .bind(&v.source)
    .bind(&v.sha256)
    .bind(&v.description)
    .bind(v.size_bytes.map(codec::int).transpose()?)
    .bind(v.created_ms)
    .execute(&store.writer)
    .await
    .map_err(|e| {
        codec::insert_error(
            e,
            format!("Application Version {} already exists.", v.label),
            &format!("application {}", v.application),
        )
    })?;
    Ok(())
}

const VERSION_COLUMNS: &str =
    "application, label, source, sha256, description, size_bytes, created_ms";

pub(super) async fn version(
    store: &SqliteStore,
    application: &str,
    label: &str,
) -> StoreResult<Option<AppVersion>> {
    let sql =
        format!("SELECT {VERSION_COLUMNS} FROM app_versions WHERE application = $1 AND label = $2");
    let row: Option<VersionRow> = sqlx::query_as(&sql)
        .bind(application)
        .bind(label)
        .fetch_optional(&store.reader)
        .await?;
    row.map(VersionRow::into_model).transpose()
}

pub(super) async fn versions(
    store: &SqliteStore,
    application: &str,
) -> StoreResult<Vec<AppVersion>> {
    let sql = format!(
        "SELECT {VERSION_COLUMNS} FROM app_versions WHERE application = $1 \
         ORDER BY created_ms DESC, label"
    );
    let rows: Vec<VersionRow> = sqlx::query_as(&sql)
        .bind(application)
        .fetch_all(&store.reader)
        .await?;
    codec::all(rows, VersionRow::into_model)
}

const ENV_COLUMNS: &str = "id, name, application, tier, options, status, expected_version, \
     expected_deployment, desired_serial, desired_version, health, created_ms, updated_ms, cname";

pub(super) async fn create_environment(
    store: &SqliteStore,
    env: &Environment,
) -> StoreResult<Environment> {
    let cols = EnvironmentCols::new(env)?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO environments (name, application, tier, options, status, expected_version, \
         expected_deployment, desired_serial, health, created_ms, updated_ms, desired_version, cname) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
    )
    .bind(&env.name)
    .bind(&env.application)
    .bind(&cols.tier)
    .bind(&cols.options)
    .bind(&cols.status)
    .bind(&env.expected_version)
    .bind(env.expected_deployment)
    .bind(cols.desired_serial)
    .bind(&cols.health)
    .bind(env.created_ms)
    .bind(env.updated_ms)
    .bind(&env.desired_version)
    .bind(&env.cname)
    .fetch_one(&store.writer)
    .await
    .map_err(|e| {
        codec::insert_error(
            e,
            format!("Environment {} already exists.", env.name),
            &format!("application {}", env.application),
        )
    })?;
    Ok(Environment { id, ..env.clone() })
}

pub(super) async fn environment(
    store: &SqliteStore,
    name: &str,
) -> StoreResult<Option<Environment>> {
    let sql = format!("SELECT {ENV_COLUMNS} FROM environments WHERE name = $1");
    let row: Option<EnvironmentRow> = sqlx::query_as(&sql)
        .bind(name)
        .fetch_optional(&store.reader)
        .await?;
    row.map(EnvironmentRow::into_model).transpose()
}

pub(super) async fn environments(store: &SqliteStore) -> StoreResult<Vec<Environment>> {
    let sql = format!("SELECT {ENV_COLUMNS} FROM environments ORDER BY id");
    let rows: Vec<EnvironmentRow> = sqlx::query_as(&sql).fetch_all(&store.reader).await?;
    codec::all(rows, EnvironmentRow::into_model)
}

pub(super) async fn set_cnames(
    store: &SqliteStore,
    (first, first_cname): (&str, &str),
    (second, second_cname): (&str, &str),
) -> StoreResult<()> {
    let mut tx = store.writer.begin().await?;
    let done = sqlx::query(
        "UPDATE environments SET cname = CASE WHEN name = $1 THEN $2 ELSE $4 END \
         WHERE name = $1 OR name = $3",
    )
    .bind(first)
    .bind(first_cname)
    .bind(second)
    .bind(second_cname)
    .execute(&mut *tx)
    .await?;
    // Both or neither: an unknown name leaves the other environment's CNAME as it was.
    if done.rows_affected() != 2 {
        tx.rollback().await?;
        return Err(StoreError::NotFound(format!(
            "environments {first} and {second}"
        )));
    }
    tx.commit().await?;
    Ok(())
}

pub(super) async fn save_environment(store: &SqliteStore, env: &Environment) -> StoreResult<()> {
    let cols = EnvironmentCols::new(env)?;
    let done = sqlx::query(
        "UPDATE environments SET application = $2, tier = $3, options = $4, status = $5, \
         expected_version = $6, expected_deployment = $7, desired_serial = $8, health = $9, \
         created_ms = $10, updated_ms = $11, desired_version = $12 WHERE name = $1",
    )
    .bind(&env.name)
    .bind(&env.application)
    .bind(&cols.tier)
    .bind(&cols.options)
    .bind(&cols.status)
    .bind(&env.expected_version)
    .bind(env.expected_deployment)
    .bind(cols.desired_serial)
    .bind(&cols.health)
    .bind(env.created_ms)
    .bind(env.updated_ms)
    .bind(&env.desired_version)
    .execute(&store.writer)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("environment {}", env.name)));
    }
    Ok(())
}

pub(super) async fn save_environment_state(
    store: &SqliteStore,
    env: &Environment,
) -> StoreResult<()> {
    let cols = EnvironmentCols::new(env)?;
    let done = sqlx::query(
        "UPDATE environments SET status = $2, expected_version = $3, expected_deployment = $4, \
         desired_serial = $5, health = $6, updated_ms = $7, desired_version = $8 WHERE name = $1",
    )
    .bind(&env.name)
    .bind(&cols.status)
    .bind(&env.expected_version)
    .bind(env.expected_deployment)
    .bind(cols.desired_serial)
    .bind(&cols.health)
    .bind(env.updated_ms)
    .bind(&env.desired_version)
    .execute(&store.writer)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("environment {}", env.name)));
    }
    Ok(())
}

pub(super) async fn add_admin_token(
    store: &SqliteStore,
    hash: &str,
    created_ms: Millis,
) -> StoreResult<()> {
    // Adding a token twice is harmless, so it is not a conflict.
    sqlx::query(
        "INSERT INTO admin_tokens (hash, created_ms) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(hash)
    .bind(created_ms)
    .execute(&store.writer)
    .await?;
    Ok(())
}

pub(super) async fn is_admin_token(store: &SqliteStore, hash: &str) -> StoreResult<bool> {
    let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM admin_tokens WHERE hash = $1")
        .bind(hash)
        .fetch_optional(&store.reader)
        .await?;
    Ok(found.is_some())
}

pub(super) async fn try_lease(
    store: &SqliteStore,
    name: &str,
    owner: &str,
    now_ms: Millis,
    until_ms: Millis,
) -> StoreResult<bool> {
    // One statement: the upsert's WHERE decides, so there is no read-then-write window. When
    // the lease is someone else's and still valid, DO UPDATE does nothing and RETURNING is empty.
    let held: Option<String> = sqlx::query_scalar(
        "INSERT INTO leases (name, owner, until_ms) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until_ms = excluded.until_ms \
         WHERE leases.until_ms < $4 OR leases.owner = excluded.owner \
         RETURNING owner",
    )
    .bind(name)
    .bind(owner)
    .bind(until_ms)
    .bind(now_ms)
    .fetch_optional(&store.writer)
    .await?;
    Ok(held.is_some())
}

pub(super) async fn shared_secret(
    store: &SqliteStore,
    name: &str,
    candidate: &str,
) -> StoreResult<String> {
    // Insert-if-absent, then read: replicas starting together all end up with the first
    // one's value.
    sqlx::query(
        "INSERT INTO shared_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(candidate)
    .execute(&store.writer)
    .await?;
    Ok(
        sqlx::query_scalar("SELECT value FROM shared_secrets WHERE name = $1")
            .bind(name)
            .fetch_one(&store.writer)
            .await?,
    )
}

pub(super) async fn footprint(store: &SqliteStore) -> StoreResult<Footprint> {
    let mut footprint = Footprint::default();
    for table in codec::TABLES {
        let count: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&store.reader)
            .await?;
        footprint
            .rows
            .insert((*table).to_owned(), codec::uint(count)?);
    }
    let bytes: i64 = sqlx::query_scalar(
        "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
    )
    .fetch_one(&store.reader)
    .await?;
    footprint.bytes = codec::uint(bytes)?;
    Ok(footprint)
}
