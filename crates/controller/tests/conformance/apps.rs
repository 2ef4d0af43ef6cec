//! Applications, versions, environments, operator tokens, leases, footprint.

use hostmanager_controller::model::*;
use hostmanager_controller::store::{Store, StoreError};

use crate::common::*;

pub async fn case_applications_and_versions<S: Store>(store: &S) {
    store
        .create_application(&app("zeta"))
        .await
        .expect("create zeta");
    store
        .create_application(&app("alpha"))
        .await
        .expect("create alpha");
    let again = store.create_application(&app("alpha")).await;
    assert!(
        matches!(&again, Err(StoreError::Conflict(m)) if m == "Application alpha already exists."),
        "{again:?}"
    );
    assert_eq!(
        store.applications().await.expect("list"),
        vec![app("alpha"), app("zeta")]
    );

    let v1 = version("alpha", "v1", 10);
    let v2 = AppVersion {
        sha256: None,
        size_bytes: None,
        ..version("alpha", "v2", 20)
    };
    store.create_version(&v1).await.expect("v1");
    store.create_version(&v2).await.expect("v2");
    let dup = store.create_version(&version("alpha", "v1", 30)).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    // The same label in another application is another version.
    store
        .create_version(&version("zeta", "v1", 40))
        .await
        .expect("zeta v1");
    let orphan = store.create_version(&version("missing", "v1", 50)).await;
    assert!(matches!(orphan, Err(StoreError::NotFound(_))), "{orphan:?}");

    assert_eq!(
        store.version("alpha", "v1").await.expect("get"),
        Some(v1.clone())
    );
    assert_eq!(
        store.version("alpha", "v2").await.expect("get"),
        Some(v2.clone())
    );
    assert_eq!(store.version("alpha", "v9").await.expect("get"), None);
    assert_eq!(
        store.versions("alpha").await.expect("versions"),
        vec![v2, v1]
    );
    assert!(
        store
            .versions("nothing")
            .await
            .expect("versions")
            .is_empty()
    );
}

pub async fn case_environments<S: Store>(store: &S) {
    store.create_application(&app("shop")).await.expect("app");
    let given = Environment {
        id: 999,
        ..env("shop-prod", "shop")
    };
    let prod = store.create_environment(&given).await.expect("create");
    assert_ne!(prod.id, 999, "the store assigns the id");
    assert_eq!(
        prod,
        Environment {
            id: prod.id,
            ..given.clone()
        }
    );
    let staging = store
        .create_environment(&env("shop-staging", "shop"))
        .await
        .expect("create");
    assert!(staging.id > prod.id);

    let dup = store.create_environment(&env("shop-prod", "shop")).await;
    assert!(
        matches!(&dup, Err(StoreError::Conflict(m)) if m == "Environment shop-prod already exists."),
        "{dup:?}"
    );
    let orphan = store.create_environment(&env("lost", "no-such-app")).await;
    assert!(matches!(orphan, Err(StoreError::NotFound(_))), "{orphan:?}");

    assert_eq!(
        store.environment("shop-prod").await.expect("get"),
        Some(prod.clone())
    );
    assert_eq!(store.environment("nope").await.expect("get"), None);

    let mut changed = prod.clone();
    changed.status = EnvStatus::Updating;
    changed.tier = Tier::Worker;
    changed.options.insert(
        "aws:elasticbeanstalk:application:environment:K".into(),
        "v".into(),
    );
    changed.expected_version = Some("v7".into());
    changed.expected_deployment = Some(42);
    changed.desired_serial = 7;
    changed.desired_version = Some("v8".into());
    changed.health = PublishedHealth {
        status: "Degraded".into(),
        color: "Red".into(),
        causes: vec!["50% of requests are failing with HTTP 5xx.".into()],
        since_ms: 123,
        pending: Some(("Ok".into(), 2)),
    };
    changed.updated_ms = 9_999;
    store.save_environment(&changed).await.expect("save");
    assert_eq!(
        store.environment("shop-prod").await.expect("get"),
        Some(changed.clone())
    );

    // The orchestrator's save writes its own columns only: an operator's options written
    // after its read are kept.
    let mut orchestrated = changed.clone();
    orchestrated.options.clear();
    orchestrated.status = EnvStatus::Ready;
    orchestrated.desired_serial = 8;
    orchestrated.health.status = "Ok".into();
    orchestrated.updated_ms = 10_000;
    store
        .save_environment_state(&orchestrated)
        .await
        .expect("save state");
    changed = Environment {
        options: changed.options.clone(),
        ..orchestrated
    };
    assert_eq!(
        store.environment("shop-prod").await.expect("get"),
        Some(changed.clone())
    );
    let ghost = store.save_environment_state(&env("ghost", "shop")).await;
    assert!(matches!(ghost, Err(StoreError::NotFound(_))), "{ghost:?}");

    let ghost = store.save_environment(&env("ghost", "shop")).await;
    assert!(matches!(ghost, Err(StoreError::NotFound(_))), "{ghost:?}");
    assert_eq!(
        store.environments().await.expect("list"),
        vec![changed.clone(), staging.clone()]
    );

    // A CNAME swap sets both names at once; a row saved from an older read keeps them.
    store
        .set_cnames(("shop-prod", "staging.elb"), ("shop-staging", "prod.elb"))
        .await
        .expect("swap");
    let stale = changed.clone();
    store.save_environment(&stale).await.expect("save");
    let cnames = |list: Vec<Environment>| -> Vec<Option<String>> {
        list.into_iter().map(|e| e.cname).collect()
    };
    assert_eq!(
        cnames(store.environments().await.expect("list")),
        [
            Some("staging.elb".to_string()),
            Some("prod.elb".to_string())
        ]
    );
    let half = store
        .set_cnames(("shop-prod", "x.elb"), ("ghost", "y.elb"))
        .await;
    assert!(matches!(half, Err(StoreError::NotFound(_))), "{half:?}");
    let with_cname = Environment {
        cname: Some("named.elb".into()),
        ..env("shop-named", "shop")
    };
    let created = store.create_environment(&with_cname).await.expect("create");
    assert_eq!(created.cname.as_deref(), Some("named.elb"));
    assert_eq!(
        store
            .environment("shop-named")
            .await
            .expect("get")
            .and_then(|e| e.cname),
        Some("named.elb".to_string())
    );
}

