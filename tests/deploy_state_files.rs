//! The files a deployment cannot run without (its environment properties, a queued
//! configuration's change) missing or corrupt: the job fails naming the file, an event says so,
//! and the app never starts without its environment.

mod common;

use std::path::Path;
use std::time::Duration;

use common::bundles::{Entry, sample};
use common::procs::hook_processes;
use common::{TestHost, wait_for};
use nix::sys::signal::Signal;

fn json(output: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "not JSON ({error}): {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn env_file(host: &TestHost, id: &serde_json::Value) -> std::path::PathBuf {
    host.path(&format!("var/lib/hostmanager/deployments/{id}.env.json"))
}

/// An error event of deployment `id` that names `file`.
fn error_event_naming(host: &TestHost, id: &serde_json::Value, file: &Path) -> serde_json::Value {
    let file = file.display().to_string();
    wait_for(
        &format!("an error event naming {file}"),
        Duration::from_secs(20),
        || {
            host.events().into_iter().find(|e| {
                e["severity"] == "error"
                    && e["deployment_id"] == *id
                    && e["message"].as_str().is_some_and(|m| m.contains(&file))
            })
        },
    )
}

#[test]
fn a_restart_or_rollback_without_its_properties_fails_naming_the_file() {
    let mut host = TestHost::new();
    host.start();
    let bundles = tempfile::tempdir().expect("tempdir");
    let v1 = host.deploy(
        &sample(bundles.path(), "v1", &[]),
        &["--env", "GREETING=one"],
    );
    let v2 = host.deploy(
        &sample(bundles.path(), "v2", &[]),
        &["--env", "GREETING=two"],
    );
    assert_eq!(v2["status"], "succeeded", "{v2:#}");
    let serving_pid = host.status()["processes"][0]["pid"].clone();

    let v2_env = env_file(&host, &v2["id"]);
    std::fs::remove_file(&v2_env).expect("remove v2's properties");
    let restart = json(&host.cli(&["restart", "--wait", "--json"]));
    assert_eq!(restart["status"], "failed", "{restart:#}");
    let message = restart["message"].as_str().expect("message");
    assert!(
        message.contains(&v2_env.display().to_string()) && message.contains("missing"),
        "{message}"
    );
    error_event_naming(&host, &restart["id"], &v2_env);
    assert_eq!(
        host.status()["processes"][0]["pid"],
        serving_pid,
        "v2 keeps running untouched"
    );
    assert_eq!(host.body("/env/GREETING"), "two\n");

    let v1_env = env_file(&host, &v1["id"]);
    std::fs::write(&v1_env, "{\"GREETING\": ").expect("corrupt v1's properties");
    let rollback = json(&host.cli(&["rollback", "--wait", "--json"]));
    assert_eq!(rollback["status"], "failed", "{rollback:#}");
    let message = rollback["message"].as_str().expect("message");
    assert!(message.contains(&v1_env.display().to_string()), "{message}");
    error_event_naming(&host, &rollback["id"], &v1_env);
    assert_eq!(host.status()["release"]["deployment_id"], v2["id"]);
    assert_eq!(host.body("/env/GREETING"), "two\n");
}

#[test]
fn recovery_never_starts_the_app_without_its_properties() {
    let mut host = TestHost::new();
    host.start();
    let bundles = tempfile::tempdir().expect("tempdir");
    let v1 = host.deploy(
        &sample(bundles.path(), "v1", &[]),
        &["--env", "GREETING=one"],
    );
    assert_eq!(v1["status"], "succeeded", "{v1:#}");
    host.stop_agent(Signal::SIGKILL, Duration::from_secs(5));
    // The apps are gone while the agent is down (as after a reboot): stop them, then drop
    // stop-apps' hold so that the next agent's recovery does try to start the serving release.
    host.cli_ok(&["stop-apps"]);
    std::fs::remove_file(host.path("var/lib/hostmanager/apps-stopped")).expect("the hold");
    let v1_env = env_file(&host, &v1["id"]);
    std::fs::write(&v1_env, "not json").expect("corrupt v1's properties");

    host.start();
    let event = error_event_naming(&host, &v1["id"], &v1_env);
    assert!(
        event["message"]
            .as_str()
            .is_some_and(|m| m.contains("not started")),
        "{event:#}"
    );
    let status = host.status();
    assert_eq!(
        status["processes"].as_array().map(Vec::len),
        Some(0),
        "nothing started without its environment: {status:#}"
    );
}

