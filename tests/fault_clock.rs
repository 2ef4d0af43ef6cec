//! Wall-clock jumps, a day forwards and then two days back, for the agent process only
//! (libfaketime through `LD_PRELOAD`, the offset read from a file the test rewrites; the
//! monotonic clock is left alone, as a real clock step leaves it). Deployments (health gate,
//! drain), restart backoff, metrics windows, rotation by age and the journal's order keep
//! working across each jump. The machine's clock is never touched.

mod common;

use std::path::Path;
use std::time::Duration;

use common::bundles::sample;
use common::crash::assert_journal_whole;
use common::{TestHost, wait_for};
use serde_json::Value;

const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
const DAY_MS: i64 = 86_400_000;

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// Moves the agent's wall clock to `offset` (libfaketime's syntax: "+0", "+1d", "-1d").
fn set_clock(file: &Path, offset: &str) {
    std::fs::write(file, format!("{offset}\n")).expect("faketime file");
}

/// The time the agent stamps on a new event, as an offset from the real clock (ms).
fn agent_offset_ms(host: &TestHost, mark: &str) -> i64 {
    let before = now_ms();
    let set = format!("MARK={mark}");
    let record: Value = serde_json::from_str(&host.cli_ok(&["configure", "--set", &set, "--json"]))
        .expect("queued record");
    let event = wait_for("the configure's event", Duration::from_secs(20), || {
        host.events()
            .into_iter()
            .find(|e| e["deployment_id"] == record["id"])
    });
    event["time_ms"].as_i64().expect("time_ms") - before
}

/// The web process's pid; none while it is being restarted.
fn web_pid(host: &TestHost) -> Option<i32> {
    let status = host.status();
    status["processes"]
        .as_array()
        .and_then(|all| all.iter().find(|p| p["name"] == "web"))
        .and_then(|p| p["pid"].as_i64())
        .map(|pid| pid as i32)
}

fn rotations(host: &TestHost) -> u64 {
    let status: Value =
        serde_json::from_str(&host.cli_ok(&["logs", "status", "--json"])).expect("logs status");
    status["rotations"].as_u64().unwrap_or(0)
}

fn requests_counted(host: &TestHost) -> u64 {
    let totals = &host.health()["metrics"]["totals"]["requests"];
    totals.as_object().map_or(0, |classes| {
        classes.values().filter_map(Value::as_u64).sum()
    })
}

/// Everything that runs on timers still works with the clock at `offset`.
fn assert_timers_work(host: &TestHost, bundles: &Path, version: &str, what: &str) {
    // A deployment: its health gate, drain and step timings.
    host.deploy_ok(&sample(bundles, version, &[]));
    assert_eq!(host.body("/"), format!("Hello from {version}\n"), "{what}");
    // Restart backoff: a killed web process comes back within the backoff's bounds.
    let pid = web_pid(host).expect("web pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill web");
    wait_for(
        &format!("{what}: the web process restarted"),
        Duration::from_secs(10),
        || {
            let again = web_pid(host)?;
            (again != pid && host.get("/").is_ok_and(|r| r.status == 200)).then_some(())
        },
    );
    // Metrics windows keep counting requests.
    let counted = requests_counted(host);
    for _ in 0..10 {
        host.body("/");
    }
    wait_for(
        &format!("{what}: the windows to count requests"),
        Duration::from_secs(10),
        || (requests_counted(host) >= counted + 10).then_some(()),
    );
    // Rotation by age (every 2 s here) still comes round.
    let log = host.path("srv/app/app.log");
    let rotated = rotations(host);
    std::fs::write(&log, format!("a line at {what}\n")).expect("app log");
    wait_for(
        &format!("{what}: a rotation by age"),
        Duration::from_secs(15),
        || (rotations(host) > rotated).then_some(()),
    );
    // The journal's order is its ids', whatever the clock says.
    let ids: Vec<u64> = host
        .events()
        .iter()
        .filter_map(|e| e["id"].as_u64())
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "{what}: events in id order: {ids:?}"
    );
    assert_journal_whole(host, what);
}

/// Starts the agent with its wall clock read from `clock` (libfaketime).
fn start_faked(host: &mut TestHost, clock: &str) {
    host.start_with_env(&[
        ("LD_PRELOAD", FAKETIME),
        ("FAKETIME_TIMESTAMP_FILE", clock),
        ("FAKETIME_NO_CACHE", "1"),
        ("DONT_FAKE_MONOTONIC", "1"),
    ]);
}

