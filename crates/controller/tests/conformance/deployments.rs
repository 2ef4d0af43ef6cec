//! Deployments: one unfinished per environment, members, ordering.

use hostmanager_controller::model::*;
use hostmanager_controller::store::{Store, StoreError};
use hostmanager_protocol::Outcome;

use crate::common::*;

pub fn busy(env: &str) -> String {
    format!("Environment named {env} is in an invalid state for this operation. Must be Ready.")
}

pub async fn case_deployment_lifecycle<S: Store>(store: &S) {
    app_env(store, "prod").await;
    app_env(store, "staging").await;
    assert_eq!(store.active_deployment("prod").await.expect("active"), None);
    let given = Deployment {
        id: 555,
        ..deployment("prod", DeploymentStatus::Pending, 10)
    };
    let first = store.create_deployment(&given).await.expect("create");
    assert_ne!(first.id, 555, "the store assigns the id");
    assert_eq!(
        store.deployment(first.id).await.expect("get"),
        Some(first.clone())
    );

    let second = store
        .create_deployment(&deployment("prod", DeploymentStatus::Pending, 11))
        .await;
    assert!(
        matches!(&second, Err(StoreError::Conflict(m)) if *m == busy("prod")),
        "{second:?}"
    );
    // InProgress is unfinished too; another environment is not affected.
    let mut running = first.clone();
    running.status = DeploymentStatus::InProgress;
    running.members = vec![Member {
        instance_id: "i-1".into(),
        batch: 0,
        state: MemberState::Deployed,
        outcome: Some(Outcome::Succeeded),
        step: Some("switch".into()),
        message: Some("ok".into()),
        dispatched_ms: Some(12),
        done_ms: Some(13),
        healthy_reports: 2,
        command_id: None,
        drain_started_ms: Some(11),
        role: MemberRole::Launch,
    }];
    store.save_deployment(&running, &first).await.expect("save");
    // Computed from a row that is no longer stored: refused, and nothing changes.
    let stale = store
        .save_deployment(
            &Deployment {
                message: Some("a stale step".into()),
                ..running.clone()
            },
            &first,
        )
        .await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    assert_eq!(
        store.active_deployment("prod").await.expect("active"),
        Some(running.clone())
    );
    let again = store
        .create_deployment(&deployment("prod", DeploymentStatus::InProgress, 12))
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    store
        .create_deployment(&deployment("staging", DeploymentStatus::Pending, 12))
        .await
        .expect("another environment");

    let mut done = running.clone();
    done.status = DeploymentStatus::Failed;
    done.finished_ms = Some(20);
    done.message = Some("Failed to deploy application.".into());
    store
        .save_deployment(&done, &running)
        .await
        .expect("finish");
    assert_eq!(
        store.deployment(done.id).await.expect("get"),
        Some(done.clone())
    );
    assert_eq!(store.active_deployment("prod").await.expect("active"), None);
    let next = store
        .create_deployment(&deployment("prod", DeploymentStatus::Pending, 30))
        .await
        .expect("a new one once the last finished");
    assert!(next.id > done.id);
    // Reopening the finished one would make two unfinished: refused as well.
    let reopen = store
        .save_deployment(
            &Deployment {
                status: DeploymentStatus::Pending,
                ..done.clone()
            },
            &done,
        )
        .await;
    assert!(matches!(reopen, Err(StoreError::Conflict(_))), "{reopen:?}");
    // A finished deployment is final even when nothing else is unfinished: a step computed
    // before an abort is refused, and the abort stays.
    let aborted = Deployment {
        status: DeploymentStatus::Aborted,
        finished_ms: Some(31),
        message: Some("Aborted by the operator.".into()),
        ..next.clone()
    };
    store.save_deployment(&aborted, &next).await.expect("abort");
    let stale = store
        .save_deployment(
            &Deployment {
                status: DeploymentStatus::InProgress,
                ..next.clone()
            },
            &next,
        )
        .await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    assert_eq!(store.deployment(next.id).await.expect("get"), Some(aborted));

    let ghost_row = Deployment {
        id: 99_999,
        ..next.clone()
    };
    let ghost = store.save_deployment(&ghost_row, &ghost_row).await;
    assert!(matches!(ghost, Err(StoreError::NotFound(_))), "{ghost:?}");
    assert_eq!(store.deployment(99_999).await.expect("get"), None);
    let orphan = store
        .create_deployment(&deployment("nowhere", DeploymentStatus::Pending, 1))
        .await;
    assert!(matches!(orphan, Err(StoreError::NotFound(_))), "{orphan:?}");
}

pub async fn case_deployments_ordering_and_limit<S: Store>(store: &S) {
    app_env(store, "prod").await;
    app_env(store, "other").await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let created = store
            .create_deployment(&deployment("prod", DeploymentStatus::Pending, 100 + n))
            .await
            .expect("create");
        let finished = Deployment {
            status: DeploymentStatus::Succeeded,
            finished_ms: Some(200 + n),
            ..created.clone()
        };
        store
            .save_deployment(&finished, &created)
            .await
            .expect("finish");
        ids.push(finished.id);
    }
    store
        .create_deployment(&deployment("other", DeploymentStatus::Pending, 1))
        .await
        .expect("other");
    let listed = |limit| async move {
        let list = store.deployments("prod", limit).await.expect("list");
        list.into_iter().map(|d| d.id).collect::<Vec<_>>()
    };
    let newest_first: Vec<i64> = ids.iter().rev().copied().collect();
    assert_eq!(listed(0).await, newest_first, "limit 0 reads as no limit");
    assert_eq!(listed(2).await, &newest_first[..2]);
    assert!(
        store
            .deployments("none", 10)
            .await
            .expect("list")
            .is_empty()
    );
}
