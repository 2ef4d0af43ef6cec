//! Request statistics, host metrics and the graded health end to end: the real agent, nginx
//! writing its healthd log, and the sample app answering the statuses the test chooses. Windows
//! are a few hundred milliseconds long so no test waits for 10-second windows.

mod common;

use std::time::Duration;

use common::bundles::sample;
use common::{TestHost, wait_for};
use serde_json::{Value, json};

fn request(host: &TestHost, path: &str, expected: u16) {
    let response = host
        .get(path)
        .unwrap_or_else(|e| panic!("GET {path} through nginx: {e}"));
    assert_eq!(response.status, expected, "GET {path}");
}

/// Sends the planned requests: (path, status, how many).
fn drive(host: &TestHost, plan: &[(&str, u16, usize)]) {
    for (path, status, count) in plan {
        for _ in 0..*count {
            request(host, path, *status);
        }
    }
}

fn totals(host: &TestHost) -> Value {
    host.health()["metrics"]["totals"].clone()
}

/// Waits until the windows counted exactly `expected`, then checks that two more windows
/// change nothing (nothing counted twice).
fn assert_counted(host: &TestHost, expected: &Value) {
    let reached = wait_for(
        "the windows to count every request",
        Duration::from_secs(20),
        || {
            let totals = totals(host);
            (&totals["requests"] == expected).then_some(totals)
        },
    );
    let windows = reached["windows"].as_u64().expect("windows");
    let later = wait_for("two more windows", Duration::from_secs(10), || {
        let totals = totals(host);
        (totals["windows"].as_u64()? >= windows + 2).then_some(totals)
    });
    assert_eq!(&later["requests"], expected, "counted once, not again");
    assert_eq!(later["malformed_lines"], 0);
}

#[test]
fn every_request_through_nginx_is_counted_once_per_class_even_across_an_agent_restart() {
    let mut host = TestHost::new().set("metrics", "window", "300ms");
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    host.deploy_ok(&sample(dir.path(), "v1", &[]));
    drive(
        &host,
        &[
            ("/status/200", 200, 6),
            ("/status/201", 201, 3),
            ("/status/302", 302, 2),
            ("/status/404", 404, 5),
            ("/status/429", 429, 1),
            ("/status/503", 503, 4),
        ],
    );
    let expected = json!({"total": 21, "1xx": 0, "2xx": 9, "3xx": 2, "4xx": 6, "5xx": 4});
    assert_counted(&host, &expected);

    // The agent stops; nginx keeps serving and logging; the next agent resumes from the saved
    // position: it counts what came meanwhile, and nothing of what it had counted already.
    host.stop_agent(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(10));
    drive(&host, &[("/status/200", 200, 4), ("/status/500", 500, 3)]);
    host.start();
    let expected = json!({"total": 7, "1xx": 0, "2xx": 4, "3xx": 0, "4xx": 0, "5xx": 3});
    assert_counted(&host, &expected);

    // Host metrics come with every window, the web process among them.
    let metrics = host.health()["metrics"].clone();
    assert!(
        metrics["host"]["memory"]["total_bytes"].as_u64() > Some(0),
        "{metrics:#}"
    );
    assert!(
        metrics["host"]["root_filesystem"]["used_percent"]
            .as_f64()
            .is_some(),
        "{metrics:#}"
    );
    assert!(
        metrics["host"]["cpu"]["idle"].as_f64().is_some(),
        "{metrics:#}"
    );
    let processes = metrics["host"]["processes"].as_array().expect("processes");
    watch_prints_a_document_per_refresh(&host);
    assert!(
        processes
            .iter()
            .any(|p| p["name"] == "web" && p["rss_bytes"].as_u64() > Some(0)),
        "{processes:#?}"
    );
}

