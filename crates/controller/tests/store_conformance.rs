//! One conformance suite for every `Store` backend: each case is a generic
//! `async fn case_x<S: Store>(store: &S)`, run once on SQLite (a temp file) and once on a real
//! PostgreSQL server (started by `support::PgServer`, a fresh database per test). A backend is
//! done when it passes all of them; nothing here is skipped when PostgreSQL is missing.

mod support;

#[path = "conformance/apps.rs"]
mod apps;
#[path = "conformance/common.rs"]
mod common;
#[path = "conformance/concurrency.rs"]
mod concurrency;
#[path = "conformance/deployments.rs"]
mod deployments;
#[path = "conformance/enroll.rs"]
mod enroll;
#[path = "conformance/events.rs"]
mod events;
#[path = "conformance/reports.rs"]
mod reports;

use hostmanager_controller::store::postgres::PostgresStore;
use hostmanager_controller::store::sqlite::SqliteStore;

async fn open_sqlite() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("controller.db"))
        .await
        .expect("open sqlite");
    (dir, store)
}

async fn open_postgres() -> (support::PgServer, PostgresStore) {
    let server = support::PgServer::start();
    let url = server.create_database().await;
    let store = PostgresStore::connect(&url, 16)
        .await
        .expect("connect to postgres");
    (server, store)
}

/// Generates `sqlite::<case>` and `postgres::<case>` for every `module::case`.
macro_rules! conformance {
    ($($module:ident :: $case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (_dir, store) = crate::open_sqlite().await;
                    crate::$module::$case(&store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (_server, store) = crate::open_postgres().await;
                    crate::$module::$case(&store).await;
                }
            )*
        }
    };
}

conformance! {
    apps::case_applications_and_versions,
    apps::case_environments,
    apps::case_admin_tokens,
    apps::case_leases,
    apps::case_shared_secrets,
    apps::case_footprint,
    enroll::case_enroll_refusals,
    enroll::case_enroll_counts_uses_and_expiry,
    enroll::case_reenroll_same_machine,
    enroll::case_reenroll_other_machine_refused,
    enroll::case_instances_credentials_revoke,
    reports::case_commit_changed_row_and_last_seen_only,
    reports::case_commit_events_idempotent,
    reports::case_commit_command_results,
    reports::case_commands_pending_and_result,
    events::case_event_filters,
    events::case_event_paging_both_directions,
    events::case_prune_events,
    deployments::case_deployment_lifecycle,
    deployments::case_deployments_ordering_and_limit,
    concurrency::case_concurrent_create_deployment,
    concurrency::case_concurrent_commit_reports,
}

/// Two controller processes on one SQLite file (two stores, so two write connections that
/// really contend for the file lock): busy_timeout and BEGIN IMMEDIATE must keep every commit
/// from failing with "database is locked".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_two_processes_on_one_file_do_not_lock_out() {
    let (dir, first) = open_sqlite().await;
    let second = SqliteStore::open(&dir.path().join("controller.db"))
        .await
        .expect("reopen");
    concurrency::hammer_two_stores(&first, &second).await;
}
