//! The object store trait against a real moto_server (S3) and against a local directory.

mod common;

use std::path::Path;

use common::moto::{Moto, block_on};
use hostmanager::config::{AwsConfig, ChecksumPolicy};
use hostmanager::store::{LocalStore, ObjectStore, PutOptions, PutOutcome, S3Store, StoreError};

fn s3_store(moto: &Moto, bucket: &str, checksums: ChecksumPolicy) -> S3Store {
    let settings = AwsConfig {
        region: Some("us-east-1".into()),
        endpoint_url: Some(moto.endpoint()),
        force_path_style: true,
        checksums,
        imds_endpoint: "http://127.0.0.1:9".into(),
        imds_timeout: std::time::Duration::from_millis(200),
    };
    block_on(async {
        let sdk = hostmanager::aws::sdk_config_with_credentials(&settings, "test", "test")
            .await
            .expect("sdk config");
        S3Store::new(hostmanager::aws::s3_client(&sdk, &settings), bucket)
    })
}

fn exercise(store: &dyn ObjectStore, scratch: &Path) {
    let file = scratch.join("payload");
    let payload: Vec<u8> = (0..300_000u32).flat_map(|n| n.to_le_bytes()).collect();
    std::fs::write(&file, &payload).expect("write");
    let create_only = PutOptions {
        if_none_match: true,
        content_type: Some("application/gzip".into()),
    };
    block_on(async {
        assert_eq!(
            store
                .put_file("logs/a.gz", &file, create_only.clone())
                .await
                .expect("put"),
            PutOutcome::Created
        );
        std::fs::write(&file, b"other bytes").expect("rewrite");
        assert_eq!(
            store
                .put_file("logs/a.gz", &file, create_only)
                .await
                .expect("put again"),
            PutOutcome::AlreadyExists,
            "a create-only put never replaces"
        );
        let out = scratch.join("out");
        let downloaded = store
            .get_to_file("logs/a.gz", None, &out, 10 << 20)
            .await
            .expect("get");
        assert_eq!(std::fs::read(&out).expect("read"), payload);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "a download is readable by its owner only");
        assert_eq!(downloaded.bytes, payload.len() as u64);
        assert_eq!(
            downloaded.sha256,
            hostmanager::deploy::hex(&<sha2::Sha256 as sha2::Digest>::digest(&payload))
        );
        assert!(matches!(
            store.get_to_file("logs/a.gz", None, &out, 1000).await,
            Err(StoreError::TooLarge { .. })
        ));
        assert!(matches!(
            store.get_to_file("missing", None, &out, 1000).await,
            Err(StoreError::NotFound { .. })
        ));
        assert_eq!(
            store.head("logs/a.gz").await.expect("head").map(|m| m.size),
            Some(payload.len() as u64)
        );
        assert_eq!(store.head("missing").await.expect("head"), None);
        let keys: Vec<String> = store
            .list("logs/")
            .await
            .expect("list")
            .into_iter()
            .map(|m| m.key)
            .collect();
        assert_eq!(keys, ["logs/a.gz"]);
        store.delete("logs/a.gz").await.expect("delete");
        assert_eq!(store.head("logs/a.gz").await.expect("head"), None);
    });
}

#[test]
fn s3_store_against_moto_with_both_checksum_policies() {
    let moto = Moto::start();
    let scratch = tempfile::tempdir().expect("tempdir");
    for (bucket, policy) in [
        ("hm-when-required", ChecksumPolicy::WhenRequired),
        ("hm-when-supported", ChecksumPolicy::WhenSupported),
    ] {
        moto.create_bucket(bucket);
        exercise(&s3_store(&moto, bucket, policy), scratch.path());
    }
}

#[test]
fn local_store_behaves_the_same() {
    let scratch = tempfile::tempdir().expect("tempdir");
    exercise(
        &LocalStore::new(scratch.path().join("bucket")),
        scratch.path(),
    );
}

#[test]
fn large_files_go_up_in_parts_create_only_with_a_verifiable_etag() {
    let moto = Moto::start();
    moto.create_bucket("hm-multipart");
    let store = s3_store(&moto, "hm-multipart", ChecksumPolicy::WhenRequired).with_multipart(
        hostmanager::store::Multipart {
            threshold: 6 << 20,
            part_size: 5 << 20,
            concurrency: 2,
        },
    );
    let scratch = tempfile::tempdir().expect("tempdir");
    let file = scratch.path().join("big");
    // 12 MiB: three parts (5 + 5 + 2).
    let payload: Vec<u8> = (0..(3 << 20) as u32)
        .flat_map(|n| n.to_le_bytes())
        .collect();
    std::fs::write(&file, &payload).expect("write");
    assert_eq!(store.part_size_for(payload.len() as u64), Some(5 << 20));
    let create_only = PutOptions {
        if_none_match: true,
        content_type: None,
    };
    block_on(async {
        assert_eq!(
            store
                .put_file("logs/big.gz", &file, create_only.clone())
                .await
                .expect("multipart put"),
            PutOutcome::Created
        );
        let stored = store
            .head("logs/big.gz")
            .await
            .expect("head")
            .expect("exists");
        assert_eq!(stored.size, payload.len() as u64);
        let expected = hostmanager::store::file_etag(&file, Some(5 << 20)).expect("etag");
        assert!(expected.ends_with("-3"), "{expected}");
        assert_eq!(stored.etag.as_deref(), Some(expected.as_str()));
        assert_eq!(
            store
                .put_file("logs/big.gz", &file, create_only)
                .await
                .expect("second put"),
            PutOutcome::AlreadyExists
        );
        let out = scratch.path().join("out");
        store
            .get_to_file("logs/big.gz", None, &out, 64 << 20)
            .await
            .expect("get");
        assert_eq!(std::fs::read(&out).expect("read"), payload);
    });
}

#[test]
fn unfinished_multipart_uploads_under_a_prefix_are_aborted() {
    let moto = Moto::start();
    moto.create_bucket("hm-orphans");
    let store = s3_store(&moto, "hm-orphans", ChecksumPolicy::WhenRequired);
    let client = moto.s3();
    block_on(async {
        for key in ["mine/a.gz", "mine/b.gz", "theirs/c.gz"] {
            client
                .create_multipart_upload()
                .bucket("hm-orphans")
                .key(key)
                .send()
                .await
                .expect("create upload");
        }
        assert_eq!(store.abort_unfinished("mine/").await.expect("abort"), 2);
        let left = client
            .list_multipart_uploads()
            .bucket("hm-orphans")
            .send()
            .await
            .expect("list");
        let keys: Vec<&str> = left.uploads().iter().filter_map(|u| u.key()).collect();
        assert_eq!(keys, ["theirs/c.gz"]);
        let local = LocalStore::new(std::env::temp_dir().join("hm-none"));
        assert_eq!(local.abort_unfinished("mine/").await.expect("local"), 0);
    });
}
