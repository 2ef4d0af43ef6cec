//! `kill -9` of the agent at a named step (`HOSTMANAGER_TEST_PAUSE_AT`), and the checks every
//! crash test makes afterwards: one release serves, and `state.json`, the deployment records
//! and the event journal agree and parse whole.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;

use super::{TestHost, tail, wait_for};

/// Restarts the agent to stop at `pause` (`<step>` or `<step>:done`), submits a job with
/// `submit` (it returns the queued record), kills the agent with SIGKILL once it stopped
/// there, starts it again (without the pause) and returns the job's final record.
pub fn kill_at(host: &mut TestHost, pause: &str, submit: impl FnOnce(&TestHost) -> Value) -> Value {
    if host.agent_pid().is_some() {
        host.stop_agent(Signal::SIGTERM, Duration::from_secs(15));
    }
    host.start_with_env(&[("HOSTMANAGER_TEST_PAUSE_AT", pause)]);
    let queued = submit(host);
    let id = queued["id"].clone();
    let (step, when) = match pause.strip_suffix(":done") {
        Some(step) => (step, "after"),
        None => (pause, "before"),
    };
    let marker = format!("[deployment {id}] paused {when} the work of step {step}");
    let deploy_log = host.path("var/log/hostmanager/deploy.log");
    wait_for(
        &format!("the agent to pause at {pause}"),
        Duration::from_secs(60),
        || {
            if let Some(record) = record_of(host, &id)
                && record["status"] != "running"
                && record["status"] != "queued"
            {
                panic!("{pause}: the job ended before pausing: {record:#}");
            }
            std::fs::read_to_string(&deploy_log)
                .ok()?
                .contains(&marker)
                .then_some(())
        },
    );
    host.stop_agent(Signal::SIGKILL, Duration::from_secs(5));
    host.start();
    wait_for(
        &format!("the job interrupted at {pause} to conclude"),
        Duration::from_secs(60),
        || {
            let record = record_of(host, &id)?;
            let done = record["status"] != "running" && record["status"] != "queued";
            done.then_some(record)
        },
    )
}

/// Deployment `id`'s record as `hostmanager deployments --json` lists it.
pub fn record_of(host: &TestHost, id: &Value) -> Option<Value> {
    let records: Value = serde_json::from_str(&host.cli_ok(&["deployments", "--json"])).ok()?;
    records.as_array()?.iter().find(|r| r["id"] == *id).cloned()
}

/// Queues a deployment of `bundle` without waiting; returns the queued record.
pub fn submit_deploy(host: &TestHost, bundle: &Path) -> Value {
    let queued = host.cli_ok(&["deploy", bundle.to_str().expect("utf-8"), "--json"]);
    serde_json::from_str(&queued).expect("queued record")
}

/// `release` serves alone (each process once, behind nginx with `body`), and what the agent
/// persisted is whole and agrees with it.
pub fn assert_serves(host: &TestHost, release: &Value, body: &str, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let seen = host.get("/").map(|r| (r.status, r.body));
        if matches!(&seen, Ok((_, answer)) if answer == body) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: release {release} does not answer through nginx ({body:?}): {seen:?}\n\
             status: {:#}\nagent log:\n{}\ndeploy.log:\n{}\nlisteners:\n{}",
            host.status(),
            tail(&host.agent_log(), 60),
            tail(
                &std::fs::read_to_string(host.path("var/log/hostmanager/deploy.log"))
                    .unwrap_or_default(),
                80
            ),
            listeners(host)
        );
        // The poll's pace, as in `wait_for`.
        std::thread::sleep(Duration::from_millis(25));
    }
    let processes = wait_for(
        &format!("{what}: release {release}'s processes alone"),
        Duration::from_secs(30),
        || {
            let status = host.status();
            let processes = status["processes"].as_array()?.clone();
            let alone = !processes.is_empty() && processes.iter().all(|p| p["release"] == *release);
            alone.then_some(processes)
        },
    );
    let mut names: Vec<&str> = processes
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    let count = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(
        names.len(),
        count,
        "{what}: each process once: {processes:?}"
    );
    assert_consistent(host, release, what);
}

