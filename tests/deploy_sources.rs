//! Bundle sources: S3 through a real moto_server, HTTPS with a private CA, checksums.

mod common;

use std::io::{Read, Write};
use std::sync::Arc;

use common::bundles::{Entry, sample};
use common::moto::Moto;
use common::{TestHost, wait_for};

fn sha256_hex(bytes: &[u8]) -> String {
    hostmanager::deploy::hex(&<sha2::Sha256 as sha2::Digest>::digest(bytes))
}

#[test]
fn s3_bundles_deploy_and_a_wrong_sha256_is_rejected_while_v1_keeps_serving() {
    let moto = Moto::start();
    moto.create_bucket("bundles");
    let dir = tempfile::tempdir().expect("tempdir");
    let v1 = std::fs::read(sample(dir.path(), "v1", &[])).expect("v1");
    let v2 = std::fs::read(sample(dir.path(), "v2", &[])).expect("v2");
    moto.put("bundles", "app/v1.zip", v1.clone());
    moto.put("bundles", "app/v2.zip", v2.clone());
    let mut host = TestHost::new()
        .set("aws", "endpoint_url", moto.endpoint())
        .set("aws", "region", "us-east-1");
    host.start();

    let first = host.cli(&[
        "deploy",
        "s3://bundles/app/v1.zip",
        "--sha256",
        &sha256_hex(&v1),
        "--wait",
        "--json",
    ]);
    let first: serde_json::Value = serde_json::from_slice(&first.stdout).expect("json");
    assert_eq!(
        first["status"],
        "succeeded",
        "{first:#}\n{}",
        common::tail(&host.agent_log(), 30)
    );
    assert_eq!(host.body("/"), "Hello from v1\n");
    assert_eq!(host.status()["release"]["sha256"], sha256_hex(&v1));
    assert_eq!(
        host.status()["release"]["source"],
        "s3://bundles/app/v1.zip"
    );

    let wrong = sha256_hex(b"not the bundle");
    let second = host.cli(&[
        "deploy",
        "s3://bundles/app/v2.zip",
        "--sha256",
        &wrong,
        "--wait",
        "--json",
    ]);
    let second: serde_json::Value = serde_json::from_slice(&second.stdout).expect("json");
    assert_eq!(second["status"], "failed");
    let message = second["message"].as_str().expect("message");
    assert!(
        message.starts_with("verify:") && message.contains("sha256 mismatch"),
        "{message}"
    );
    assert!(
        message.contains(&sha256_hex(&v2)),
        "the message names the actual digest: {message}"
    );
    assert_eq!(host.body("/"), "Hello from v1\n");

    let missing = host.cli(&["deploy", "s3://bundles/app/none.zip", "--wait", "--json"]);
    let missing: serde_json::Value = serde_json::from_slice(&missing.stdout).expect("json");
    assert!(
        missing["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("fetch:") && m.contains("not found")),
        "{missing:#}"
    );
}

/// A one-shot HTTPS server with a certificate from its own CA; serves `body` on every GET.
fn https_server(body: Vec<u8>) -> (u16, String) {
    https_server_requiring(body, None)
}

/// `https_server`, answering 403 to a request whose first line lacks `required` (a signature).
fn https_server_requiring(body: Vec<u8>, required: Option<String>) -> (u16, String) {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let key = rcgen::KeyPair::generate().expect("key");
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("params");
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let cert = params.signed_by(&key, &issuer).expect("cert");
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        tokio_rustls::rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der())
            .expect("key der"),
    )
    .expect("server config");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let config = Arc::new(config);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut connection =
                tokio_rustls::rustls::ServerConnection::new(config.clone()).expect("tls");
            let mut stream = stream;
            let mut tls = tokio_rustls::rustls::Stream::new(&mut connection, &mut stream);
            let mut request = [0u8; 4096];
            let Ok(read) = tls.read(&mut request) else {
                continue;
            };
            let head = String::from_utf8_lossy(&request[..read]);
            let first_line = head.lines().next().unwrap_or_default();
            if required.as_deref().is_some_and(|r| !first_line.contains(r)) {
                let _ = write!(
                    tls,
                    "HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = tls.flush();
                tls.conn.send_close_notify();
                let _ = tls.flush();
                continue;
            }
            let _ = write!(
                tls,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = tls.write_all(&body);
            let _ = tls.flush();
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    (port, ca.pem())
}

#[test]
fn https_bundles_verify_against_the_configured_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = std::fs::read(sample(dir.path(), "v1", &[])).expect("bundle");
    let (port, ca_pem) = https_server(bundle.clone());
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).expect("ca");
    let url = format!("https://127.0.0.1:{port}/app-v1.zip");

    let mut untrusting = TestHost::new();
    untrusting.start();
    let refused = untrusting.cli(&["deploy", &url, "--wait", "--json"]);
    let refused: serde_json::Value = serde_json::from_slice(&refused.stdout).expect("json");
    assert_eq!(
        refused["status"], "failed",
        "an unknown CA is refused: {refused:#}"
    );
    // Refused for its certificate, not for a timeout, a closed port or a DNS error.
    let message = refused["message"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(
        message.starts_with("fetch:")
            && message.contains("certificate")
            && (message.contains("unknownissuer") || message.contains("unknown issuer")),
        "{refused:#}"
    );
    drop(untrusting);

    let mut host = TestHost::new().set("bundle", "ca_file", ca_file.display().to_string());
    host.start();
    let record = host.cli(&[
        "deploy",
        &url,
        "--sha256",
        &sha256_hex(&bundle),
        "--wait",
        "--json",
    ]);
    let record: serde_json::Value = serde_json::from_slice(&record.stdout).expect("json");
    assert_eq!(
        record["status"],
        "succeeded",
        "{record:#}\n{}",
        common::tail(&host.agent_log(), 30)
    );
    assert_eq!(record["version_label"], "app-v1");
    assert_eq!(host.body("/"), "Hello from v1\n");
}

