//! Enrollment tokens, enrollment, instances and the reports' group commit.

use sqlx::SqliteConnection;

use super::{SqliteStore, events};
use crate::model::*;
use crate::store::codec::{self, MergedReports};
use crate::store::rows::{InstanceCols, InstanceRow, TokenRow};
use crate::store::{StoreError, StoreResult};

pub(super) async fn create_enrollment_token(
    store: &SqliteStore,
    token: &EnrollmentToken,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO enrollment_tokens \
         (id, hash, environment, uses_left, expires_ms, created_ms, revoked) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&token.id)
    .bind(&token.hash)
    .bind(&token.environment)
    .bind(i64::from(token.uses_left))
    .bind(token.expires_ms)
    .bind(token.created_ms)
    .bind(token.revoked)
    .execute(&store.writer)
    .await
    .map_err(|e| {
        codec::insert_error(
            e,
            format!("enrollment token {} already exists", token.id),
            &format!("environment {}", token.environment),
        )
    })?;
    Ok(())
}

pub(super) async fn revoke_enrollment_token(store: &SqliteStore, id: &str) -> StoreResult<()> {
    let done = sqlx::query("UPDATE enrollment_tokens SET revoked = 1 WHERE id = $1")
        .bind(id)
        .execute(&store.writer)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("enrollment token {id}")));
    }
    Ok(())
}

const INSTANCE_COLUMNS: &str = "id, environment, enrolled_ms, machine_fingerprint, facts, \
     agent_version, credential, revoked_ms, last_seen_ms, status, metrics, applied_serial, \
     events_cursor, desired_results";

pub(super) async fn enroll(
    store: &SqliteStore,
    token_hash: &str,
    instance: &Instance,
    now_ms: Millis,
) -> StoreResult<Result<Instance, EnrollRefusal>> {
    // IMMEDIATE: the token's uses are read and decremented under the write lock, so two
    // enrollments cannot both take the last use. A refusal drops `tx`, which rolls back.
    let mut tx = store.write().await?;
    let token: Option<(String, TokenRow)> = sqlx::query_as::<_, (String, String, i64, i64, bool)>(
        "SELECT id, environment, uses_left, expires_ms, revoked \
         FROM enrollment_tokens WHERE hash = $1",
    )
    .bind(token_hash)
    .fetch_optional(&mut *tx)
    .await?
    .map(|(id, environment, uses_left, expires_ms, revoked)| {
        (
            id,
            TokenRow {
                environment,
                uses_left,
                expires_ms,
                revoked,
            },
        )
    });
    let Some((token_id, token)) = token else {
        return Ok(Err(EnrollRefusal::UnknownToken));
    };
    if let Some(refusal) = token.refusal(now_ms) {
        return Ok(Err(refusal));
    }
    let existing = select_one(&mut tx, &instance.id).await?;
    let stored = match existing {
        Some(old) if old.machine_fingerprint != instance.machine_fingerprint => {
            return Ok(Err(EnrollRefusal::FingerprintMismatch));
        }
        Some(old) => {
            // Re-enrollment from the same machine: new secret and facts, same history. A
            // revoke stays in force (`revoked_ms` is kept): re-enrolling must not undo it.
            let stored = Instance {
                environment: token.environment.clone(),
                facts: instance.facts.clone(),
                agent_version: instance.agent_version.clone(),
                credential: instance.credential.clone(),
                ..old
            };
            let cols = InstanceCols::new(&stored)?;
            sqlx::query(
                "UPDATE instances SET environment = $2, facts = $3, agent_version = $4, \
                 credential = $5 WHERE id = $1",
            )
            .bind(&stored.id)
            .bind(&stored.environment)
            .bind(&cols.facts)
            .bind(&stored.agent_version)
            .bind(&cols.credential)
            .execute(&mut *tx)
            .await?;
            stored
        }
        None => {
            let stored = Instance {
                environment: token.environment.clone(),
                ..instance.clone()
            };
            insert(&mut tx, &stored).await?;
            stored
        }
    };
    sqlx::query("UPDATE enrollment_tokens SET uses_left = uses_left - 1 WHERE id = $1")
        .bind(&token_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Ok(stored))
}

async fn insert(conn: &mut SqliteConnection, instance: &Instance) -> StoreResult<()> {
    let cols = InstanceCols::new(instance)?;
    sqlx::query(&format!(
        "INSERT INTO instances ({INSTANCE_COLUMNS}, seq) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
         (SELECT COALESCE(MAX(seq), 0) + 1 FROM instances))"
    ))
    .bind(&instance.id)
    .bind(&instance.environment)
    .bind(instance.enrolled_ms)
    .bind(&instance.machine_fingerprint)
    .bind(&cols.facts)
    .bind(&instance.agent_version)
    .bind(&cols.credential)
    .bind(instance.revoked_ms)
    .bind(instance.last_seen_ms)
    .bind(&cols.status)
    .bind(&cols.metrics)
    .bind(cols.applied_serial)
    .bind(cols.events_cursor)
    .bind(&cols.desired_results)
    .execute(&mut *conn)
    .await
    .map_err(|e| {
        codec::insert_error(
            e,
            format!("instance {} already exists", instance.id),
            &format!("environment {}", instance.environment),
        )
    })?;
    Ok(())
}

