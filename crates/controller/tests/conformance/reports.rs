//! The reports' group commit: changed rows, last_seen-only rows, idempotent events, command
//! results; and the command queue those results complete.

use hostmanager_controller::model::*;
use hostmanager_controller::store::{Store, StoreError};
use hostmanager_protocol::{CommandKind, CommandResult, DesiredResult, MetricsWindow, Outcome};

use crate::common::*;

fn all_events() -> EventFilter {
    EventFilter {
        limit: 0,
        ..Default::default()
    }
}

pub async fn case_commit_changed_row_and_last_seen_only<S: Store>(store: &S) {
    let hosts = enrolled(store, "prod", &["i-1", "i-2"]).await;
    let mut changed = hosts[0].clone();
    changed.status.health.status = "Degraded".into();
    changed.status.health.color = "Red".into();
    changed.metrics = Some(MetricsWindow {
        ended_ms: 10_000,
        duration_ms: 10_000,
        requests: 100,
        status_2xx: 90,
        status_5xx: 10,
        latency_us: vec![[1_000, 60], [25_000, 40]],
        load_average: Some([0.1, 0.25, 1.5]),
        ..Default::default()
    });
    changed.applied_serial = 3;
    changed.events_cursor = 17;
    changed.desired_results = vec![DesiredResult {
        serial: 3,
        deployment_id: Some(9),
        outcome: Outcome::Failed,
        step: Some("hooks".into()),
        message: Some("hook 01_migrate exited 2".into()),
        finished_ms: 9_500,
    }];
    changed.agent_version = "1.2.0".into();
    let write = ReportWrite {
        instance: Some(changed.clone()),
        ..seen_only("i-1", 10_000)
    };
    store
        .commit_reports(&[write, seen_only("i-2", 10_500)])
        .await
        .expect("commit");

    let got = store.instance("i-1").await.expect("get").expect("exists");
    assert_eq!(
        got,
        Instance {
            last_seen_ms: Some(10_000),
            ..changed.clone()
        }
    );
    let other = store.instance("i-2").await.expect("get").expect("exists");
    assert_eq!(
        other,
        Instance {
            last_seen_ms: Some(10_500),
            ..hosts[1].clone()
        }
    );

    // Two reports from one host in one group: the later row wins, last_seen is the latest.
    let mut later = changed.clone();
    later.applied_serial = 4;
    let groups = [
        ReportWrite {
            instance: Some(later.clone()),
            ..seen_only("i-1", 20_000)
        },
        seen_only("i-1", 21_000),
        seen_only("i-2", 19_000),
    ];
    store.commit_reports(&groups).await.expect("commit");
    let got = store.instance("i-1").await.expect("get").expect("exists");
    assert_eq!(
        got,
        Instance {
            last_seen_ms: Some(21_000),
            ..later
        }
    );
    // A late last_seen does not move it back.
    store
        .commit_reports(&[seen_only("i-2", 5)])
        .await
        .expect("commit");
    let other = store.instance("i-2").await.expect("get").expect("exists");
    assert_eq!(other.last_seen_ms, Some(19_000));
    store
        .commit_reports(&[])
        .await
        .expect("an empty group is fine");
}

