//! `kill -9` of the agent at every named step of a deployment (`HOSTMANAGER_TEST_PAUSE_AT`,
//! before each step's work and, for some, after it), for the zero-downtime and all-at-once
//! strategies, a platform build, a failed deployment's rollback and a configuration
//! deployment. After each crash the restarted agent concludes the job: rolled back (the old
//! release serves) before the commit point, finished (the new one serves) after it; the
//! persisted state, records and journal are whole and agree; and the next job works.
//! Each test is one host taken through its steps in turn (each case deploys a new version).

mod common;

use common::TestHost;
use common::bundles::{Entry, sample};
use common::crash::{assert_next_deployment_works, assert_serves, kill_at, submit_deploy};
use serde_json::Value;

const PROCFILE: &[u8] = b"web: python3 application.py\nworker: exec sleep 600\n";
const HOOK: &[u8] = b"#!/bin/sh\necho hook ran\n";
const FAILING_HOOK: &[u8] = b"#!/bin/sh\necho doomed; exit 3\n";
const BUILDFILE: &[u8] = b"build: echo built > built.txt\n";
const EBEXTENSIONS: &[u8] = b"commands:\n  01_first:\n    command: echo first\ncontainer_commands:\n  01_all:\n    command: echo ran > container-ran\n";

/// What the restarted agent must conclude.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Then {
    /// Rolled back: the release that served before serves.
    RolledBack,
    /// Finished: the new release serves.
    Finished,
}

/// A bundle that passes through every deployment step: hooks in each phase, a Buildfile,
/// `.ebextensions` commands and container commands, a worker process (optionally an empty
/// requirements.txt for the platform build, a failing postdeploy hook for a rollback).
fn full_bundle(
    dir: &std::path::Path,
    version: &str,
    build: bool,
    fail_post: bool,
) -> std::path::PathBuf {
    let post = if fail_post { FAILING_HOOK } else { HOOK };
    let mut extra = vec![
        Entry::File("Procfile", PROCFILE, 0o644),
        Entry::File(".platform/hooks/prebuild/01.sh", HOOK, 0o755),
        Entry::File(".platform/hooks/predeploy/01.sh", HOOK, 0o755),
        Entry::File(".platform/hooks/postdeploy/01.sh", post, 0o755),
        Entry::File(".platform/confighooks/prebuild/01.sh", HOOK, 0o755),
        Entry::File(".platform/confighooks/predeploy/01.sh", HOOK, 0o755),
        Entry::File(".platform/confighooks/postdeploy/01.sh", HOOK, 0o755),
        Entry::File("Buildfile", BUILDFILE, 0o644),
        Entry::File(".ebextensions/01.config", EBEXTENSIONS, 0o644),
    ];
    if build {
        extra.push(Entry::File("requirements.txt", b"", 0o644));
    }
    sample(dir, version, &extra)
}

/// Takes one host through `cases` (a pause point and the expected conclusion each), one new
/// version per case, then checks a full deployment works.
fn crash_through(mut host: TestHost, cases: &[(&str, Then)], build: bool, fail_post: bool) {
    let bundles = tempfile::tempdir().expect("tempdir");
    host.start();
    let first = host.deploy_ok(&full_bundle(bundles.path(), "v0", build, false));
    let (mut serving, mut body) = (first["id"].clone(), "Hello from v0\n".to_string());
    for (n, (pause, then)) in cases.iter().enumerate() {
        let version = format!("v{}", n + 1);
        let bundle = full_bundle(bundles.path(), &version, build, fail_post);
        let record = kill_at(&mut host, pause, |host| submit_deploy(host, &bundle));
        eprintln!(
            "killed at {pause}: {} ({})",
            record["status"], record["message"]
        );
        let what = format!("killed at {pause}");
        let expected = match then {
            Then::RolledBack => "failed",
            // The failed postdeploy hook's rollback is concluded, whichever step it was at.
            Then::Finished if fail_post => "rolled_back",
            Then::Finished => "succeeded",
        };
        assert_eq!(record["status"], expected, "{what}: {record:#}");
        if *then == Then::Finished && !fail_post {
            (serving, body) = (record["id"].clone(), format!("Hello from {version}\n"));
        }
        assert_serves(&host, &serving, &body, &what);
        assert!(
            *then == Then::Finished
                || !host
                    .path(&format!("var/app/releases/{}", record["id"]))
                    .exists(),
            "{what}: the half-built release is removed"
        );
    }
    let last = full_bundle(bundles.path(), "v-next", build, false);
    assert_next_deployment_works(&host, &last, "Hello from v-next\n", "after the crashes");
}

