//! Races the store must settle: two replicas starting a deployment at once, many groups
//! committing at once, two processes on one SQLite file.

use hostmanager_controller::model::*;
use hostmanager_controller::store::{Store, StoreError};

use crate::common::*;
use crate::deployments::busy;

pub async fn case_concurrent_create_deployment<S: Store>(store: &S) {
    app_env(store, "prod").await;
    // Several rounds: one race can be won by ordering luck, twenty are a real test.
    for round in 0..20 {
        let attempts: Vec<_> = (0..2)
            .map(|n| {
                let d = deployment("prod", DeploymentStatus::Pending, round * 10 + n);
                async move { store.create_deployment(&d).await }
            })
            .collect();
        let results = join_all(attempts).await;
        let won: Vec<&Deployment> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(won.len(), 1, "round {round}: {results:?}");
        for result in &results {
            if let Err(e) = result {
                assert!(
                    matches!(e, StoreError::Conflict(m) if *m == busy("prod")),
                    "{e:?}"
                );
            }
        }
        let finished = Deployment {
            status: DeploymentStatus::Aborted,
            ..won[0].clone()
        };
        store
            .save_deployment(&finished, won[0])
            .await
            .expect("finish");
    }
    assert_eq!(store.deployments("prod", 0).await.expect("list").len(), 20);
}

fn group(round: u64, hosts: &[Instance]) -> Vec<ReportWrite> {
    hosts
        .iter()
        .map(|host| {
            let mut changed = host.clone();
            changed.applied_serial = round;
            ReportWrite {
                instance: round.is_multiple_of(2).then_some(changed),
                events: vec![event("prod", Some(&host.id), Some(round), round as i64)],
                ..seen_only(&host.id, 1_000 + round as i64)
            }
        })
        .collect()
}

pub async fn case_concurrent_commit_reports<S: Store>(store: &S) {
    let ids: Vec<String> = (0..8).map(|n| format!("i-{n}")).collect();
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let hosts = enrolled(store, "prod", &id_refs).await;
    // Forty groups at once, all touching the same hosts (the worst case for locks), with
    // readers in between.
    let commits: Vec<_> = (1..=40u64)
        .map(|round| {
            let writes = group(round, &hosts);
            async move {
                store.commit_reports(&writes).await?;
                store.instances("prod").await.map(|_| ())
            }
        })
        .collect();
    for result in join_all(commits).await {
        result.expect("every group commits");
    }
    let events = store.events(&EventFilter::default()).await.expect("events");
    assert_eq!(events.len(), 40 * hosts.len());
    for host in store.instances("prod").await.expect("list") {
        assert_eq!(host.last_seen_ms, Some(1_040), "the latest seen time wins");
    }
}

/// Both stores write groups, enroll and append at once; every call must succeed.
pub async fn hammer_two_stores<S: Store>(first: &S, second: &S) {
    let hosts = enrolled(first, "prod", &["i-1", "i-2", "i-3"]).await;
    let work: Vec<_> = (1..=60u64)
        .map(|round| {
            let store = if round.is_multiple_of(2) {
                first
            } else {
                second
            };
            let writes = group(round, &hosts);
            async move {
                store.commit_reports(&writes).await?;
                store
                    .append_events(&[event("prod", None, None, round as i64)])
                    .await?;
                store
                    .events(&EventFilter {
                        limit: 5,
                        ..Default::default()
                    })
                    .await
                    .map(|_| ())
            }
        })
        .collect();
    for result in join_all(work).await {
        result.expect("no database is locked");
    }
    let events = second
        .events(&EventFilter::default())
        .await
        .expect("events");
    assert_eq!(events.len(), 60 * hosts.len() + 60);
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
}
