//! `stop-apps` with the agent running holds the apps and nginx down, across an agent restart,
//! until `hostmanager start` or the next deployment.

mod common;

use std::time::Duration;

use common::apps::{pid_of, running};
use common::bundles::sample;
use common::procs::reaped;
use common::{TestHost, wait_for};
use serde_json::Value;

fn proxy_checks(status: &Value) -> u64 {
    status["proxy"]["checks"].as_u64().expect("proxy.checks")
}

/// Everything is down: no process in the table, nginx not running and held, nothing listens.
fn assert_stopped(host: &TestHost, status: &Value) {
    assert_eq!(status["processes"], serde_json::json!([]), "{status:#}");
    assert_eq!(status["proxy"]["running"], false, "{status:#}");
    assert_eq!(status["proxy"]["held"], true, "{status:#}");
    assert!(
        host.get("/").is_err(),
        "nothing may answer on the proxy port"
    );
}

/// Runs `stop-apps` and waits until the proxy task has checked nginx after it: the check
/// that, before the hold existed, started nginx again.
fn stop_apps_and_settle(host: &TestHost) -> Value {
    let before = proxy_checks(&host.status());
    let out = host.cli_ok(&["stop-apps"]);
    assert_eq!(out, "Stopped every app process and nginx.\n");
    wait_for(
        "the proxy task to check nginx after stop-apps",
        Duration::from_secs(10),
        || {
            let status = host.status();
            (proxy_checks(&status) > before).then_some(status)
        },
    )
}

#[test]
fn stop_apps_holds_until_start_across_an_agent_restart_and_a_deployment_ends_it() {
    let mut host = TestHost::new();
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    host.deploy_ok(&sample(dir.path(), "v1", &[]));
    assert_eq!(host.body("/"), "Hello from v1\n");
    let web = pid_of(&running(&host, "web"));
    let nginx = host.status()["proxy"]["pid"].as_i64().expect("nginx pid") as i32;

    // Three checks of the proxy task after the stop (each stop-apps wakes it), nginx down
    // after every one.
    for _ in 0..3 {
        let status = stop_apps_and_settle(&host);
        assert_stopped(&host, &status);
    }
    assert!(reaped(web) && reaped(nginx), "the old processes are gone");
    assert!(
        !host
            .events()
            .iter()
            .any(|e| e["message"] == "nginx is not running; starting it again"),
        "the proxy task must not start nginx again"
    );

    // A restarted agent keeps them stopped.
    let last_event = host.events().last().expect("events")["id"].clone();
    host.stop_agent(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(10));
    host.start();
    wait_for(
        "the new agent's recovery to keep the apps stopped",
        Duration::from_secs(10),
        || {
            host.events()
                .iter()
                .any(|e| {
                    e["id"].as_u64() > last_event.as_u64()
                        && e["message"]
                            .as_str()
                            .is_some_and(|m| m.contains("stay stopped (stop-apps)"))
                })
                .then_some(())
        },
    );
    let status = wait_for(
        "the new agent's proxy task to check nginx",
        Duration::from_secs(10),
        || {
            let status = host.status();
            (proxy_checks(&status) > 0).then_some(status)
        },
    );
    assert_stopped(&host, &status);
    assert!(
        host.cli_ok(&["status"])
            .contains("stopped by stop-apps (until `hostmanager start`"),
        "status says why nginx is down"
    );

    // `start` brings the release back behind nginx.
    let started: Value =
        serde_json::from_str(&host.cli_ok(&["start", "--wait", "--json"])).expect("json");
    assert_eq!(started["status"], "succeeded", "{started:#}");
    assert_eq!(host.body("/"), "Hello from v1\n");
    let status = host.status();
    assert_eq!(status["proxy"]["held"], false);
    running(&host, "web");
    let again = host.cli(&["start"]);
    assert!(!again.status.success(), "start with nothing stopped");
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("nothing is stopped"),
        "{again:?}"
    );

    // The next deployment ends a stop as well.
    stop_apps_and_settle(&host);
    host.deploy_ok(&sample(dir.path(), "v2", &[]));
    assert_eq!(host.body("/"), "Hello from v2\n");
    assert_eq!(host.status()["proxy"]["held"], false);
}

