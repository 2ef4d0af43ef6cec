//! Restart policy and stopping, with real processes: crash loops back off and are reported,
//! a process ignoring its stop signal dies with its children at the deadline, and orphans are
//! reaped by the agent.

mod common;

use std::time::{Duration, Instant};

use common::apps::{bundle, find_event, pid_of, running};
use common::procs::{self, alive, reaped};
use common::{TestHost, wait_for};

#[test]
fn a_crash_loop_backs_off_to_its_cap_is_severe_and_reports_the_stderr_tail() {
    let mut host = TestHost::new()
        .set("supervise", "restart_backoff_initial", "50ms")
        .set("supervise", "restart_backoff_max", "400ms")
        .set("supervise", "crash_loop_exits", 4)
        .set("supervise", "crash_loop_window", "30s");
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    let crasher = "web: python3 application.py\n\
        worker: for i in $(seq 1 60); do echo \"boom line $i\" >&2; done; exit 3\n";
    // Before the worker can first start: the restart bound below counts from here.
    let begun = Instant::now();
    host.deploy_ok(&bundle(&dir, crasher));

    let event = wait_for("the crash-loop event", Duration::from_secs(20), || {
        find_event(&host, |e, m| {
            e["severity"] == "error" && m.contains("Process worker is crash-looping")
        })
    });
    let message = event["message"].as_str().expect("message");
    assert!(message.contains("4 exits within 30s"), "{message}");
    assert!(message.contains("the last with exit status 3"), "{message}");
    assert!(
        message.ends_with("Last stderr line: boom line 60"),
        "{message}"
    );
    let details = &event["details"];
    assert_eq!(
        details["exit"],
        serde_json::json!({"kind": "code", "value": 3})
    );
    let tail: Vec<&str> = details["stderr_tail"]
        .as_str()
        .expect("tail")
        .lines()
        .collect();
    assert_eq!(tail.len(), 50, "the last 50 lines of its stderr");
    assert_eq!((tail[0], tail[49]), ("boom line 11", "boom line 60"));

    let severe = wait_for("a Severe crash-loop cause", Duration::from_secs(10), || {
        let status = host.status();
        let causes = status["health"]["causes"].to_string();
        causes
            .contains("Process worker is crash-looping")
            .then_some(status)
    });
    assert_eq!(severe["health"]["status"], "Severe");

    let mut longest = 0;
    wait_for(
        "the backoff to reach its cap",
        Duration::from_secs(20),
        || {
            let status = host.status();
            let worker = status["processes"]
                .as_array()?
                .iter()
                .find(|p| p["name"] == "worker")?
                .clone();
            let delay = worker["restart_delay_ms"].as_u64()?;
            assert!(delay <= 400, "never beyond the cap: {worker:#}");
            longest = longest.max(delay);
            // At the cap, jitter keeps the delay within its lower 20 %.
            (delay >= 320 && worker["restarts"].as_u64()? >= 8).then_some(())
        },
    );
    let exits_reported = host
        .events()
        .iter()
        .filter(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.contains("Process worker (pid"))
        })
        .count();
    assert_eq!(
        exits_reported, 3,
        "one event per exit until the loop, then one for the loop"
    );

    // No restart comes sooner than the schedule allows: the count is bounded by how many of
    // the shortest delays (0, then 50 ms doubling to the 400 ms cap, less 20 % jitter) fit in
    // the time since the worker could first start. A slow machine only lowers the count.
    let status = host.status();
    let restarts = status["processes"]
        .as_array()
        .and_then(|all| all.iter().find(|p| p["name"] == "worker"))
        .and_then(|worker| worker["restarts"].as_u64())
        .expect("the worker's restart count");
    let elapsed = begun.elapsed();
    let most = most_restarts_within(elapsed, 50, 400);
    assert!(
        restarts <= most,
        "{restarts} restarts in {elapsed:?}; the backoff allows at most {most}"
    );
}

/// How many restarts the backoff allows within `elapsed`: the first at once, then each after
/// at least 80 % of `initial_ms` doubling up to `max_ms`.
fn most_restarts_within(elapsed: Duration, initial_ms: u64, max_ms: u64) -> u64 {
    let budget = elapsed.as_secs_f64() * 1000.0;
    let (mut spent, mut restarts, mut base) = (0.0, 1, initial_ms);
    loop {
        spent += 0.8 * base.min(max_ms) as f64;
        if spent > budget {
            return restarts;
        }
        restarts += 1;
        base = base.saturating_mul(2);
    }
}