#[test]
fn half_the_requests_failing_is_severe_until_the_app_recovers_and_a_dead_app_is_named() {
    let mut host = TestHost::new()
        .set("metrics", "window", "300ms")
        .set("health", "min_requests", 4)
        .set("health", "status_change_after", 2)
        .set("supervise", "restart_delay", "3s")
        .set("supervise", "restart_backoff_initial", "3s")
        .set("supervise", "restart_backoff_max", "3s");
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    host.deploy_ok(&sample(dir.path(), "v1", &[]));
    wait_for("Ok after the deployment", Duration::from_secs(10), || {
        (host.health()["status"] == "Ok").then_some(())
    });

    let severe = wait_for("Severe from the 5xx rate", Duration::from_secs(30), || {
        // Interleaved, so any window of at least 4 requests holds 40-60 % of 5xx.
        for _ in 0..4 {
            drive(&host, &[("/status/500", 500, 1), ("/status/200", 200, 1)]);
        }
        let health = host.health();
        (health["status"] == "Severe").then_some(health)
    });
    assert_eq!(severe["color"], "Red");
    let cause = severe["causes"][0]["message"]
        .as_str()
        .expect("cause")
        .to_string();
    let percent: u32 = cause
        .strip_suffix("% of the requests are failing with HTTP 5xx")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected cause {cause:?}"));
    assert!((40..=60).contains(&percent), "{cause}");
    let changed = host.events().into_iter().any(|e| {
        e["source"] == "health"
            && e["severity"] == "error"
            && e["message"].as_str().is_some_and(|m| {
                m.starts_with("Health changed from Ok to Severe: ")
                    && m.ends_with("% of the requests are failing with HTTP 5xx")
            })
    });
    assert!(changed, "the change is an event");

    // Traffic stops: the next windows are clean and, after the hysteresis, the status is Ok.
    let ok = wait_for("recovery to Ok", Duration::from_secs(20), || {
        let health = host.health();
        (health["status"] == "Ok").then_some(health)
    });
    assert_eq!(ok["causes"], json!([]));
    assert!(host.events().iter().any(|e| {
        e["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Health changed from Severe to Ok"))
    }));

    let pid = host.status()["processes"][0]["pid"].as_i64().expect("pid");
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill app");
    let down = wait_for("the dead app as the cause", Duration::from_secs(10), || {
        let health = host.health();
        (health["status"] == "Severe").then_some(health)
    });
    let causes = down["causes"].to_string();
    assert!(causes.contains("Process web is not running"), "{causes}");
    let text = host.cli_ok(&["health"]);
    assert!(text.starts_with("● Severe (Red)"), "{text}");
    assert!(text.contains("  - Process web is not running"), "{text}");
}

#[test]
fn a_deployment_in_progress_is_pending_then_info() {
    let mut host = TestHost::new()
        .set("health", "status_change_after", 2)
        // A slow health gate keeps each deployment running for a few seconds.
        .set("deploy", "health_gate_successes", 25)
        .set("deploy", "health_gate_interval", "200ms");
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    let deploying = |label: &str, status: &str| {
        wait_for(
            &format!("{status} while {label} deploys"),
            Duration::from_secs(20),
            || {
                let health = host.health();
                let cause = health["causes"][0]["message"].as_str()?.to_string();
                (health["status"] == status
                    && cause.starts_with(&format!(
                        "Application deployment of {label} in progress (running for "
                    )))
                .then_some(health)
            },
        )
    };

    host.cli_ok(&[
        "deploy",
        sample(dir.path(), "v1", &[]).to_str().expect("path"),
    ]);
    let pending = deploying("sample-v1", "Pending");
    assert_eq!(pending["color"], "Grey");
    wait_for("Ok once v1 serves", Duration::from_secs(30), || {
        (host.health()["status"] == "Ok").then_some(())
    });

    host.cli_ok(&[
        "deploy",
        sample(dir.path(), "v2", &[]).to_str().expect("path"),
    ]);
    let info = deploying("sample-v2", "Info");
    assert_eq!(info["color"], "Green");
    wait_for("Ok once v2 serves", Duration::from_secs(30), || {
        let status = host.status();
        (status["health"]["status"] == "Ok" && status["release"]["version_label"] == "sample-v2")
            .then_some(())
    });
}

/// `health --watch --json` keeps printing one JSON document per line until stopped.
fn watch_prints_a_document_per_refresh(host: &TestHost) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(common::BIN)
        .arg("--root")
        .arg(host.root.path())
        .args(["health", "--watch", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn health --watch");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    for _ in 0..2 {
        let line = lines.next().expect("a line").expect("read");
        let document: Value = serde_json::from_str(&line).expect("one JSON document per line");
        assert!(document["status"].is_string(), "{document}");
    }
    let _ = child.kill();
    let _ = child.wait();
}
