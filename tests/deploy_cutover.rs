//! Zero-downtime cutovers under load, health-gated rollbacks, explicit rollback, retention.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::bundles::{Entry, sample};
use common::load::{Load, assert_every_request_served};
use common::procs::hook_processes;
use common::{TestHost, wait_for};

#[test]
fn ten_deploys_and_three_restarts_under_load_fail_no_request() {
    let mut host = TestHost::new();
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    host.deploy_ok(&sample(dir.path(), "v0", &[]));
    let load = Load::start(host.proxy_port, "/", 2);
    let mut valid = BTreeSet::from(["Hello from v0\n".to_string()]);
    for n in 1..=10 {
        let version = format!("v{n}");
        valid.insert(format!("Hello from {version}\n"));
        host.deploy_ok(&sample(dir.path(), &version, &[]));
        if n % 3 == 0 {
            let restarted = host.cli(&["restart", "--wait", "--json"]);
            let restarted: serde_json::Value =
                serde_json::from_slice(&restarted.stdout).expect("json");
            assert_eq!(restarted["status"], "succeeded", "{restarted:#}");
            assert_eq!(restarted["kind"], "restart");
        }
    }
    let outcomes = load.finish();
    assert_eq!(host.body("/"), "Hello from v10\n");
    assert_every_request_served(&outcomes, &valid);
    let status = host.status();
    assert_eq!(
        status["processes"].as_array().expect("processes").len(),
        1,
        "old web processes were all stopped"
    );
}

#[test]
fn a_new_version_that_fails_its_health_check_never_takes_traffic() {
    let mut host = TestHost::new().set("deploy", "health_gate_timeout", "2s");
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    let v1 = host.deploy_ok(&sample(dir.path(), "v1", &[]));
    let load = Load::start(host.proxy_port, "/", 1);
    let record = host.deploy(
        &sample(dir.path(), "v2", &[]),
        &["--env", "HEALTH_STATUS=500"],
    );
    let outcomes = load.finish();
    // The gate ran for 2 s: with no requests at all, "v1 served throughout" would mean nothing.
    assert!(
        outcomes.len() > 20,
        "the load ran: {} requests",
        outcomes.len()
    );
    assert_eq!(record["status"], "failed", "{record:#}");
    let message = record["message"].as_str().expect("message");
    assert!(
        message.starts_with("health-gate:") && message.contains("HTTP 500"),
        "{message}"
    );
    assert_eq!(host.body("/"), "Hello from v1\n");
    assert_eq!(host.status()["release"]["deployment_id"], v1["id"]);
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Ok((200, body)) if body == "Hello from v1\n")),
        "v1 served throughout"
    );
    let processes = host.status()["processes"].clone();
    assert!(
        processes
            .as_array()
            .expect("list")
            .iter()
            .all(|p| p["release"] == v1["id"]),
        "v2's process is gone: {processes}"
    );
    let event = host
        .events()
        .into_iter()
        .find(|e| e["deployment_id"] == record["id"] && e["severity"] == "error")
        .expect("event");
    assert!(
        event["message"]
            .as_str()
            .expect("text")
            .contains("HTTP 500"),
        "the event says why: {event:#}"
    );
    assert!(
        event["details"]["context"]["stderr_tail"].is_string(),
        "with the web process's stderr: {event:#}"
    );
}

#[test]
fn all_at_once_rolls_back_to_the_old_release_when_the_new_one_is_unhealthy() {
    let mut host = TestHost::new()
        .set("deploy", "strategy", "all-at-once")
        .set("deploy", "health_gate_timeout", "2s");
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    host.deploy_ok(&sample(dir.path(), "v1", &[]));
    let record = host.deploy(
        &sample(dir.path(), "v2", &[]),
        &["--env", "HEALTH_STATUS=503"],
    );
    assert_eq!(record["status"], "rolled_back", "{record:#}");
    wait_for("v1 to serve again", Duration::from_secs(10), || {
        (host.get("/").ok()?.body == "Hello from v1\n").then_some(())
    });
    assert_eq!(host.status()["processes"][0]["port"], host.app_port);
}