#[test]
fn a_crash_while_preparing_rolls_back() {
    use Then::RolledBack as R;
    let cases = [
        ("fetch", R),
        ("verify", R),
        ("extract", R),
        ("extract:done", R),
        ("ebextensions", R),
        ("ebextensions-prebuild", R),
        ("procfile", R),
        ("platform", R),
        ("hooks-prebuild", R),
        ("buildfile", R),
        ("container-commands", R),
        ("hooks-predeploy", R),
        ("permissions", R),
    ];
    crash_through(TestHost::new(), &cases, false, false);
}

#[test]
fn a_crash_in_the_cutover_before_the_flip_rolls_back() {
    use Then::RolledBack as R;
    let cases = [
        ("proxy-config", R),
        ("proxy-config:done", R),
        ("start-web", R),
        ("start-web:done", R),
        ("health-gate", R),
        ("health-gate:done", R),
        ("switch-traffic", R),
        ("switch-traffic:done", R),
        ("verify-through-nginx:done", R),
        ("flip", R),
    ];
    crash_through(TestHost::new(), &cases, false, false);
}

#[test]
fn a_crash_after_the_flip_finishes_the_deployment() {
    use Then::Finished as F;
    let cases = [
        ("flip:done", F),
        ("stop-old", F),
        ("stop-old:done", F),
        ("start-worker", F),
        ("start-worker:done", F),
        ("hooks-postdeploy", F),
        ("hooks-postdeploy:done", F),
        ("cleanup", F),
        ("cleanup:done", F),
    ];
    crash_through(TestHost::new(), &cases, false, false);
}

#[test]
fn all_at_once_a_crash_at_every_cutover_step_leaves_one_release() {
    use Then::{Finished as F, RolledBack as R};
    let cases = [
        ("stop-old", R),
        ("stop-old:done", R),
        ("start-web", R),
        ("health-gate", R),
        ("switch-traffic:done", R),
        ("flip:done", F),
        ("start-worker", F),
        ("hooks-postdeploy", F),
    ];
    let host = TestHost::new().set("deploy", "strategy", "all-at-once");
    crash_through(host, &cases, false, false);
}

#[test]
fn a_crash_in_the_platform_build_rolls_back() {
    use Then::RolledBack as R;
    let cases = [("platform-build", R), ("platform-build:done", R)];
    crash_through(TestHost::new(), &cases, true, false);
}

#[test]
fn a_crash_while_rolling_back_a_failed_deployment_leaves_the_old_release() {
    // The postdeploy hook fails after the flip: the deployment rolls back, and is killed there.
    use Then::Finished as F;
    let cases = [
        ("rollback-proxy-config", F),
        ("rollback-start-web", F),
        ("rollback-health-gate", F),
        ("rollback-switch-traffic", F),
        ("rollback-flip", F),
        ("rollback-flip:done", F),
        ("rollback-stop", F),
        ("rollback-start-worker", F),
    ];
    crash_through(TestHost::new(), &cases, false, true);
}