#[test]
fn wall_clock_jumps_break_no_timer_window_or_order() {
    assert!(
        Path::new(FAKETIME).exists(),
        "{FAKETIME} is missing: run scripts/deps.sh test (Debian package faketime)"
    );
    let mut host = TestHost::new()
        .set("metrics", "window", "300ms")
        .set("logs", "extra_files", vec!["srv/app/*.log"])
        .set("logs", "rotate_interval", "2s")
        .set("logs", "check_interval", "100ms");
    let clock = host.path("faketime");
    set_clock(&clock, "+0");
    let clock_env = clock.to_str().expect("utf-8").to_string();
    std::fs::create_dir_all(host.path("srv/app")).expect("mkdir");
    std::fs::write(host.path("srv/app/app.log"), "").expect("app log");
    start_faked(&mut host, &clock_env);
    let bundles = tempfile::tempdir().expect("tempdir");
    assert_timers_work(&host, bundles.path(), "v1", "the real time");
    let offset = agent_offset_ms(&host, "real");
    assert!(offset.abs() < 60_000, "no offset yet: {offset} ms");

    set_clock(&clock, "+1d");
    let offset = agent_offset_ms(&host, "forwards");
    assert!(
        (offset - DAY_MS).abs() < 60_000,
        "libfaketime moved the agent's clock a day forwards: {offset} ms"
    );
    assert_timers_work(&host, bundles.path(), "v2", "a day forwards");

    set_clock(&clock, "-1d");
    let offset = agent_offset_ms(&host, "back");
    assert!(
        (offset + DAY_MS).abs() < 60_000,
        "libfaketime moved the agent's clock two days back: {offset} ms"
    );
    assert_timers_work(&host, bundles.path(), "v3", "two days back");
    assert_eq!(host.health()["status"], "Ok", "{:#}", host.health());
}

/// The controller link across the same jumps: reports keep their pace (the interval is
/// monotonic), the link stays connected, and every event reaches the controller once, in order.
#[test]
fn wall_clock_jumps_keep_the_controller_link_at_its_pace() {
    assert!(
        Path::new(FAKETIME).exists(),
        "{FAKETIME} is missing: run scripts/deps.sh test (Debian package faketime)"
    );
    let (port, controller) = common::controller::start(&[]);
    let mut host = TestHost::new()
        .set("controller", "url", format!("http://127.0.0.1:{port}"))
        .set("controller", "interval", "150ms")
        .set("controller", "timeout", "2s");
    let clock = host.path("faketime");
    set_clock(&clock, "+0");
    start_faked(&mut host, clock.to_str().expect("utf-8"));
    let bundles = tempfile::tempdir().expect("tempdir");
    for (n, offset) in ["+0", "+1d", "-1d"].into_iter().enumerate() {
        set_clock(&clock, offset);
        // Something to report: a deployment's events.
        host.deploy_ok(&sample(bundles.path(), &format!("v{n}"), &[]));
        let before = controller.lock().expect("state").reports.len();
        let started = std::time::Instant::now();
        wait_for(
            &format!("{offset}: ten more round trips"),
            Duration::from_secs(10),
            || (controller.lock().expect("state").reports.len() >= before + 10).then_some(()),
        );
        // Ten 150 ms intervals; well under what a link waiting on the wall clock would take.
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "{offset}: {:?}",
            started.elapsed()
        );
        assert_eq!(host.status()["controller"]["connected"], true, "{offset}");
    }
    let last = host
        .events()
        .last()
        .and_then(|e| e["id"].as_u64())
        .expect("events");
    let ids = wait_for(
        "every event at the controller",
        Duration::from_secs(10),
        || {
            let state = controller.lock().expect("state");
            let ids: Vec<u64> = state
                .reports
                .iter()
                .flat_map(|r| r["events"].as_array().cloned().unwrap_or_default())
                .filter_map(|e| e["id"].as_u64())
                .collect();
            (ids.last() >= Some(&last)).then_some(ids)
        },
    );
    let expected: Vec<u64> = (1..=*ids.last().expect("some")).collect();
    assert_eq!(
        ids, expected,
        "every event arrives once, in order, across the jumps"
    );
}
