//! What both backends share: how model values become columns and come back. JSON-ish values
//! are JSON text here (PostgreSQL casts to and from JSONB in its SQL), enums are their serde
//! names, `u64` counters are `i64` columns. The row structs derive `FromRow` generically, so
//! the same struct decodes a SQLite row and a PostgreSQL row.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{StoreError, StoreResult};
use crate::model::*;

pub(crate) fn json<T: Serialize>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Database(format!("encoding: {e}")))
}

pub(crate) fn from_json<T: DeserializeOwned>(text: &str, column: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Database(format!("column {column}: {e}")))
}

/// An enum's serde name (`Ready`, `InProgress`, `web`), which is also what SQL compares.
pub(crate) fn name<T: Serialize>(value: &T) -> StoreResult<String> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => Ok(name),
        other => Err(StoreError::Database(format!("not a unit enum: {other:?}"))),
    }
}

pub(crate) fn from_name<T: DeserializeOwned>(text: &str, column: &str) -> StoreResult<T> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|e| StoreError::Database(format!("column {column}: {e}")))
}

/// Serials and cursors are `u64` in the model but databases have signed 64-bit integers.
pub(crate) fn int(value: u64) -> StoreResult<i64> {
    i64::try_from(value).map_err(|_| StoreError::Database(format!("{value} is out of range")))
}

pub(crate) fn uint(value: i64) -> StoreResult<u64> {
    u64::try_from(value).map_err(|_| StoreError::Database(format!("{value} is negative")))
}

/// `limit: 0` reads as "no limit", so a default filter does not return nothing.
pub(crate) fn limit(limit: u32) -> i64 {
    if limit == 0 {
        i64::MAX
    } else {
        i64::from(limit)
    }
}

pub(crate) fn severity_rank(severity: EventSeverity) -> i64 {
    severity as i64
}

pub(crate) fn severity_from_rank(rank: i64) -> StoreResult<EventSeverity> {
    use EventSeverity::*;
    [Trace, Debug, Info, Warn, Error, Fatal]
        .into_iter()
        .find(|s| severity_rank(*s) == rank)
        .ok_or_else(|| StoreError::Database(format!("severity rank {rank}")))
}

pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.is_unique_violation())
}

pub(crate) fn is_foreign_key_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.is_foreign_key_violation())
}

/// Maps a unique violation to `Conflict(conflict)` and a missing parent to `NotFound(parent)`.
pub(crate) fn insert_error(error: sqlx::Error, conflict: String, parent: &str) -> StoreError {
    if is_unique_violation(&error) {
        StoreError::Conflict(conflict)
    } else if is_foreign_key_violation(&error) {
        StoreError::NotFound(parent.to_owned())
    } else {
        error.into()
    }
}

/// Elastic Beanstalk's answer when an environment already runs an operation.
pub(crate) fn busy_environment(name: &str) -> StoreError {
    StoreError::Conflict(format!(
        "Environment named {name} is in an invalid state for this operation. Must be Ready."
    ))
}

pub(crate) fn all<R, T>(rows: Vec<R>, f: impl Fn(R) -> StoreResult<T>) -> StoreResult<Vec<T>> {
    rows.into_iter().map(f).collect()
}

/// Tables `footprint()` counts.
pub(crate) const TABLES: &[&str] = &[
    "applications",
    "app_versions",
    "environments",
    "enrollment_tokens",
    "instances",
    "events",
    "deployments",
    "commands",
    "admin_tokens",
    "leases",
];

/// One group commit's writes, merged per instance: two reports from one host in a group must
/// leave the later one's row, and an `UPDATE … FROM UNNEST` may not touch a row twice.
pub(crate) struct MergedReports<'a> {
    /// The last full row per instance, with `last_seen_ms` the latest seen time.
    pub rows: Vec<(&'a Instance, Millis)>,
    /// Instances with only a new `last_seen_ms`.
    pub seen: Vec<(&'a str, Millis)>,
    pub events: Vec<&'a NewEvent>,
    /// The last result per command id.
    pub results: Vec<&'a hostmanager_protocol::CommandResult>,
}

impl<'a> MergedReports<'a> {
    pub(crate) fn new(writes: &'a [ReportWrite]) -> Self {
        use std::collections::BTreeMap;
        let mut rows: BTreeMap<&str, (Option<&Instance>, Millis)> = BTreeMap::new();
        let mut results = BTreeMap::new();
        let mut events = Vec::new();
        for write in writes {
            let entry = rows
                .entry(&write.instance_id)
                .or_insert((None, write.seen_ms));
            entry.1 = entry.1.max(write.seen_ms);
            if write.instance.is_some() {
                entry.0 = write.instance.as_ref();
            }
            events.extend(write.events.iter());
            for result in &write.command_results {
                results.insert(result.id.as_str(), result);
            }
        }
        let mut merged = MergedReports {
            rows: Vec::new(),
            seen: Vec::new(),
            events,
            results: Vec::new(),
        };
        for (id, (instance, seen_ms)) in rows {
            match instance {
                Some(instance) => merged.rows.push((instance, seen_ms)),
                None => merged.seen.push((id, seen_ms)),
            }
        }
        merged.results = results.into_values().collect();
        merged
    }
}

/// The `events()` query for either backend. `after_seq` is a page token in the direction of
/// reading: newest first continues with smaller seqs, oldest first (follow) with larger ones.
pub(crate) fn events_query<'a, DB: sqlx::Database>(
    filter: &'a EventFilter,
) -> sqlx::QueryBuilder<'a, DB>
where
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut query = sqlx::QueryBuilder::new(
        "SELECT seq, environment, instance_id, source_id, time_ms, severity, source, message, \
         deployment_id FROM events WHERE TRUE",
    );
    if let Some(environment) = &filter.environment {
        query
            .push(" AND environment = ")
            .push_bind(environment.as_str());
    }
    if let Some(instance_id) = &filter.instance_id {
        query
            .push(" AND instance_id = ")
            .push_bind(instance_id.as_str());
    }
    if let Some(severity) = filter.min_severity {
        query
            .push(" AND severity >= ")
            .push_bind(severity_rank(severity));
    }
    if let Some(since) = filter.since_ms {
        query.push(" AND time_ms >= ").push_bind(since);
    }
    if let Some(until) = filter.until_ms {
        query.push(" AND time_ms < ").push_bind(until);
    }
    if let Some(after) = filter.after_seq {
        query.push(if filter.newest_first {
            " AND seq < "
        } else {
            " AND seq > "
        });
        query.push_bind(after);
    }
    query.push(if filter.newest_first {
        " ORDER BY seq DESC"
    } else {
        " ORDER BY seq"
    });
    query.push(" LIMIT ").push_bind(limit(filter.limit));
    query
}
