//! Events: inserted idempotently on `(instance_id, source_id)`, read by filter and page token.
//!
//! `seq` must increase in commit order, because readers continue after the last seq they saw:
//! an identity value is taken at insert time, so two transactions could commit out of order
//! and a follower would skip the one that committed later with the smaller seq. Every
//! transaction that inserts events therefore takes one transaction-level advisory lock first,
//! as its last step before committing, which makes seq order and commit order the same.

use sqlx::PgConnection;

use super::PostgresStore;
use crate::model::*;
use crate::store::StoreResult;
use crate::store::codec::{self};
use crate::store::rows::EventRow;

/// The advisory lock key that orders event inserts ("hm-evnts" in ASCII).
const EVENTS_LOCK: i64 = 0x686d_2d65_766e_7473;

pub(super) async fn insert<'a>(
    conn: &mut PgConnection,
    events: impl Iterator<Item = &'a NewEvent>,
) -> StoreResult<()> {
    let mut cols = Columns::default();
    for event in events {
        cols.environment.push(event.environment.clone());
        cols.instance_id.push(event.instance_id.clone());
        cols.source_id
            .push(event.source_id.map(codec::int).transpose()?);
        cols.time_ms.push(event.time_ms);
        cols.severity.push(codec::severity_rank(event.severity));
        cols.source.push(event.source.clone());
        cols.message.push(event.message.clone());
        cols.deployment_id.push(event.deployment_id);
    }
    if cols.environment.is_empty() {
        return Ok(());
    }
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(EVENTS_LOCK)
        .execute(&mut *conn)
        .await?;
    // One statement for the whole group; ORDER BY ordinality gives seqs in the group's order.
    sqlx::query(
        "INSERT INTO events (environment, instance_id, source_id, time_ms, severity, source, \
         message, deployment_id) \
         SELECT environment, instance_id, source_id, time_ms, severity, source, message, \
         deployment_id FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::int8[], $5::int8[], \
         $6::text[], $7::text[], $8::int8[]) WITH ORDINALITY AS u(environment, instance_id, \
         source_id, time_ms, severity, source, message, deployment_id, n) ORDER BY n \
         ON CONFLICT (instance_id, source_id) WHERE source_id IS NOT NULL DO NOTHING",
    )
    .bind(&cols.environment)
    .bind(&cols.instance_id)
    .bind(&cols.source_id)
    .bind(&cols.time_ms)
    .bind(&cols.severity)
    .bind(&cols.source)
    .bind(&cols.message)
    .bind(&cols.deployment_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The events as column arrays, for `UNNEST`.
#[derive(Default)]
struct Columns {
    environment: Vec<String>,
    instance_id: Vec<Option<String>>,
    source_id: Vec<Option<i64>>,
    time_ms: Vec<i64>,
    severity: Vec<i64>,
    source: Vec<String>,
    message: Vec<String>,
    deployment_id: Vec<Option<i64>>,
}

pub(super) async fn select(
    store: &PostgresStore,
    filter: &EventFilter,
) -> StoreResult<Vec<StoredEvent>> {
    let rows: Vec<EventRow> = codec::events_query(filter)
        .build_query_as()
        .fetch_all(&store.pool)
        .await?;
    codec::all(rows, EventRow::into_model)
}

pub(super) async fn prune(store: &PostgresStore, before_ms: Millis) -> StoreResult<u64> {
    let done = sqlx::query("DELETE FROM events WHERE time_ms < $1")
        .bind(before_ms)
        .execute(&store.pool)
        .await?;
    Ok(done.rows_affected())
}