async fn select_one(conn: &mut SqliteConnection, id: &str) -> StoreResult<Option<Instance>> {
    let sql = format!("SELECT {INSTANCE_COLUMNS} FROM instances WHERE id = $1");
    let row: Option<InstanceRow> = sqlx::query_as(&sql).bind(id).fetch_optional(conn).await?;
    row.map(InstanceRow::into_model).transpose()
}

pub(super) async fn instance(store: &SqliteStore, id: &str) -> StoreResult<Option<Instance>> {
    let mut conn = store.reader.acquire().await?;
    select_one(&mut conn, id).await
}

pub(super) async fn instances(
    store: &SqliteStore,
    environment: Option<&str>,
) -> StoreResult<Vec<Instance>> {
    // `$1 IS NULL` keeps one statement for both the per-environment and the full list; `seq`
    // is the enrollment order (re-enrolling updates in place, so keeps it).
    let sql = format!(
        "SELECT {INSTANCE_COLUMNS} FROM instances WHERE ($1 IS NULL OR environment = $1) \
         ORDER BY seq"
    );
    let rows: Vec<InstanceRow> = sqlx::query_as(&sql)
        .bind(environment)
        .fetch_all(&store.reader)
        .await?;
    codec::all(rows, InstanceRow::into_model)
}

pub(super) async fn save_credential(
    store: &SqliteStore,
    instance_id: &str,
    credential: &CredentialHashes,
) -> StoreResult<()> {
    let done = sqlx::query("UPDATE instances SET credential = $2 WHERE id = $1")
        .bind(instance_id)
        .bind(codec::json(credential)?)
        .execute(&store.writer)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("instance {instance_id}")));
    }
    Ok(())
}

pub(super) async fn move_instance(
    store: &SqliteStore,
    instance_id: &str,
    environment: &str,
) -> StoreResult<()> {
    let done =
        sqlx::query("UPDATE instances SET environment = $2 WHERE id = $1 AND revoked_ms IS NULL")
            .bind(instance_id)
            .bind(environment)
            .execute(&store.writer)
            .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!(
            "enrolled instance {instance_id}"
        )));
    }
    Ok(())
}

pub(super) async fn revoke_instance(
    store: &SqliteStore,
    instance_id: &str,
    now_ms: Millis,
) -> StoreResult<()> {
    // The first revoke's time is kept: revoking twice does not move it.
    let done =
        sqlx::query("UPDATE instances SET revoked_ms = COALESCE(revoked_ms, $2) WHERE id = $1")
            .bind(instance_id)
            .bind(now_ms)
            .execute(&store.writer)
            .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("instance {instance_id}")));
    }
    Ok(())
}

pub(super) async fn commit_reports(store: &SqliteStore, writes: &[ReportWrite]) -> StoreResult<()> {
    if writes.is_empty() {
        return Ok(());
    }
    let merged = MergedReports::new(writes);
    let mut tx = store.write().await?;
    // SQLite runs tens of thousands of statements a second inside one transaction; what costs
    // is the commit, and there is one per group. So a prepared statement per row is fine here.
    for (instance, seen_ms) in &merged.rows {
        let cols = InstanceCols::new(instance)?;
        sqlx::query(
            "UPDATE instances SET facts = $2, agent_version = $3, last_seen_ms = $4, \
             status = $5, metrics = $6, applied_serial = $7, events_cursor = $8, \
             desired_results = $9 \
             WHERE id = $1 AND (last_seen_ms IS NULL OR last_seen_ms <= $4)",
        )
        .bind(&instance.id)
        .bind(&cols.facts)
        .bind(&instance.agent_version)
        .bind(seen_ms)
        .bind(&cols.status)
        .bind(&cols.metrics)
        .bind(cols.applied_serial)
        .bind(cols.events_cursor)
        .bind(&cols.desired_results)
        .execute(&mut *tx)
        .await?;
    }
    for (id, seen_ms) in &merged.seen {
        // MAX: a late group must not move last_seen back.
        sqlx::query(
            "UPDATE instances SET last_seen_ms = MAX(COALESCE(last_seen_ms, $2), $2) WHERE id = $1",
        )
        .bind(id)
        .bind(seen_ms)
        .execute(&mut *tx)
        .await?;
    }
    for result in &merged.results {
        sqlx::query("UPDATE commands SET result = $2 WHERE id = $1")
            .bind(&result.id)
            .bind(codec::json(result)?)
            .execute(&mut *tx)
            .await?;
    }
    events::insert(&mut tx, merged.events.into_iter()).await?;
    tx.commit().await?;
    Ok(())
}