/// Who listens on the host's app ports (`ss`), for a failure's message.
fn listeners(host: &TestHost) -> String {
    let output = std::process::Command::new("ss")
        .args(["-ltnpH"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    output
        .lines()
        .filter(|l| {
            [host.app_port, host.alternate_port]
                .iter()
                .any(|p| l.contains(&format!(":{p} ")))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `state.json` names `release` as current with nothing in progress, `current` points at it,
/// every record parses and none is left running, and the journal's lines parse whole with
/// ids in increasing order.
pub fn assert_consistent(host: &TestHost, release: &Value, what: &str) {
    let read_state = || -> Value {
        serde_json::from_slice(
            &std::fs::read(host.path("var/lib/hostmanager/state.json")).expect("state.json"),
        )
        .unwrap_or_else(|e| panic!("{what}: state.json is not JSON: {e}"))
    };
    // A job's record is concluded a moment before state.json drops it (two atomic writes,
    // each synced: on a busy disk the second can lag).
    let state = wait_for(
        &format!("{what}: state.json to have nothing in progress"),
        Duration::from_secs(10),
        || Some(read_state()).filter(|state| state["in_progress"].is_null()),
    );
    assert_eq!(
        state["current"]["deployment_id"], *release,
        "{what}: {state:#}"
    );
    assert_eq!(
        host.status()["release"]["deployment_id"],
        *release,
        "{what}"
    );
    let current = std::fs::read_link(host.path("var/app/current")).expect("current link");
    assert_eq!(
        current,
        host.path(&format!("var/app/releases/{release}")),
        "{what}"
    );
    let records = host.path("var/lib/hostmanager/deployments");
    for entry in std::fs::read_dir(&records).expect("records").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(id) = name
            .strip_suffix(".json")
            .filter(|n| n.parse::<u64>().is_ok())
        else {
            continue;
        };
        let record: Value = serde_json::from_slice(&std::fs::read(entry.path()).expect("record"))
            .unwrap_or_else(|e| panic!("{what}: record {name} is not JSON: {e}"));
        assert!(
            record["status"] != "running" && record["status"] != "queued",
            "{what}: record {id} left {}: {record:#}",
            record["status"]
        );
    }
    assert_journal_whole(host, what);
}

/// Every line of every journal segment but a torn last one parses, ids strictly increase
/// across segments, and `hostmanager events` reads them.
pub fn assert_journal_whole(host: &TestHost, what: &str) {
    let dir = host.path("var/lib/hostmanager/events");
    let mut segments: Vec<_> = std::fs::read_dir(&dir)
        .expect("events dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl" || x == "log"))
        .collect();
    segments.sort();
    let mut last = 0u64;
    let mut seen = 0;
    for segment in &segments {
        let text = std::fs::read_to_string(segment).expect("segment");
        for line in text.lines() {
            let event: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{what}: journal line is torn ({e}): {line}"));
            let id = event["id"].as_u64().expect("event id");
            assert!(
                id > last,
                "{what}: journal ids out of order: {id} after {last}"
            );
            last = id;
            seen += 1;
        }
    }
    assert!(seen > 0, "{what}: the journal has events ({segments:?})");
    let events = host.events();
    assert!(!events.is_empty(), "{what}: events listed");
}

/// A full deployment of `bundle` succeeds after the crashes and serves `body`.
pub fn assert_next_deployment_works(host: &TestHost, bundle: &Path, body: &str, what: &str) {
    let record = host.deploy(bundle, &[]);
    assert_eq!(
        record["status"],
        "succeeded",
        "{what}: the next deployment: {record:#}\n{}",
        tail(&host.agent_log(), 40)
    );
    assert_serves(host, &record["id"], body, what);
}

/// The random source of a test that kills at random instants: `CRASH_SEED` replays a run, and
/// the seed used is printed so a failure can be replayed.
pub fn seeded_rng() -> fastrand::Rng {
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("CRASH_SEED={seed}");
    fastrand::Rng::with_seed(seed)
}
