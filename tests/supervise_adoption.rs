//! Apps outlive the agent: a `kill -9` of the agent leaves them serving, the next agent
//! re-adopts them by pid + start time, and a reused pid is never adopted nor signalled.

mod common;

use std::process::{Child, Command};
use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde_json::Value;

use common::apps::{find_event, pid_of, running};
use common::bundles::sample;
use common::procs::alive;
use common::{TestHost, wait_for};

#[test]
fn the_app_outlives_a_kill_9_of_the_agent_and_the_next_agent_readopts_and_restarts_it() {
    let mut host = TestHost::new();
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    host.deploy_ok(&sample(dir.path(), "v1", &[]));
    let pid = pid_of(&running(&host, "web"));

    host.stop_agent(Signal::SIGKILL, Duration::from_secs(10));
    assert!(alive(pid), "the app survives the agent's death");
    assert_eq!(host.body("/"), "Hello from v1\n", "and keeps serving");

    host.start();
    let adopted = running(&host, "web");
    assert_eq!(pid_of(&adopted), pid, "re-adopted, not restarted");
    assert_eq!(adopted["restarts"], 0);
    assert!(
        find_event(&host, |_, m| m
            .contains(&format!("Re-adopted process web (pid {pid})")))
        .is_some()
    );

    // The re-adopted process is not the new agent's child: its pidfd still tells its exit.
    kill(Pid::from_raw(pid), Signal::SIGKILL).expect("kill the app");
    let restarted = wait_for("a new web process", Duration::from_secs(15), || {
        let process = running(&host, "web");
        (pid_of(&process) != pid).then_some(process)
    });
    assert_eq!(restarted["restarts"], 1);
    wait_for("the app to serve again", Duration::from_secs(10), || {
        host.get("/").ok().filter(|r| r.status == 200)
    });
    let exit = find_event(&host, |e, m| {
        e["source"] == "supervise" && m.contains(&format!("(pid {pid}) exited"))
    })
    .expect("an event for the adopted process's exit");
    assert!(
        exit["message"]
            .as_str()
            .expect("text")
            .contains("unknown status (adopted process)"),
        "{exit:#}"
    );
}

/// A process that records every catchable stop signal it gets into `dir/signals`, in its own
/// process group like an app leader. Killed on drop, also when an assertion fails.
struct Stranger(Child);

impl Drop for Stranger {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn stranger(dir: &std::path::Path) -> Stranger {
    use std::os::unix::process::CommandExt;
    let traps: String = ["TERM", "INT", "QUIT", "HUP", "USR1", "USR2"]
        .iter()
        .map(|s| format!("trap 'echo {s} >> signals' {s}; "))
        .collect();
    Command::new("sh")
        .arg("-c")
        .arg(format!("{traps}while :; do sleep 0.05; done"))
        .current_dir(dir)
        .process_group(0)
        .spawn()
        .map(Stranger)
        .expect("spawn stranger")
}

/// Points every persisted process at `pid`: what the table looks like after pid reuse.
fn persist_pid(host: &TestHost, pid: i32) {
    let path = host.path("var/lib/hostmanager/processes.json");
    let mut table: Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read table")).expect("json");
    for entry in table.as_array_mut().expect("array") {
        entry["pid"] = pid.into();
        entry["pgid"] = pid.into();
    }
    std::fs::write(&path, serde_json::to_vec(&table).expect("json")).expect("write table");
}

#[test]
fn a_persisted_pid_now_belonging_to_another_process_is_neither_adopted_nor_signalled() {
    let mut host = TestHost::new();
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    host.deploy_ok(&sample(dir.path(), "v1", &[]));
    let old_pid = pid_of(&running(&host, "web"));
    host.stop_agent(Signal::SIGKILL, Duration::from_secs(10));
    // The app dies while the agent is down and its pid goes to someone else.
    killpg(Pid::from_raw(old_pid), Signal::SIGKILL).expect("kill the app");
    wait_for("the old app to die", Duration::from_secs(5), || {
        (!alive(old_pid)).then_some(())
    });
    let strangers = tempfile::tempdir().expect("tempdir");
    let mut stranger = stranger(strangers.path());
    let stranger_pid = stranger.0.id() as i32;
    persist_pid(&host, stranger_pid);

    host.start();
    let web = running(&host, "web");
    assert_ne!(pid_of(&web), stranger_pid, "the stranger was not adopted");
    assert!(
        find_event(&host, |_, m| m.contains("exited while the agent was down")).is_some(),
        "the agent noticed the app was gone"
    );
    wait_for("the app to serve again", Duration::from_secs(10), || {
        host.get("/").ok().filter(|r| r.status == 200)
    });
    host.cli_ok(&["stop-apps"]);

    // The same with no agent running: `stop-apps` reads the table itself.
    host.stop_agent(Signal::SIGKILL, Duration::from_secs(10));
    persist_pid(&host, stranger_pid);
    host.cli_ok(&["stop-apps"]);

    assert!(
        stranger.0.try_wait().expect("try_wait").is_none(),
        "the stranger is alive"
    );
    let signals = std::fs::read_to_string(strangers.path().join("signals")).unwrap_or_default();
    assert_eq!(signals, "", "the stranger got no signal");
}

/// What `systemctl restart` does to the agent under `KillMode=process` (checked statically by
/// tests/cli.rs): SIGTERM to the agent alone, then a new agent. The apps and nginx must come
/// through it untouched: same pids, still serving, re-adopted.
#[test]
fn apps_and_nginx_outlive_a_sigterm_and_restart_of_the_agent() {
    let mut host = TestHost::new();
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    host.deploy_ok(&sample(dir.path(), "v1", &[]));
    let web = pid_of(&running(&host, "web"));
    let nginx = host.status()["proxy"]["pid"].as_i64().expect("nginx pid") as i32;

    let status = host.stop_agent(Signal::SIGTERM, Duration::from_secs(10));
    assert!(status.success(), "a clean shutdown: {status}");
    assert!(
        alive(web) && alive(nginx),
        "the agent's shutdown leaves them running"
    );
    assert_eq!(host.body("/"), "Hello from v1\n", "and serving");

    host.start();
    let adopted = running(&host, "web");
    assert_eq!(pid_of(&adopted), web, "re-adopted, not restarted");
    assert_eq!(adopted["restarts"], 0);
    assert_eq!(
        host.status()["proxy"]["pid"].as_i64(),
        Some(i64::from(nginx))
    );
    assert_eq!(host.body("/"), "Hello from v1\n");
}