#[test]
fn stop_apps_without_an_agent_holds_too() {
    let mut host = TestHost::new();
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    host.deploy_ok(&sample(dir.path(), "v1", &[]));
    host.stop_agent(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(10));
    let out = host.cli_ok(&["stop-apps"]);
    assert!(
        out.starts_with("The agent is not running; stopped 2 process group(s)"),
        "{out}"
    );
    assert!(host.path("var/lib/hostmanager/apps-stopped").exists());

    host.start();
    let status = wait_for(
        "the proxy task's first check",
        Duration::from_secs(10),
        || {
            let status = host.status();
            (proxy_checks(&status) > 0).then_some(status)
        },
    );
    assert_stopped(&host, &status);

    // Lifted offline, the next agent run starts the serving release.
    host.stop_agent(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(10));
    assert!(host.cli_ok(&["start-apps"]).contains("the stop is lifted"));
    host.start();
    wait_for("v1 serving again", Duration::from_secs(20), || {
        (host.get("/").ok()?.body == "Hello from v1\n").then_some(())
    });
}

/// Without a stop, the proxy task (which waits on the master's pidfd, with no tick) starts a
/// master that died again.
#[test]
fn a_dead_nginx_master_is_started_again_when_nothing_holds_it() {
    let mut host = TestHost::new();
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    host.deploy_ok(&sample(dir.path(), "v1", &[]));
    let master = host.status()["proxy"]["pid"].as_i64().expect("nginx pid") as i32;
    // Its workers go with it; they would otherwise keep the port.
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(master),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill nginx");
    let again = wait_for("a new nginx master", Duration::from_secs(10), || {
        let pid = host.status()["proxy"]["pid"].as_i64()?;
        (pid != i64::from(master)).then_some(pid)
    });
    assert!(again > 0);
    wait_for("v1 served again", Duration::from_secs(10), || {
        (host.get("/").ok()?.body == "Hello from v1\n").then_some(())
    });
    assert!(
        host.events()
            .iter()
            .any(|e| e["message"] == "nginx is not running; starting it again")
    );
}

/// A `stop-apps` under way when the agent is told to stop completes, and its caller gets the
/// answer: no half stop, no dropped connection.
#[test]
fn a_stop_apps_under_way_completes_when_the_agent_shuts_down_meanwhile() {
    let processes: toml::Table =
        toml::from_str("[stubborn]\nstop_timeout = \"2s\"\n").expect("toml");
    let mut host = TestHost::new().set("supervise", "processes", processes);
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    // Ignores SIGTERM (inherited across exec), so its stop lasts until the 2 s deadline.
    let procfile = "web: python3 application.py\nstubborn: trap '' TERM; exec sleep 1000\n";
    host.deploy_ok(&common::apps::bundle(&dir, procfile));
    let stubborn = pid_of(&running(&host, "stubborn"));
    let nginx = host.status()["proxy"]["pid"].as_i64().expect("nginx pid") as i32;

    let stop = std::process::Command::new(common::BIN)
        .arg("--root")
        .arg(host.root.path())
        .arg("stop-apps")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("stop-apps");
    wait_for("the stop to begin", Duration::from_secs(10), || {
        common::apps::find_event(&host, |_, m| {
            m.starts_with("Stopping every app process and nginx on request")
        })
    });
    let agent = host.stop_agent(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(15));
    let answer = stop.wait_with_output().expect("stop-apps output");
    assert!(
        answer.status.success(),
        "{answer:?}\nagent log:\n{}",
        common::tail(&host.agent_log(), 30)
    );
    assert_eq!(
        String::from_utf8_lossy(&answer.stdout),
        "Stopped every app process and nginx.\n"
    );
    assert!(agent.success(), "the agent exits cleanly: {agent}");
    assert!(
        !common::procs::alive(stubborn),
        "the stubborn process was stopped"
    );
    assert!(!common::procs::alive(nginx), "nginx was stopped");
    assert!(host.path("var/lib/hostmanager/apps-stopped").exists());
}