#[test]
fn a_failing_postdeploy_hook_rolls_back_to_the_previous_release() {
    let mut host = TestHost::new();
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    let v1 = host.deploy_ok(&sample(dir.path(), "v1", &[]));
    let hook = b"#!/bin/sh\necho 'cache warm-up failed' >&2\nexit 4\n";
    let v2 = sample(
        dir.path(),
        "v2",
        &[Entry::File(
            ".platform/hooks/postdeploy/01_warm.sh",
            hook,
            0o755,
        )],
    );
    let record = host.deploy(&v2, &[]);
    assert_eq!(record["status"], "rolled_back", "{record:#}");
    let message = record["message"].as_str().expect("message");
    assert!(
        message.contains("01_warm.sh") && message.contains("rolled back to sample-v1"),
        "{message}"
    );
    assert_eq!(host.body("/"), "Hello from v1\n");
    let status = host.status();
    assert_eq!(status["release"]["deployment_id"], v1["id"]);
    assert!(
        !host
            .path(&format!("var/app/releases/{}", record["id"]))
            .exists(),
        "the failed release is removed"
    );
}

#[test]
fn rollback_returns_to_the_previous_release_and_old_releases_are_pruned() {
    let mut host = TestHost::new().set("deploy", "releases_to_keep", 2);
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut records = Vec::new();
    for n in 1..=4 {
        records.push(host.deploy_ok(&sample(dir.path(), &format!("v{n}"), &[])));
    }
    let releases: Vec<String> = std::fs::read_dir(host.path("var/app/releases"))
        .expect("releases")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(releases.len(), 2, "releases_to_keep = 2: {releases:?}");
    let rolled = host.cli(&["rollback", "--wait", "--json"]);
    let rolled: serde_json::Value = serde_json::from_slice(&rolled.stdout).expect("json");
    assert_eq!(rolled["status"], "succeeded", "{rolled:#}");
    assert_eq!(host.body("/"), "Hello from v3\n");
    assert_eq!(
        host.status()["release"]["deployment_id"],
        records[2]["id"],
        "deployment 3 serves again under its own id"
    );
    let again = host.cli(&["rollback", "--wait"]);
    assert!(!again.status.success(), "nothing older is kept");
    assert!(String::from_utf8_lossy(&again.stderr).contains("no previous release"));
}

#[test]
fn non_web_processes_are_replaced_after_the_web_cutover() {
    let mut host = TestHost::new();
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    let procfile = b"web: python3 application.py\nworker: exec sleep 600\n";
    let v1 = host.deploy_ok(&sample(
        dir.path(),
        "v1",
        &[Entry::File("Procfile", procfile, 0o644)],
    ));
    let v2 = host.deploy_ok(&sample(
        dir.path(),
        "v2",
        &[Entry::File("Procfile", procfile, 0o644)],
    ));
    let steps: Vec<&str> = v2["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    let position = |name: &str| {
        steps
            .iter()
            .position(|s| *s == name)
            .unwrap_or_else(|| panic!("{name} in {steps:?}"))
    };
    assert!(
        position("switch-traffic") < position("start-worker"),
        "{steps:?}"
    );
    assert!(position("stop-old") < position("start-worker"), "{steps:?}");
    let status = host.status();
    let processes = status["processes"].as_array().expect("processes");
    let mut names: Vec<(String, u64)> = processes
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or_default().to_string(),
                p["release"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    names.sort();
    let id = v2["id"].as_u64().expect("id");
    assert_eq!(
        names,
        [("web".to_string(), id), ("worker".to_string(), id)],
        "v1 ({}) is gone",
        v1["id"]
    );
    assert!(processes.iter().all(|p| p["state"] == "running"));
    assert!(
        processes
            .iter()
            .find(|p| p["name"] == "worker")
            .is_some_and(|p| p["port"].is_null()),
        "only web gets a PORT"
    );
}

#[test]
fn the_whole_deployment_has_a_budget_and_the_old_release_keeps_serving() {
    let mut host =
        TestHost::new()
            .set("deploy", "timeout", "2s")
            .set("deploy", "hook_timeout", "60s");
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    host.deploy_ok(&sample(dir.path(), "v1", &[]));
    let slow = b"#!/bin/sh\nsleep 30\n";
    let record = host.deploy(
        &sample(
            dir.path(),
            "v2",
            &[Entry::File(
                ".platform/hooks/prebuild/01_slow.sh",
                slow,
                0o755,
            )],
        ),
        &[],
    );
    assert_eq!(record["status"], "failed", "{record:#}");
    let message = record["message"].as_str().expect("message");
    assert!(
        message.contains("timed out after 2s") && message.contains("hooks-prebuild"),
        "{message}"
    );
    assert_eq!(host.body("/"), "Hello from v1\n");
    wait_for("the slow hook to be killed", Duration::from_secs(5), || {
        hook_processes(host.root.path(), "01_slow.sh")
            .is_empty()
            .then_some(())
    });
}
