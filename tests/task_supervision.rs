//! A task that panics or returns while the agent runs is never silent: an error event names
//! it, the agent exits with status 70 (systemd starts it again), and the apps keep serving
//! and are re-adopted by the next agent. The fault is injected with HOSTMANAGER_TEST_FAIL_TASK.

mod common;

use std::time::Duration;

use common::bundles::sample;
use common::{TestHost, wait_for};
use nix::sys::signal::Signal;

fn web_pid(host: &TestHost) -> i64 {
    host.status()["processes"][0]["pid"]
        .as_i64()
        .expect("the web process runs")
}

/// Restarts the agent with `fault`, waits for it to exit by itself and returns the journal's
/// error event about the task (read by the next agent, which re-adopts the app).
fn exits_on(host: &mut TestHost, fault: &str, task: &str) -> String {
    let pid = web_pid(host);
    host.stop_agent(Signal::SIGTERM, Duration::from_secs(10));
    host.start_with_env_unchecked(&[("HOSTMANAGER_TEST_FAIL_TASK", fault)]);
    let status = host.wait_agent_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(70), "{}", host.agent_log());
    // Meanwhile the app served without an agent.
    assert_eq!(host.body("/"), "Hello from v1\n");
    host.start();
    assert_eq!(web_pid(host), pid, "the app was re-adopted, not restarted");
    let wanted = format!("the {task} task");
    wait_for("the task's error event", Duration::from_secs(10), || {
        host.events()
            .iter()
            .filter(|e| e["severity"] == "error" && e["source"] == "agent")
            .filter_map(|e| e["message"].as_str())
            .find(|m| m.starts_with(&wanted))
            .map(str::to_string)
    })
}

#[test]
fn a_task_that_panics_or_returns_stops_the_agent_with_an_event_and_the_apps_keep_serving() {
    let mut host = TestHost::new();
    host.start();
    let bundles = tempfile::tempdir().expect("tempdir");
    host.deploy_ok(&sample(bundles.path(), "v1", &[]));

    let panicked = exits_on(&mut host, "metrics:panic", "metrics");
    assert!(
        panicked.contains("panicked: injected by HOSTMANAGER_TEST_FAIL_TASK")
            && panicked.contains("exits with status 70"),
        "{panicked}"
    );
    let returned = exits_on(&mut host, "health:return", "health");
    assert!(
        returned.contains("returned while the agent was running"),
        "{returned}"
    );
    // The thread-backed logs task is watched the same way.
    let logs = exits_on(&mut host, "logs:panic", "logs");
    assert!(logs.contains("panicked"), "{logs}");
    assert_eq!(host.health()["status"], "Ok");
}
