//! Enrollment (every refusal, uses, expiry, re-enrollment) and instance credentials.

use hostmanager_controller::model::*;
use hostmanager_controller::store::{Store, StoreError};

use crate::common::*;

pub async fn case_enroll_refusals<S: Store>(store: &S) {
    app_env(store, "prod").await;
    let host = instance("i-1", "prod", "m-1");
    let refused = store.enroll("hash-none", &host, 10).await.expect("enroll");
    assert_eq!(refused, Err(EnrollRefusal::UnknownToken));

    store
        .create_enrollment_token(&token("revoked", "prod", 5, 1_000))
        .await
        .expect("token");
    store
        .revoke_enrollment_token("revoked")
        .await
        .expect("revoke");
    let refused = store
        .enroll("hash-revoked", &host, 10)
        .await
        .expect("enroll");
    assert_eq!(refused, Err(EnrollRefusal::Revoked));
    let missing = store.revoke_enrollment_token("no-such-token").await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );

    store
        .create_enrollment_token(&token("old", "prod", 5, 1_000))
        .await
        .expect("token");
    let refused = store
        .enroll("hash-old", &host, 1_000)
        .await
        .expect("enroll");
    assert_eq!(
        refused,
        Err(EnrollRefusal::Expired),
        "expired at exactly its expiry"
    );

    store
        .create_enrollment_token(&token("none-left", "prod", 0, 1_000))
        .await
        .expect("token");
    let refused = store
        .enroll("hash-none-left", &host, 10)
        .await
        .expect("enroll");
    assert_eq!(refused, Err(EnrollRefusal::UsedUp));

    let dup = store
        .create_enrollment_token(&token("old", "prod", 1, 1))
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    assert_eq!(
        store.instance("i-1").await.expect("get"),
        None,
        "no refusal enrolls"
    );
}

pub async fn case_enroll_counts_uses_and_expiry<S: Store>(store: &S) {
    app_env(store, "prod").await;
    app_env(store, "other").await;
    store
        .create_enrollment_token(&token("two", "prod", 2, 1_000))
        .await
        .expect("token");
    // The instance's environment is the token's, whatever the caller put in.
    let first = store
        .enroll("hash-two", &instance("i-1", "other", "m-1"), 999)
        .await
        .expect("enroll")
        .expect("first use");
    assert_eq!(first, instance("i-1", "prod", "m-1"));
    assert_eq!(store.instance("i-1").await.expect("get"), Some(first));
    store
        .enroll("hash-two", &instance("i-2", "prod", "m-2"), 999)
        .await
        .expect("enroll")
        .expect("second use");
    let third = store
        .enroll("hash-two", &instance("i-3", "prod", "m-3"), 999)
        .await;
    assert_eq!(third.expect("enroll"), Err(EnrollRefusal::UsedUp));
    let ids: Vec<String> = store
        .instances("prod")
        .await
        .expect("list")
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(ids, ["i-1", "i-2"]);
    assert!(store.instances("other").await.expect("list").is_empty());
}

pub async fn case_reenroll_same_machine<S: Store>(store: &S) {
    app_env(store, "prod").await;
    store
        .create_enrollment_token(&token("t", "prod", 2, 1_000))
        .await
        .expect("token");
    let first = store
        .enroll("hash-t", &instance("i-1", "prod", "m-1"), 10)
        .await
        .expect("enroll");
    let first = first.expect("enrolled");

    let mut again = instance("i-1", "prod", "m-1");
    again.enrolled_ms = 50;
    again.credential = credential("rotated");
    again.facts.instance_type = Some("t3.small".into());
    again.agent_version = "1.1.0".into();
    let stored = store
        .enroll("hash-t", &again, 50)
        .await
        .expect("enroll")
        .expect("re-enrolled");
    assert_eq!(stored.credential, credential("rotated"));
    assert_eq!(stored.facts, again.facts);
    assert_eq!(stored.agent_version, "1.1.0");
    assert_eq!(stored.enrolled_ms, first.enrolled_ms, "its history is kept");
    assert_eq!(store.instance("i-1").await.expect("get"), Some(stored));
    assert_eq!(store.instances("prod").await.expect("list").len(), 1);
    // Re-enrolling took the token's second use.
    let used_up = store
        .enroll("hash-t", &instance("i-2", "prod", "m-2"), 60)
        .await;
    assert_eq!(used_up.expect("enroll"), Err(EnrollRefusal::UsedUp));
}

pub async fn case_reenroll_other_machine_refused<S: Store>(store: &S) {
    app_env(store, "prod").await;
    store
        .create_enrollment_token(&token("t", "prod", 2, 1_000))
        .await
        .expect("token");
    let original = store
        .enroll("hash-t", &instance("i-1", "prod", "m-1"), 10)
        .await
        .expect("enroll");
    let original = original.expect("enrolled");
    let mut impostor = instance("i-1", "prod", "m-evil");
    impostor.credential = credential("stolen");
    let refused = store.enroll("hash-t", &impostor, 20).await.expect("enroll");
    assert_eq!(refused, Err(EnrollRefusal::FingerprintMismatch));
    assert_eq!(store.instance("i-1").await.expect("get"), Some(original));
    // The refused attempt did not take the use.
    let second = store
        .enroll("hash-t", &instance("i-2", "prod", "m-2"), 30)
        .await;
    assert!(second.expect("enroll").is_ok());
}

pub async fn case_instances_credentials_revoke<S: Store>(store: &S) {
    let hosts = enrolled(store, "a", &["i-b", "i-a"]).await;
    enrolled(store, "b", &["i-c"]).await;
    assert_eq!(store.instances("a").await.expect("list"), hosts);
    let all: Vec<String> = store
        .all_instances()
        .await
        .expect("all")
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(all.len(), 3);
    assert!(all.contains(&"i-c".to_string()));

    let rotated = CredentialHashes {
        current: "sha-new".into(),
        expires_ms: 77,
        previous: Some("sha-i-a".into()),
        previous_until_ms: 66,
    };
    store
        .save_credential("i-a", &rotated)
        .await
        .expect("save credential");
    let got = store.instance("i-a").await.expect("get").expect("exists");
    assert_eq!(got.credential, rotated);
    let missing = store.save_credential("i-zz", &rotated).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );

    store.revoke_instance("i-a", 500).await.expect("revoke");
    store
        .revoke_instance("i-a", 900)
        .await
        .expect("revoke again");
    let got = store
        .instance("i-a")
        .await
        .expect("get")
        .expect("still listed");
    assert_eq!(got.revoked_ms, Some(500), "the first revoke's time is kept");
    assert_eq!(
        store.instances("a").await.expect("list").len(),
        2,
        "revoked ones included"
    );
    let missing = store.revoke_instance("i-zz", 1).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );

    // The standby pool moves enrolled instances between environments, never revoked ones.
    store.move_instance("i-b", "b").await.expect("move");
    let ids = |list: Vec<Instance>| list.into_iter().map(|i| i.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.instances("b").await.expect("list")),
        ["i-b", "i-c"]
    );
    assert_eq!(ids(store.instances("a").await.expect("list")), ["i-a"]);
    let revoked = store.move_instance("i-a", "b").await;
    assert!(
        matches!(revoked, Err(StoreError::NotFound(_))),
        "{revoked:?}"
    );
    assert_eq!(
        store
            .instance("i-a")
            .await
            .expect("get")
            .expect("row")
            .environment,
        "a"
    );
}
