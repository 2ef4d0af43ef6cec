//! `kill -9` of the agent in the middle of a deployment, then a restart: the deployment is
//! rolled back when it had not taken traffic, finished when it had; never a half-flipped release.

mod common;

use std::path::Path;
use std::time::Duration;

use common::bundles::{Entry, sample};
use common::procs::alive;
use common::{TestHost, wait_for};
use nix::sys::signal::Signal;

/// A hook that records its pid in $MARK/<phase>.pid, then waits until $MARK/go exists.
fn pausing_hook(phase: &str) -> String {
    format!(
        "#!/bin/sh\necho $$ >> \"$MARK/{phase}.pid\"\nwhile [ ! -e \"$MARK/go\" ]; do sleep 0.05; done\n"
    )
}

fn pids(path: &Path) -> Vec<i32> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Deploys v2 with a hook paused in `phase`, kills the agent with SIGKILL while it waits,
/// restarts the agent and returns the final record of the deployment.
fn crash_during(
    phase: &str,
    entry: Entry<'_>,
    host: &mut TestHost,
    mark: &Path,
    bundles: &Path,
) -> serde_json::Value {
    let bundle = sample(bundles, "v2", &[entry]);
    let mark_env = format!("MARK={}", mark.display());
    let queued = host.cli_ok(&[
        "deploy",
        bundle.to_str().expect("utf-8"),
        "--env",
        &mark_env,
        "--json",
    ]);
    let id = serde_json::from_str::<serde_json::Value>(&queued).expect("json")["id"].clone();
    let pid_file = mark.join(format!("{phase}.pid"));
    let hook_pid = wait_for(
        &format!("the {phase} hook to start"),
        Duration::from_secs(30),
        || pids(&pid_file).first().copied(),
    );
    host.stop_agent(Signal::SIGKILL, Duration::from_secs(5));
    host.start();
    if phase == "postdeploy" {
        // Finishing a committed deployment re-runs its postdeploy hooks: let them through.
        wait_for(
            "the postdeploy hook to run again",
            Duration::from_secs(30),
            || (pids(&pid_file).len() >= 2).then_some(()),
        );
        std::fs::write(mark.join("go"), "").expect("go");
    }
    let record = wait_for(
        "the interrupted deployment to conclude",
        Duration::from_secs(30),
        || {
            let record: serde_json::Value =
                serde_json::from_str(&host.cli_ok(&["deployments", "--json"])).ok()?;
            let record = record.as_array()?.iter().find(|r| r["id"] == id)?.clone();
            (record["status"] != "running" && record["status"] != "queued").then_some(record)
        },
    );
    wait_for(
        "the paused hook to be killed",
        Duration::from_secs(10),
        || (!alive(hook_pid)).then_some(()),
    );
    record
}

fn assert_only_release_runs(host: &TestHost, release: &serde_json::Value, body: &str) {
    let status = host.status();
    assert_eq!(status["release"]["deployment_id"], *release, "{status:#}");
    let processes = status["processes"].as_array().expect("processes").clone();
    assert!(
        !processes.is_empty() && processes.iter().all(|p| p["release"] == *release),
        "only one release runs: {processes:?}"
    );
    assert_eq!(host.body("/"), body);
    let current = std::fs::read_link(host.path("var/app/current")).expect("current link");
    assert_eq!(current, host.path(&format!("var/app/releases/{release}")));
}

#[test]
fn a_crash_before_the_commit_point_rolls_back_at_every_step() {
    let phases = [
        ("prebuild", ".platform/hooks/prebuild/01_pause.sh"),
        ("predeploy", ".platform/hooks/predeploy/01_pause.sh"),
        ("buildfile", "Buildfile"),
    ];
    for (phase, path) in phases {
        let mut host = TestHost::new();
        host.start();
        let bundles = tempfile::tempdir().expect("tempdir");
        let mark = tempfile::tempdir().expect("mark");
        let v1 = host.deploy_ok(&sample(bundles.path(), "v1", &[]));
        let hook = pausing_hook(phase);
        let buildfile = format!(
            "pause: sh -c '{}'\n",
            hook.lines().skip(1).collect::<Vec<_>>().join("; ")
        );
        let content = if phase == "buildfile" {
            buildfile.into_bytes()
        } else {
            hook.into_bytes()
        };
        let record = crash_during(
            phase,
            Entry::File(path, &content, 0o755),
            &mut host,
            mark.path(),
            bundles.path(),
        );
        assert_eq!(record["status"], "failed", "{phase}: {record:#}");
        let message = record["message"].as_str().expect("message");
        assert!(
            message.contains("agent restarted during step") && message.contains("rolled back"),
            "{phase}: {message}"
        );
        assert_only_release_runs(&host, &v1["id"], "Hello from v1\n");
        assert!(
            !host
                .path(&format!("var/app/releases/{}", record["id"]))
                .exists(),
            "{phase}: half-built release removed"
        );
    }
}

#[test]
fn a_crash_after_the_commit_point_finishes_the_deployment() {
    let mut host = TestHost::new();
    host.start();
    let bundles = tempfile::tempdir().expect("tempdir");
    let mark = tempfile::tempdir().expect("mark");
    host.deploy_ok(&sample(bundles.path(), "v1", &[]));
    let hook = pausing_hook("postdeploy");
    let entry = Entry::File(
        ".platform/hooks/postdeploy/01_pause.sh",
        hook.as_bytes(),
        0o755,
    );
    let record = crash_during("postdeploy", entry, &mut host, mark.path(), bundles.path());
    assert_eq!(record["status"], "succeeded", "{record:#}");
    assert_only_release_runs(&host, &record["id"], "Hello from v2\n");
}

#[test]
fn a_crash_during_the_health_gate_stops_the_half_started_release() {
    let mut host = TestHost::new().set("deploy", "health_gate_timeout", "60s");
    host.start();
    let bundles = tempfile::tempdir().expect("tempdir");
    let v1 = host.deploy_ok(&sample(bundles.path(), "v1", &[]));
    let unhealthy = sample(bundles.path(), "v2", &[]);
    let queued = host.cli_ok(&[
        "deploy",
        unhealthy.to_str().expect("utf-8"),
        "--env",
        "HEALTH_STATUS=500",
        "--json",
    ]);
    let id = serde_json::from_str::<serde_json::Value>(&queued).expect("json")["id"].clone();
    let new_pid = wait_for(
        "v2's web process in the health gate",
        Duration::from_secs(20),
        || {
            let status = host.status();
            let gating = status["deployment"]["step"] == "health-gate";
            let pid = status["processes"]
                .as_array()?
                .iter()
                .find(|p| p["release"] == id)?["pid"]
                .as_i64()?;
            gating.then_some(pid as i32)
        },
    );
    host.stop_agent(Signal::SIGKILL, Duration::from_secs(5));
    host.start();
    wait_for(
        "v2's web process to be stopped",
        Duration::from_secs(20),
        || (!alive(new_pid)).then_some(()),
    );
    wait_for(
        "the deployment to be recorded as failed",
        Duration::from_secs(20),
        || {
            let records: serde_json::Value =
                serde_json::from_str(&host.cli_ok(&["deployments", "--json"])).ok()?;
            (records.as_array()?.iter().find(|r| r["id"] == id)?["status"] == "failed")
                .then_some(())
        },
    );
    assert_only_release_runs(&host, &v1["id"], "Hello from v1\n");
}
