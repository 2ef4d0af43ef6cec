//! Events: every filter field, paging in both directions, pruning.

use hostmanager_controller::model::*;
use hostmanager_controller::store::Store;

use crate::common::*;

fn severe(mut e: NewEvent, severity: EventSeverity) -> NewEvent {
    e.severity = severity;
    e
}

/// Ten events over two environments and two hosts, at times 100, 110, … 190.
async fn seed<S: Store>(store: &S) -> Vec<StoredEvent> {
    let severities = [
        EventSeverity::Trace,
        EventSeverity::Info,
        EventSeverity::Warn,
    ];
    let mut events = Vec::new();
    for n in 0..10u32 {
        let env = if n % 2 == 0 { "prod" } else { "staging" };
        let host = if n % 3 == 0 {
            None
        } else {
            Some(if n % 2 == 0 { "i-p" } else { "i-s" })
        };
        let source_id = host.map(|_| u64::from(n));
        let e = event(env, host, source_id, 100 + 10 * i64::from(n));
        let e = severe(e, severities[(n % 3) as usize]);
        events.push(NewEvent {
            deployment_id: (n == 4).then_some(7),
            ..e
        });
    }
    events.push(severe(event("prod", None, None, 200), EventSeverity::Fatal));
    store.append_events(&events).await.expect("append");
    let stored = store.events(&EventFilter::default()).await.expect("all");
    assert_eq!(stored.len(), 11, "limit 0 reads as no limit");
    let stored_events: Vec<NewEvent> = stored.iter().map(|e| e.event.clone()).collect();
    assert_eq!(
        stored_events, events,
        "oldest first by default, stored as given"
    );
    stored
}

fn times(events: &[StoredEvent]) -> Vec<Millis> {
    events.iter().map(|e| e.event.time_ms).collect()
}

pub async fn case_event_filters<S: Store>(store: &S) {
    let all = seed(store).await;
    let query = |filter: EventFilter| async move { store.events(&filter).await.expect("events") };
    let prod = query(EventFilter {
        environment: Some("prod".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(times(&prod), [100, 120, 140, 160, 180, 200]);
    let host = query(EventFilter {
        instance_id: Some("i-s".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(times(&host), [110, 150, 170]);
    let warn = query(EventFilter {
        min_severity: Some(EventSeverity::Warn),
        ..Default::default()
    })
    .await;
    assert_eq!(times(&warn), [120, 150, 180, 200]);
    // since is inclusive, until exclusive (Elastic Beanstalk's StartTime / EndTime).
    let window = query(EventFilter {
        since_ms: Some(130),
        until_ms: Some(160),
        ..Default::default()
    })
    .await;
    assert_eq!(times(&window), [130, 140, 150]);
    let combined = query(EventFilter {
        environment: Some("staging".into()),
        instance_id: Some("i-s".into()),
        min_severity: Some(EventSeverity::Info),
        since_ms: Some(110),
        until_ms: Some(190),
        ..Default::default()
    })
    .await;
    assert_eq!(times(&combined), [110, 150, 170]);
    let none = query(EventFilter {
        environment: Some("nope".into()),
        ..Default::default()
    })
    .await;
    assert!(none.is_empty());
    assert_eq!(all[4].event.deployment_id, Some(7));
}

pub async fn case_event_paging_both_directions<S: Store>(store: &S) {
    let all = seed(store).await;
    let seqs: Vec<i64> = all.iter().map(|e| e.seq).collect();
    // Newest first (DescribeEvents): each page continues below the last seq seen.
    let mut pages = Vec::new();
    let mut token = None;
    loop {
        let filter = EventFilter {
            after_seq: token,
            newest_first: true,
            limit: 4,
            ..Default::default()
        };
        let page = store.events(&filter).await.expect("page");
        if page.is_empty() {
            break;
        }
        token = page.last().map(|e| e.seq);
        pages.push(page.iter().map(|e| e.seq).collect::<Vec<_>>());
    }
    let mut newest: Vec<i64> = seqs.clone();
    newest.reverse();
    let expected: Vec<Vec<i64>> = newest.chunks(4).map(<[i64]>::to_vec).collect();
    assert_eq!(pages, expected);

    // Oldest first (follow): continues above the last seq seen, and sees new events.
    let filter = EventFilter {
        after_seq: Some(seqs[7]),
        limit: 2,
        ..Default::default()
    };
    let page = store.events(&filter).await.expect("follow");
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), &seqs[8..10]);
    let last = *seqs.last().expect("seeded");
    let after_all = EventFilter {
        after_seq: Some(last),
        ..Default::default()
    };
    assert!(store.events(&after_all).await.expect("follow").is_empty());
    store
        .append_events(&[event("prod", None, None, 300)])
        .await
        .expect("append");
    let new = store.events(&after_all).await.expect("follow");
    assert_eq!(times(&new), [300]);
    assert!(new[0].seq > last);

    // Filters and paging together.
    let filter = EventFilter {
        environment: Some("prod".into()),
        after_seq: Some(seqs[8]),
        newest_first: true,
        limit: 2,
        ..Default::default()
    };
    assert_eq!(
        times(&store.events(&filter).await.expect("page")),
        [160, 140]
    );
}

pub async fn case_prune_events<S: Store>(store: &S) {
    let all = seed(store).await;
    assert_eq!(store.prune_events(150).await.expect("prune"), 5);
    let left = store.events(&EventFilter::default()).await.expect("events");
    assert_eq!(times(&left), [150, 160, 170, 180, 190, 200]);
    assert_eq!(store.prune_events(150).await.expect("prune again"), 0);
    // Seqs are never reused after a prune, so old page tokens stay meaningful.
    store
        .append_events(&[event("prod", None, None, 400)])
        .await
        .expect("append");
    let newest = EventFilter {
        newest_first: true,
        limit: 1,
        ..Default::default()
    };
    let top = store.events(&newest).await.expect("newest");
    assert!(top[0].seq > all.last().expect("seeded").seq);
}