#[test]
fn a_process_ignoring_its_stop_signal_is_killed_with_its_children_after_the_deadline() {
    let processes: toml::Table =
        toml::from_str("[stubborn]\nstop_timeout = \"1s\"\n[polite]\nstop_signal = \"USR1\"\n")
            .expect("toml");
    let mut host = TestHost::new().set("supervise", "processes", processes);
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    let procfile = "web: python3 application.py\n\
        stubborn: trap \"\" TERM; sleep 1000 & sleep 1000 & wait\n\
        polite: trap \"echo USR1 > polite.marker; exit 0\" USR1; sleep 1000 & wait\n";
    host.deploy_ok(&bundle(&dir, procfile));
    let stubborn = pid_of(&running(&host, "stubborn"));
    running(&host, "polite");
    let group = wait_for(
        "the stubborn shell and its two children",
        Duration::from_secs(10),
        || {
            let members = procs::group_members(stubborn);
            (members.len() == 3).then_some(members)
        },
    );

    host.cli_ok(&["stop-apps"]);
    wait_for(
        "every process of the stubborn group to be gone",
        Duration::from_secs(10),
        || group.iter().all(|pid| reaped(*pid)).then_some(()),
    );
    let killed = find_event(&host, |_, m| m.contains("did not stop within"))
        .expect("an event says the group was killed");
    assert_eq!(
        killed["message"],
        format!(
            "Process stubborn (process group {stubborn}) did not stop within 1s of SIGTERM; killed its process group with SIGKILL"
        )
    );
    assert!(
        find_event(&host, |_, m| m.contains("polite")
            && m.contains("did not stop"))
        .is_none(),
        "the polite process stopped on its own signal"
    );
    let marker = std::fs::read_to_string(host.path("var/app/current/polite.marker"))
        .expect("the polite process got its configured stop signal");
    assert_eq!(marker, "USR1\n");
}

#[test]
fn orphans_of_an_app_are_reaped_by_the_agent() {
    let mut host = TestHost::new();
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    // Two orphans: one double-forked into a session of its own, one left in the app's session.
    let procfile = "web: python3 application.py\n\
        spawner: (setsid sleep 2 & echo $! > daemon.pid); (sleep 2 & echo $! > orphan.pid); exec sleep 1000\n";
    host.deploy_ok(&bundle(&dir, procfile));
    running(&host, "spawner");
    let agent = host.agent_pid().expect("agent");
    let orphans: Vec<(&str, i32)> = ["daemon.pid", "orphan.pid"]
        .into_iter()
        .map(|file| {
            let path = host.path(&format!("var/app/current/{file}"));
            let pid = wait_for(file, Duration::from_secs(10), || {
                std::fs::read_to_string(&path).ok()?.trim().parse().ok()
            });
            (file, pid)
        })
        .collect();
    for (file, pid) in &orphans {
        let stat = procs::stat(*pid).expect("the orphan still runs");
        assert_eq!(stat.ppid, agent, "{file}: re-parented to the agent");
    }
    for (file, pid) in orphans {
        wait_for(
            &format!("{file} to exit and be reaped"),
            Duration::from_secs(10),
            || reaped(pid).then_some(()),
        );
    }
    assert!(alive(agent));
}

#[test]
fn a_daemon_a_hook_leaves_behind_is_reaped_when_it_exits() {
    let mut host = TestHost::new();
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    // The hook leaves a background job in its own group (in the agent's session) and exits:
    // the job is re-parented to the agent, which must reap it when it exits.
    let hook = b"#!/bin/sh\nsleep 1 &\necho $! > \"$HOSTMANAGER_ROOT/hook-daemon.pid\"\n";
    let bundle = common::bundles::sample(
        dir.path(),
        "v1",
        &[common::bundles::Entry::File(
            ".platform/hooks/postdeploy/01_daemon.sh",
            hook,
            0o755,
        )],
    );
    host.deploy_ok(&bundle);
    let path = host.path("hook-daemon.pid");
    let daemon: i32 = wait_for("the hook's daemon pid", Duration::from_secs(10), || {
        std::fs::read_to_string(&path).ok()?.trim().parse().ok()
    });
    let agent = host.agent_pid().expect("agent");
    if let Some(stat) = procs::stat(daemon) {
        assert_eq!(stat.ppid, agent, "re-parented to the agent");
    }
    wait_for(
        "the hook's daemon to exit and be reaped (not left a zombie)",
        Duration::from_secs(10),
        || reaped(daemon).then_some(()),
    );
    assert!(alive(agent));
}

#[test]
fn what_an_exited_leader_left_in_its_group_is_stopped_before_the_restart() {
    let mut host = TestHost::new();
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    // The leader leaves a child behind in its group, then exits: a crashed server whose
    // worker would keep the port.
    let procfile = "web: python3 application.py\n\
        leaver: sleep 1000 & echo $! >> leftovers.pid; exec sleep 1\n";
    host.deploy_ok(&bundle(&dir, procfile));
    let path = host.path("var/app/current/leftovers.pid");
    let first: i32 = wait_for("the first leftover", Duration::from_secs(10), || {
        std::fs::read_to_string(&path)
            .ok()?
            .lines()
            .next()?
            .parse()
            .ok()
    });
    wait_for("the leaver's restart", Duration::from_secs(15), || {
        let leaver = running(&host, "leaver");
        (leaver["restarts"].as_u64()? >= 1).then_some(())
    });
    assert!(
        !alive(first),
        "the leftover was stopped before the new leader started"
    );
    wait_for("the leftover to be reaped", Duration::from_secs(10), || {
        reaped(first).then_some(())
    });
}
