//! Events: inserted idempotently on `(instance_id, source_id)`, read by filter and page token.
//! With one writer connection, `seq` (AUTOINCREMENT) is assigned in commit order.

use sqlx::SqliteConnection;

use super::SqliteStore;
use crate::model::*;
use crate::store::StoreResult;
use crate::store::codec::{self};
use crate::store::rows::EventRow;

pub(super) async fn insert<'a>(
    conn: &mut SqliteConnection,
    events: impl Iterator<Item = &'a NewEvent>,
) -> StoreResult<()> {
    for event in events {
        sqlx::query(
            "INSERT INTO events (environment, instance_id, source_id, time_ms, severity, source, \
             message, deployment_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (instance_id, source_id) WHERE source_id IS NOT NULL DO NOTHING",
        )
        .bind(&event.environment)
        .bind(&event.instance_id)
        .bind(event.source_id.map(codec::int).transpose()?)
        .bind(event.time_ms)
        .bind(codec::severity_rank(event.severity))
        .bind(&event.source)
        .bind(&event.message)
        .bind(event.deployment_id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

pub(super) async fn select(
    store: &SqliteStore,
    filter: &EventFilter,
) -> StoreResult<Vec<StoredEvent>> {
    let rows: Vec<EventRow> = codec::events_query(filter)
        .build_query_as()
        .fetch_all(&store.reader)
        .await?;
    codec::all(rows, EventRow::into_model)
}

pub(super) async fn prune(store: &SqliteStore, before_ms: Millis) -> StoreResult<u64> {
    let done = sqlx::query("DELETE FROM events WHERE time_ms < $1")
        .bind(before_ms)
        .execute(&store.writer)
        .await?;
    Ok(done.rows_affected())
}