/// A configuration deployment (`hostmanager configure`) killed at each of its steps.
#[test]
fn a_crash_in_a_configuration_deployment_concludes_it() {
    use Then::{Finished as F, RolledBack as R};
    let cases = [
        ("copy-release", R),
        ("confighooks-prebuild", R),
        ("confighooks-predeploy", R),
        ("permissions", R),
        ("start-web", R),
        ("health-gate", R),
        ("switch-traffic", R),
        ("flip", R),
        ("flip:done", F),
        ("stop-old", F),
        ("start-worker", F),
        ("confighooks-postdeploy", F),
        ("cleanup", F),
    ];
    let mut host = TestHost::new();
    let bundles = tempfile::tempdir().expect("tempdir");
    host.start();
    let first = host.deploy_ok(&full_bundle(bundles.path(), "v0", false, false));
    let mut serving = first["id"].clone();
    for (n, (pause, then)) in cases.iter().enumerate() {
        let version = format!("c{n}");
        let record = kill_at(&mut host, pause, |host| {
            let set = format!("APP_VERSION={version}");
            let queued = host.cli_ok(&["configure", "--set", &set, "--json"]);
            serde_json::from_str::<Value>(&queued).expect("queued record")
        });
        eprintln!(
            "configure killed at {pause}: {} ({})",
            record["status"], record["message"]
        );
        let what = format!("configure killed at {pause}");
        let expected = if *then == F { "succeeded" } else { "failed" };
        assert_eq!(record["status"], expected, "{what}: {record:#}");
        if *then == F {
            serving = record["id"].clone();
        }
        // The release's VERSION file wins over APP_VERSION: the body stays v0's.
        assert_serves(&host, &serving, "Hello from v0\n", &what);
    }
    let next = host.cli_ok(&["configure", "--set", "AFTER=1", "--wait", "--json"]);
    let next: Value = serde_json::from_str(&next).expect("record");
    assert_eq!(
        next["status"], "succeeded",
        "the next configuration: {next:#}"
    );
    assert_serves(
        &host,
        &next["id"],
        "Hello from v0\n",
        "after the configure crashes",
    );
}

/// The moment between spawning a process and recording it: a process the killed agent had
/// started (here one started by hand in the release, as `start-web` would) is known to no
/// one; the restarted agent stops it with the rest of the uncommitted release.
#[test]
fn a_process_started_but_not_yet_recorded_is_stopped_with_its_release() {
    use std::os::unix::process::CommandExt;
    let mut host = TestHost::new();
    let bundles = tempfile::tempdir().expect("tempdir");
    host.start();
    let v0 = host.deploy_ok(&full_bundle(bundles.path(), "v0", false, false));
    host.stop_agent(
        nix::sys::signal::Signal::SIGTERM,
        std::time::Duration::from_secs(15),
    );
    host.start_with_env(&[("HOSTMANAGER_TEST_PAUSE_AT", "start-web")]);
    let queued = submit_deploy(&host, &full_bundle(bundles.path(), "v1", false, false));
    let marker = format!(
        "[deployment {}] paused before the work of step start-web",
        queued["id"]
    );
    common::wait_for(
        "the pause at start-web",
        std::time::Duration::from_secs(60),
        || {
            std::fs::read_to_string(host.path("var/log/hostmanager/deploy.log"))
                .ok()?
                .contains(&marker)
                .then_some(())
        },
    );
    let mut orphan = std::process::Command::new("sleep")
        .arg("600")
        .current_dir(host.path(&format!("var/app/releases/{}", queued["id"])))
        .process_group(0)
        .spawn()
        .expect("spawn");
    host.stop_agent(
        nix::sys::signal::Signal::SIGKILL,
        std::time::Duration::from_secs(5),
    );
    host.start();
    let status = common::wait_for(
        "the orphan to be killed",
        std::time::Duration::from_secs(30),
        || orphan.try_wait().expect("try_wait"),
    );
    assert!(!status.success(), "killed: {status}");
    assert_serves(&host, &v0["id"], "Hello from v0\n", "after the orphan");
}
