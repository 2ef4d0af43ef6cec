//! Enrollment tokens, enrollment, instances and the reports' group commit.

use sqlx::PgConnection;

use super::{PostgresStore, events};
use crate::model::*;
use crate::store::codec::{self, MergedReports};
use crate::store::rows::{InstanceCols, InstanceRow, TokenRow};
use crate::store::{StoreError, StoreResult};

pub(super) async fn create_enrollment_token(
    store: &PostgresStore,
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
    .execute(&store.pool)
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

pub(super) async fn revoke_enrollment_token(store: &PostgresStore, id: &str) -> StoreResult<()> {
    let done = sqlx::query("UPDATE enrollment_tokens SET revoked = TRUE WHERE id = $1")
        .bind(id)
        .execute(&store.pool)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("enrollment token {id}")));
    }
    Ok(())
}

const INSTANCE_COLUMNS: &str = "id, environment, enrolled_ms, machine_fingerprint, \
     facts::text AS facts, agent_version, credential::text AS credential, revoked_ms, \
     last_seen_ms, status::text AS status, metrics::text AS metrics, applied_serial, \
     events_cursor, desired_results::text AS desired_results";

pub(super) async fn enroll(
    store: &PostgresStore,
    token_hash: &str,
    instance: &Instance,
    now_ms: Millis,
) -> StoreResult<Result<Instance, EnrollRefusal>> {
    // FOR UPDATE on the token (and the instance): concurrent enrollments with one token queue
    // on its row, so two cannot both take the last use. A refusal drops `tx`: rolled back.
    let mut tx = store.pool.begin().await?;
    let token: Option<(String, TokenRow)> = sqlx::query_as::<_, (String, String, i64, i64, bool)>(
        "SELECT id, environment, uses_left, expires_ms, revoked \
         FROM enrollment_tokens WHERE hash = $1 FOR UPDATE",
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
    let existing = select_one(&mut tx, &instance.id, true).await?;
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
                "UPDATE instances SET environment = $2, facts = $3::jsonb, agent_version = $4, \
                 credential = $5::jsonb WHERE id = $1",
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

async fn insert(conn: &mut PgConnection, instance: &Instance) -> StoreResult<()> {
    let cols = InstanceCols::new(instance)?;
    sqlx::query(
        "INSERT INTO instances (id, environment, enrolled_ms, machine_fingerprint, facts, \
         agent_version, credential, revoked_ms, last_seen_ms, status, metrics, applied_serial, \
         events_cursor, desired_results) VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7::jsonb, $8, \
         $9, $10::jsonb, $11::jsonb, $12, $13, $14::jsonb)",
    )
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

async fn select_one(
    conn: &mut PgConnection,
    id: &str,
    for_update: bool,
) -> StoreResult<Option<Instance>> {
    let lock = if for_update { " FOR UPDATE" } else { "" };
    let sql = format!("SELECT {INSTANCE_COLUMNS} FROM instances WHERE id = $1{lock}");
    let row: Option<InstanceRow> = sqlx::query_as(&sql).bind(id).fetch_optional(conn).await?;
    row.map(InstanceRow::into_model).transpose()
}

pub(super) async fn instance(store: &PostgresStore, id: &str) -> StoreResult<Option<Instance>> {
    let mut conn = store.pool.acquire().await?;
    select_one(&mut conn, id, false).await
}

pub(super) async fn instances(
    store: &PostgresStore,
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
        .fetch_all(&store.pool)
        .await?;
    codec::all(rows, InstanceRow::into_model)
}

pub(super) async fn save_credential(
    store: &PostgresStore,
    instance_id: &str,
    credential: &CredentialHashes,
) -> StoreResult<()> {
    let done = sqlx::query("UPDATE instances SET credential = $2::jsonb WHERE id = $1")
        .bind(instance_id)
        .bind(codec::json(credential)?)
        .execute(&store.pool)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("instance {instance_id}")));
    }
    Ok(())
}

pub(super) async fn move_instance(
    store: &PostgresStore,
    instance_id: &str,
    environment: &str,
) -> StoreResult<()> {
    let done =
        sqlx::query("UPDATE instances SET environment = $2 WHERE id = $1 AND revoked_ms IS NULL")
            .bind(instance_id)
            .bind(environment)
            .execute(&store.pool)
            .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!(
            "enrolled instance {instance_id}"
        )));
    }
    Ok(())
}

pub(super) async fn revoke_instance(
    store: &PostgresStore,
    instance_id: &str,
    now_ms: Millis,
) -> StoreResult<()> {
    // The first revoke's time is kept: revoking twice does not move it.
    let done =
        sqlx::query("UPDATE instances SET revoked_ms = COALESCE(revoked_ms, $2) WHERE id = $1")
            .bind(instance_id)
            .bind(now_ms)
            .execute(&store.pool)
            .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("instance {instance_id}")));
    }
    Ok(())
}