#[test]
fn a_queued_configuration_whose_change_is_unreadable_fails_naming_the_file() {
    let mut host = TestHost::new();
    host.start();
    let bundles = tempfile::tempdir().expect("tempdir");
    let mark = tempfile::tempdir().expect("mark");
    host.deploy_ok(&sample(bundles.path(), "v1", &[]));
    // v2's prebuild hook holds the deploy task, so the configuration stays queued.
    let hook = "#!/bin/sh\ntouch \"$MARK/paused\"\nwhile :; do sleep 0.05; done\n";
    let entry = Entry::File(
        ".platform/hooks/prebuild/01_pause.sh",
        hook.as_bytes(),
        0o755,
    );
    let v2 = sample(bundles.path(), "v2", &[entry]);
    let mark_env = format!("MARK={}", mark.path().display());
    host.cli_ok(&["deploy", v2.to_str().expect("utf-8"), "--env", &mark_env]);
    wait_for("v2's prebuild hook", Duration::from_secs(30), || {
        mark.path().join("paused").exists().then_some(())
    });
    assert_eq!(
        hook_processes(host.root.path(), "01_pause.sh").len(),
        1,
        "the paused hook is seen, by this test's root"
    );
    let queued = json(&host.cli(&["configure", "--set", "X=1", "--json"]));
    assert_eq!(queued["status"], "queued", "{queued:#}");
    host.stop_agent(Signal::SIGKILL, Duration::from_secs(5));
    let change = host.path(&format!(
        "var/lib/hostmanager/deployments/{}.change.json",
        queued["id"]
    ));
    std::fs::remove_file(&change).expect("remove the queued change");

    host.start();
    let record = wait_for(
        "the configuration to conclude",
        Duration::from_secs(20),
        || {
            let records = json(&host.cli(&["deployments", "--json"]));
            let record = records
                .as_array()?
                .iter()
                .find(|r| r["id"] == queued["id"])?
                .clone();
            (record["status"] != "queued" && record["status"] != "running").then_some(record)
        },
    );
    assert_eq!(record["status"], "failed", "{record:#}");
    let message = record["message"].as_str().expect("message");
    assert!(message.contains(&change.display().to_string()), "{message}");
    error_event_naming(&host, &queued["id"], &change);
    assert_eq!(host.body("/"), "Hello from v1\n");
    wait_for(
        "recovery to kill the orphaned hook",
        Duration::from_secs(10),
        || {
            hook_processes(host.root.path(), "01_pause.sh")
                .is_empty()
                .then_some(())
        },
    );
}

/// The `<id>.json` records in the deployments directory, ascending.
fn records_on_disk(host: &TestHost) -> Vec<u64> {
    let mut ids: Vec<u64> = std::fs::read_dir(host.path("var/lib/hostmanager/deployments"))
        .expect("deployments dir")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".json")?.parse().ok())
        .collect();
    ids.sort_unstable();
    ids
}

#[test]
fn old_deployment_records_are_pruned_by_count_and_age_but_never_a_kept_releases() {
    let mut host = TestHost::new().set("deploy", "records_keep", 3);
    host.start();
    let bundles = tempfile::tempdir().expect("tempdir");
    host.deploy_ok(&sample(bundles.path(), "v1", &[]));
    host.deploy_ok(&sample(bundles.path(), "v2", &[]));
    for _ in 0..4 {
        let restart = json(&host.cli(&["restart", "--wait", "--json"]));
        assert_eq!(restart["status"], "succeeded", "{restart:#}");
    }
    // 1 is v1, kept for rollback; 2 and 3 are beyond the newest three.
    wait_for(
        "records beyond the count pruned",
        Duration::from_secs(10),
        || (records_on_disk(&host) == [1, 4, 5, 6]).then_some(()),
    );
    let listed = json(&host.cli(&["deployments", "--json"]));
    let listed: Vec<u64> = listed
        .as_array()
        .expect("records")
        .iter()
        .filter_map(|r| r["id"].as_u64())
        .collect();
    assert_eq!(listed, [6, 5, 4, 1]);

    host.stop_agent(Signal::SIGTERM, Duration::from_secs(10));
    for id in [1, 4] {
        let path = host.path(&format!("var/lib/hostmanager/deployments/{id}.json"));
        let mut record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("record")).expect("json");
        record["created_ms"] = 0.into();
        record["finished_ms"] = 0.into();
        std::fs::write(&path, record.to_string()).expect("age the record");
    }
    host.start();
    assert_eq!(
        records_on_disk(&host),
        [1, 5, 6],
        "4 is older than deploy.records_max_age; 1 is v1's, kept for rollback"
    );
    assert!(
        !env_file(&host, &4.into()).exists(),
        "its properties go too"
    );
    assert!(env_file(&host, &1.into()).exists(), "v1's properties stay");
}