pub async fn case_commit_events_idempotent<S: Store>(store: &S) {
    enrolled(store, "prod", &["i-1", "i-2"]).await;
    let write = ReportWrite {
        events: vec![
            event("prod", Some("i-1"), Some(1), 100),
            event("prod", Some("i-1"), Some(2), 101),
        ],
        ..seen_only("i-1", 200)
    };
    store
        .commit_reports(std::slice::from_ref(&write))
        .await
        .expect("first");
    // The same report again (its ack was lost), plus a new event and another host's id 1.
    let mut resent = write.clone();
    resent.events.push(event("prod", Some("i-1"), Some(3), 102));
    let other = ReportWrite {
        events: vec![event("prod", Some("i-2"), Some(1), 103)],
        ..seen_only("i-2", 200)
    };
    store
        .commit_reports(&[resent, other])
        .await
        .expect("second");
    // The controller's own events have no source id and are never deduplicated.
    let own = event("prod", None, None, 104);
    store
        .append_events(&[own.clone(), own])
        .await
        .expect("append");

    let stored = store.events(&all_events()).await.expect("events");
    let keys: Vec<(Option<String>, Option<u64>)> = stored
        .iter()
        .map(|e| (e.event.instance_id.clone(), e.event.source_id))
        .collect();
    let i1 = |n| (Some("i-1".to_string()), Some(n));
    let expected = vec![
        i1(1),
        i1(2),
        i1(3),
        (Some("i-2".into()), Some(1)),
        (None, None),
        (None, None),
    ];
    assert_eq!(keys, expected);
    assert!(
        stored.windows(2).all(|w| w[0].seq < w[1].seq),
        "seq increases"
    );
    assert_eq!(stored[0].event, write.events[0]);
}

fn result(id: &str) -> CommandResult {
    CommandResult {
        id: id.into(),
        accepted: true,
        deployment_id: Some(9),
        error: None,
        outcome: Some(Outcome::Succeeded),
    }
}

fn command(id: &str, instance_id: &str, created_ms: Millis) -> QueuedCommand {
    QueuedCommand {
        id: id.into(),
        instance_id: instance_id.into(),
        kind: CommandKind::Restart,
        deployment_id: Some(1),
        created_ms,
        result: None,
    }
}

pub async fn case_commit_command_results<S: Store>(store: &S) {
    enrolled(store, "prod", &["i-1"]).await;
    store
        .queue_command(&command("c-1", "i-1", 10))
        .await
        .expect("queue");
    store
        .queue_command(&command("c-2", "i-1", 20))
        .await
        .expect("queue");
    let refused = CommandResult {
        accepted: false,
        error: Some("busy".into()),
        ..result("c-2")
    };
    let write = ReportWrite {
        // An unknown id (a command pruned meanwhile) is ignored, not an error.
        command_results: vec![result("c-1"), result("c-unknown"), refused.clone()],
        ..seen_only("i-1", 30)
    };
    store.commit_reports(&[write]).await.expect("commit");
    let c1 = store.command("c-1").await.expect("get").expect("exists");
    assert_eq!(
        c1,
        QueuedCommand {
            result: Some(result("c-1")),
            ..command("c-1", "i-1", 10)
        }
    );
    let c2 = store.command("c-2").await.expect("get").expect("exists");
    assert_eq!(c2.result, Some(refused));
    assert!(
        store
            .pending_commands("i-1")
            .await
            .expect("pending")
            .is_empty()
    );
}

pub async fn case_commands_pending_and_result<S: Store>(store: &S) {
    enrolled(store, "prod", &["i-1", "i-2"]).await;
    store
        .queue_command(&command("c-late", "i-1", 30))
        .await
        .expect("queue");
    store
        .queue_command(&command("c-early", "i-1", 10))
        .await
        .expect("queue");
    store
        .queue_command(&command("c-other", "i-2", 20))
        .await
        .expect("queue");
    let dup = store.queue_command(&command("c-late", "i-1", 40)).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    let ids = |cs: Vec<QueuedCommand>| cs.into_iter().map(|c| c.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.pending_commands("i-1").await.expect("pending")),
        ["c-early", "c-late"]
    );
    assert_eq!(store.command("c-none").await.expect("get"), None);

    let write = ReportWrite {
        command_results: vec![result("c-early")],
        ..seen_only("i-1", 50)
    };
    store.commit_reports(&[write]).await.expect("commit");
    assert_eq!(
        ids(store.pending_commands("i-1").await.expect("pending")),
        ["c-late"]
    );
    assert_eq!(
        ids(store.pending_commands("i-2").await.expect("pending")),
        ["c-other"]
    );
}