#[test]
fn a_presigned_url_is_fetched_whole_and_shown_without_its_signature() {
    const SIGNATURE: &str = "f00dfacade5ecret";
    const CREDENTIAL: &str = "AKIAFAKECREDENTIAL";
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = std::fs::read(sample(dir.path(), "v1", &[])).expect("bundle");
    let (port, ca_pem) = https_server(bundle.clone());
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).expect("ca");
    let url = format!(
        "https://127.0.0.1:{port}/app-v1.zip?X-Amz-Algorithm=AWS4-HMAC-SHA256\
         &X-Amz-Credential={CREDENTIAL}&X-Amz-Expires=900&X-Amz-Signature={SIGNATURE}"
    );
    let shown = format!(
        "https://127.0.0.1:{port}/app-v1.zip?X-Amz-Algorithm=AWS4-HMAC-SHA256\
         &X-Amz-Credential=***&X-Amz-Expires=900&X-Amz-Signature=***"
    );
    let mut host = TestHost::new().set("bundle", "ca_file", ca_file.display().to_string());
    host.start();

    // A failure names the bundle, shown.
    let wrong = sha256_hex(b"not the bundle");
    let failed = host.cli(&["deploy", &url, "--sha256", &wrong, "--wait", "--json"]);
    let failed: serde_json::Value = serde_json::from_slice(&failed.stdout).expect("json");
    assert_eq!(failed["status"], "failed", "{failed:#}");
    let message = failed["message"].as_str().expect("message");
    assert!(message.contains(&shown), "{message}");

    let text = host.cli_ok(&["deploy", &url, "--wait"]);
    assert_eq!(host.body("/"), "Hello from v1\n");
    assert_eq!(host.status()["release"]["source"], shown.as_str());
    let records: serde_json::Value =
        serde_json::from_str(&host.cli_ok(&["deployments", "--json"])).expect("records");
    assert_eq!(records[0]["source"], shown.as_str());
    assert_eq!(records[0]["version_label"], "app-v1");

    let mut outputs = vec![
        ("deploy --wait", text),
        ("status", host.cli_ok(&["status"])),
        ("status --json", host.cli_ok(&["status", "--json"])),
        ("deployments", host.cli_ok(&["deployments"])),
        ("deployments --json", records.to_string()),
        ("failed record", failed.to_string()),
        (
            "events",
            host.cli_ok(&["events", "--json", "--limit", "1000"]),
        ),
        ("agent log", host.agent_log()),
    ];
    for file in ["state.json", "deployments/1.json", "deployments/2.json"] {
        let path = host.path(&format!("var/lib/hostmanager/{file}"));
        outputs.push((file, std::fs::read_to_string(&path).expect("state file")));
    }
    for (what, output) in outputs {
        assert!(
            !output.contains(SIGNATURE) && !output.contains(CREDENTIAL),
            "{what} shows the signature:\n{output}"
        );
    }
}