pub async fn case_admin_tokens<S: Store>(store: &S) {
    assert!(!store.is_admin_token("h1").await.expect("check"));
    store.add_admin_token("h1", 1).await.expect("add");
    store
        .add_admin_token("h1", 2)
        .await
        .expect("adding again is harmless");
    assert!(store.is_admin_token("h1").await.expect("check"));
    assert!(!store.is_admin_token("h2").await.expect("check"));
}

pub async fn case_shared_secrets<S: Store>(store: &S) {
    let first = store.shared_secret("signing", "aaa").await.expect("first");
    let second = store.shared_secret("signing", "bbb").await.expect("second");
    assert_eq!(
        (first.as_str(), second.as_str()),
        ("aaa", "aaa"),
        "the first value stays"
    );
    let other = store.shared_secret("other", "ccc").await.expect("other");
    assert_eq!(other, "ccc", "names are separate");
}

pub async fn case_leases<S: Store>(store: &S) {
    assert!(
        store
            .try_lease("env:prod", "a", 100, 200)
            .await
            .expect("take free")
    );
    assert!(
        !store
            .try_lease("env:prod", "b", 150, 250)
            .await
            .expect("b while a holds")
    );
    assert!(
        store
            .try_lease("env:prod", "a", 190, 300)
            .await
            .expect("a renews")
    );
    // Renewed until 300: b is still refused where a's first term would have ended.
    assert!(
        !store
            .try_lease("env:prod", "b", 250, 350)
            .await
            .expect("b before expiry")
    );
    assert!(
        store
            .try_lease("env:prod", "b", 301, 400)
            .await
            .expect("b after expiry")
    );
    assert!(
        !store
            .try_lease("env:prod", "a", 350, 450)
            .await
            .expect("a lost it")
    );
    // Leases are independent by name.
    assert!(
        store
            .try_lease("health", "a", 350, 450)
            .await
            .expect("another lease")
    );
}

pub async fn case_footprint<S: Store>(store: &S) {
    let empty = store.footprint().await.expect("footprint");
    assert_eq!(empty.rows.get("instances"), Some(&0));
    assert!(empty.bytes > 0);
    enrolled(store, "fp", &["i-1", "i-2"]).await;
    store
        .append_events(&[event("fp", None, None, 1)])
        .await
        .expect("event");
    let after = store.footprint().await.expect("footprint");
    for (table, rows) in [("applications", 1), ("environments", 1), ("instances", 2)] {
        assert_eq!(after.rows.get(table), Some(&rows), "{table}");
    }
    assert_eq!(after.rows.get("events"), Some(&1));
    assert_eq!(after.rows.get("enrollment_tokens"), Some(&1));
}
