//! `kill -9` of the agent in the cutover itself, where the commit point (`flip`) decides:
//! interrupted before it, the deployment is rolled back and the old release serves; after it,
//! the deployment is finished and the new release serves. Either way one release runs, once,
//! and nginx proxies to it. The agent stops at a step through `HOSTMANAGER_TEST_PAUSE_AT`.

mod common;

use std::time::Duration;

use common::bundles::{Entry, sample};
use common::procs::alive;
use common::{TestHost, wait_for};
use nix::sys::signal::Signal;
use serde_json::Value;

const PROCFILE: &[u8] = b"web: python3 application.py\nworker: exec sleep 600\n";

/// What ran before the crash and what the restarted agent concluded.
struct Crash {
    v1: Value,
    v2: Value,
    /// Pids of each release's processes while the agent was paused.
    v1_pids: Vec<i64>,
    v2_pids: Vec<i64>,
    record: Value,
}

fn pids_of(status: &Value, release: &Value) -> Vec<i64> {
    status["processes"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter(|p| p["release"] == *release)
                .filter_map(|p| p["pid"].as_i64())
                .collect()
        })
        .unwrap_or_default()
}

/// Deploys v1, restarts the agent to stop at `pause`, deploys v2, kills the agent there with
/// SIGKILL, starts it again and waits for v2's deployment to conclude.
fn crash_at(mut host: TestHost, pause: &str) -> (TestHost, Crash) {
    host.start();
    let bundles = tempfile::tempdir().expect("tempdir");
    let worker = Entry::File("Procfile", PROCFILE, 0o644);
    let v1 = host.deploy_ok(&sample(bundles.path(), "v1", std::slice::from_ref(&worker)));
    host.stop_agent(Signal::SIGTERM, Duration::from_secs(10));
    host.start_with_env(&[("HOSTMANAGER_TEST_PAUSE_AT", pause)]);
    let bundle = sample(bundles.path(), "v2", &[worker]);
    let queued = host.cli_ok(&["deploy", bundle.to_str().expect("utf-8"), "--json"]);
    let v2: Value = serde_json::from_str(&queued).expect("json");
    let deploy_log = host.path("var/log/hostmanager/deploy.log");
    let (step, when) = match pause.strip_suffix(":done") {
        Some(step) => (step, "after"),
        None => (pause, "before"),
    };
    let marker = format!(
        "[deployment {}] paused {when} the work of step {step}",
        v2["id"]
    );
    wait_for(
        &format!("the agent to pause at {pause}"),
        Duration::from_secs(30),
        || {
            std::fs::read_to_string(&deploy_log)
                .ok()?
                .contains(&marker)
                .then_some(())
        },
    );
    let status = host.status();
    let (v1_pids, v2_pids) = (pids_of(&status, &v1["id"]), pids_of(&status, &v2["id"]));
    host.stop_agent(Signal::SIGKILL, Duration::from_secs(5));
    host.start();
    let record = wait_for(
        "the interrupted deployment to conclude",
        Duration::from_secs(30),
        || {
            let records: Value =
                serde_json::from_str(&host.cli_ok(&["deployments", "--json"])).ok()?;
            let record = records.as_array()?.iter().find(|r| r["id"] == v2["id"])?;
            let done = record["status"] != "running" && record["status"] != "queued";
            done.then(|| record.clone())
        },
    );
    let crash = Crash {
        v1,
        v2,
        v1_pids,
        v2_pids,
        record,
    };
    (host, crash)
}

/// Only `release` runs, each of its processes once, behind nginx and `current`.
fn assert_serves_alone(host: &TestHost, release: &Value, version: &str, gone: &[i64]) {
    let processes = wait_for(
        "the serving release's web and worker",
        Duration::from_secs(20),
        || {
            let status = host.status();
            let processes = status["processes"].as_array()?.clone();
            (processes.len() >= 2).then_some(processes)
        },
    );
    let mut names: Vec<&str> = processes
        .iter()
        .map(|p| {
            assert_eq!(
                p["release"], *release,
                "only one release runs: {processes:?}"
            );
            p["name"].as_str().expect("name")
        })
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["web", "worker"], "each process once: {processes:?}");
    for pid in gone {
        wait_for(
            &format!("the other release's process {pid} to be gone"),
            Duration::from_secs(20),
            || (!alive(*pid as i32)).then_some(()),
        );
    }
    assert_eq!(host.status()["release"]["deployment_id"], *release);
    // A release the recovery started again is listed as soon as its process is spawned; it
    // answers once the app has bound its port (nginx says 502 until then).
    let expected = format!("Hello from {version}\n");
    wait_for(
        "the release to answer through nginx",
        Duration::from_secs(20),
        || (host.body("/") == expected).then_some(()),
    );
    let current = std::fs::read_link(host.path("var/app/current")).expect("current link");
    assert_eq!(current, host.path(&format!("var/app/releases/{release}")));
}

fn assert_rolled_back(host: &TestHost, crash: &Crash, pause: &str) {
    assert_eq!(
        crash.record["status"], "failed",
        "{pause}: {:#}",
        crash.record
    );
    let message = crash.record["message"].as_str().expect("message");
    assert!(
        message.contains("agent restarted during step") && message.contains("rolled back"),
        "{pause}: {message}"
    );
    assert!(!crash.v2_pids.is_empty(), "{pause}: v2 had started");
    assert_serves_alone(host, &crash.v1["id"], "v1", &crash.v2_pids);
}

fn assert_finished(host: &TestHost, crash: &Crash, pause: &str) {
    assert_eq!(
        crash.record["status"], "succeeded",
        "{pause}: {:#}",
        crash.record
    );
    assert_serves_alone(host, &crash.v2["id"], "v2", &crash.v1_pids);
}

#[test]
fn a_crash_with_nginx_switched_but_before_the_flip_rolls_back() {
    for pause in ["switch-traffic:done", "verify-through-nginx", "flip"] {
        let (host, crash) = crash_at(TestHost::new(), pause);
        assert_rolled_back(&host, &crash, pause);
    }
}

#[test]
fn a_crash_once_the_flip_is_written_finishes_the_deployment() {
    for pause in ["flip:done", "stop-old", "start-worker"] {
        let (host, crash) = crash_at(TestHost::new(), pause);
        assert_finished(&host, &crash, pause);
    }
}

#[test]
fn all_at_once_a_crash_after_the_old_release_stopped_starts_it_again() {
    let host = TestHost::new().set("deploy", "strategy", "all-at-once");
    let (host, crash) = crash_at(host, "stop-old:done");
    assert_eq!(crash.record["status"], "failed", "{:#}", crash.record);
    assert!(crash.v2_pids.is_empty(), "v2 had not started yet");
    assert_serves_alone(&host, &crash.v1["id"], "v1", &crash.v1_pids);
}