#[test]
fn a_presigned_deployment_queued_when_the_agent_dies_is_fetched_whole_by_the_next_agent() {
    const SIGNATURE: &str = "X-Amz-Signature=5eedf00d";
    let dir = tempfile::tempdir().expect("tempdir");
    let mark = tempfile::tempdir().expect("mark");
    let served = tempfile::tempdir().expect("served");
    let bundle = std::fs::read(sample(served.path(), "v2", &[])).expect("bundle");
    let (port, ca_pem) = https_server_requiring(bundle, Some(SIGNATURE.to_string()));
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).expect("ca");
    let url = format!("https://127.0.0.1:{port}/app-v2.zip?X-Amz-Expires=900&{SIGNATURE}");
    let mut host = TestHost::new().set("bundle", "ca_file", ca_file.display().to_string());
    host.start();

    // A deployment paused in its prebuild hook keeps the presigned one queued behind it.
    let hook =
        "#!/bin/sh\ntouch \"$MARK/started\"\nwhile [ ! -e \"$MARK/go\" ]; do sleep 0.05; done\n";
    let paused = sample(
        dir.path(),
        "v1",
        &[Entry::File(
            ".platform/hooks/prebuild/01_pause.sh",
            hook.as_bytes(),
            0o755,
        )],
    );
    let mark_env = format!("MARK={}", mark.path().display());
    host.cli_ok(&[
        "deploy",
        paused.to_str().expect("utf-8"),
        "--env",
        &mark_env,
        "--json",
    ]);
    wait_for(
        "the prebuild hook to start",
        std::time::Duration::from_secs(30),
        || mark.path().join("started").exists().then_some(()),
    );
    let queued: serde_json::Value =
        serde_json::from_str(&host.cli_ok(&["deploy", &url, "--json"])).expect("json");
    assert_eq!(queued["status"], "queued", "{queued:#}");
    assert!(!queued.to_string().contains("5eedf00d"), "{queued:#}");
    host.stop_agent(
        nix::sys::signal::Signal::SIGKILL,
        std::time::Duration::from_secs(5),
    );
    host.start();

    let record = wait_for(
        "the queued deployment to conclude",
        std::time::Duration::from_secs(60),
        || {
            let records: serde_json::Value =
                serde_json::from_str(&host.cli_ok(&["deployments", "--json"])).ok()?;
            let record = records
                .as_array()?
                .iter()
                .find(|r| r["id"] == queued["id"])?
                .clone();
            (record["status"] != "running" && record["status"] != "queued").then_some(record)
        },
    );
    assert_eq!(
        record["status"],
        "succeeded",
        "{record:#}\n{}",
        common::tail(&host.agent_log(), 30)
    );
    assert_eq!(host.body("/"), "Hello from v2\n");
    assert!(!record.to_string().contains("5eedf00d"), "{record:#}");
}