pub(super) async fn commit_reports(
    store: &PostgresStore,
    writes: &[ReportWrite],
) -> StoreResult<()> {
    if writes.is_empty() {
        return Ok(());
    }
    let merged = MergedReports::new(writes);
    let mut tx = store.pool.begin().await?;
    // Row locks in id order first: two replicas committing groups that share a host would
    // otherwise lock in join order and could deadlock.
    let mut ids: Vec<&str> = merged.rows.iter().map(|(i, _)| i.id.as_str()).collect();
    ids.extend(merged.seen.iter().map(|(id, _)| *id));
    ids.sort_unstable();
    sqlx::query("SELECT id FROM instances WHERE id = ANY($1) ORDER BY id FOR UPDATE")
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
    // One statement per kind of change, with the group as arrays: far fewer round trips than a
    // statement per row, and one prepared statement whatever the group's size. Only the
    // report-owned columns are written, none of them indexed, so the updates can be HOT.
    // A group that lost a race to a newer one must not put an older report back.
    if !merged.rows.is_empty() {
        let mut rows = Rows::default();
        for (instance, seen_ms) in &merged.rows {
            let cols = InstanceCols::new(instance)?;
            rows.id.push(instance.id.clone());
            rows.facts.push(cols.facts);
            rows.agent_version.push(instance.agent_version.clone());
            rows.last_seen_ms.push(*seen_ms);
            rows.status.push(cols.status);
            rows.metrics.push(cols.metrics);
            rows.applied_serial.push(cols.applied_serial);
            rows.events_cursor.push(cols.events_cursor);
            rows.desired_results.push(cols.desired_results);
        }
        sqlx::query(
            "UPDATE instances AS i SET facts = u.facts::jsonb, agent_version = u.agent_version, \
             last_seen_ms = u.last_seen_ms, status = u.status::jsonb, \
             metrics = u.metrics::jsonb, applied_serial = u.applied_serial, \
             events_cursor = u.events_cursor, desired_results = u.desired_results::jsonb \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[], \
             $6::text[], $7::int8[], $8::int8[], $9::text[]) AS u(id, facts, agent_version, \
             last_seen_ms, status, metrics, applied_serial, events_cursor, desired_results) \
             WHERE i.id = u.id AND (i.last_seen_ms IS NULL OR i.last_seen_ms <= u.last_seen_ms)",
        )
        .bind(&rows.id)
        .bind(&rows.facts)
        .bind(&rows.agent_version)
        .bind(&rows.last_seen_ms)
        .bind(&rows.status)
        .bind(&rows.metrics)
        .bind(&rows.applied_serial)
        .bind(&rows.events_cursor)
        .bind(&rows.desired_results)
        .execute(&mut *tx)
        .await?;
    }
    if !merged.seen.is_empty() {
        let (ids, seen): (Vec<&str>, Vec<Millis>) = merged.seen.iter().copied().unzip();
        // GREATEST ignores NULL, and a late group must not move last_seen back.
        sqlx::query(
            "UPDATE instances AS i SET last_seen_ms = GREATEST(i.last_seen_ms, u.seen) \
             FROM UNNEST($1::text[], $2::int8[]) AS u(id, seen) WHERE i.id = u.id",
        )
        .bind(&ids)
        .bind(&seen)
        .execute(&mut *tx)
        .await?;
    }
    if !merged.results.is_empty() {
        let ids: Vec<&str> = merged.results.iter().map(|r| r.id.as_str()).collect();
        let results = merged
            .results
            .iter()
            .map(codec::json)
            .collect::<StoreResult<Vec<_>>>()?;
        sqlx::query(
            "UPDATE commands AS c SET result = u.result::jsonb \
             FROM UNNEST($1::text[], $2::text[]) AS u(id, result) WHERE c.id = u.id",
        )
        .bind(&ids)
        .bind(&results)
        .execute(&mut *tx)
        .await?;
    }
    // Last: it takes the events lock, which is then held only until the commit.
    events::insert(&mut tx, merged.events.into_iter()).await?;
    tx.commit().await?;
    Ok(())
}

/// Changed instance rows as column arrays, for `UNNEST`.
#[derive(Default)]
struct Rows {
    id: Vec<String>,
    facts: Vec<String>,
    agent_version: Vec<String>,
    last_seen_ms: Vec<Millis>,
    status: Vec<String>,
    metrics: Vec<Option<String>>,
    applied_serial: Vec<i64>,
    events_cursor: Vec<i64>,
    desired_results: Vec<String>,
}
