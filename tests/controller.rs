//! The link to a central controller, against a small controller speaking the agent's protocol
//! (docs/controller-link.md) on loopback (`common/controller.rs`): desired state and its outcomes,
//! event delivery, partitions, commands, enrollment and rotation, gzip bodies, pacing.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::bundles::{Entry, sample};
use common::controller::{self, Controller};
use common::{TestHost, wait_for};
use serde_json::{Value, json};

fn host_for(port: u16, extra: impl FnOnce(TestHost) -> TestHost) -> TestHost {
    let host = TestHost::new()
        .set("controller", "url", format!("http://127.0.0.1:{port}"))
        .set("controller", "interval", "150ms")
        .set("controller", "timeout", "2s");
    extra(host)
}

fn received_event_ids(state: &Mutex<Controller>) -> Vec<u64> {
    let state = state.lock().expect("state");
    state
        .reports
        .iter()
        .flat_map(|r| r["events"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e["id"].as_u64())
        .collect()
}

fn assert_every_event_once(ids: &[u64]) {
    assert!(!ids.is_empty());
    let expected: Vec<u64> = (1..=*ids.iter().max().expect("max")).collect();
    assert_eq!(
        ids,
        expected.as_slice(),
        "every event arrives once, in order"
    );
}

#[test]
fn the_controller_desired_state_is_deployed_and_every_event_arrives_once() {
    let (port, state) = controller::start(&[]);
    let bundles = tempfile::tempdir().expect("tempdir");
    let bundle = sample(bundles.path(), "v1", &[]);
    state.lock().expect("state").desired = Some(
        json!({ "serial": 1, "deployment": { "source": bundle.display().to_string(), "env": { "GREETING": "from-controller" } } }),
    );
    let mut host = host_for(port, |h| h);
    host.start();
    wait_for(
        "the desired state to serve",
        Duration::from_secs(30),
        || (host.get("/").ok()?.body == "Hello from v1\n").then_some(()),
    );
    assert_eq!(host.body("/env/GREETING"), "from-controller\n");
    let deployed = wait_for("a report with the release", Duration::from_secs(10), || {
        let state = state.lock().expect("state");
        state
            .reports
            .iter()
            .rev()
            .find(|r| r["status"]["release"]["version_label"] == "sample-v1")
            .cloned()
    });
    assert_eq!(deployed["applied_serial"], 1);
    assert_eq!(deployed["instance_id"], "i-test");
    assert!(
        !deployed.to_string().contains("from-controller"),
        "property values never leave the host in reports"
    );
    let reports_before = state.lock().expect("state").reports.len();
    wait_for("more round trips", Duration::from_secs(10), || {
        (state.lock().expect("state").reports.len() > reports_before + 3).then_some(())
    });
    let deployments: Value =
        serde_json::from_str(&host.cli_ok(&["deployments", "--json"])).expect("json");
    assert_eq!(
        deployments.as_array().expect("list").len(),
        1,
        "the same serial is applied once"
    );
    let status = host.status();
    assert_eq!(status["controller"]["connected"], true);
    assert_every_event_once(&received_event_ids(&state));
}

#[test]
fn a_partition_keeps_the_host_serving_and_loses_no_event() {
    let (port, state) = controller::start(&[]);
    let mut host = host_for(port, |h| h);
    host.start();
    let bundles = tempfile::tempdir().expect("tempdir");
    host.deploy_ok(&sample(bundles.path(), "v1", &[]));
    wait_for("a first report", Duration::from_secs(10), || {
        (!state.lock().expect("state").reports.is_empty()).then_some(())
    });
    state.lock().expect("state").down = true;
    wait_for("the agent to notice", Duration::from_secs(10), || {
        host.status()["controller"]["last_error"]
            .as_str()
            .map(str::to_string)
    });
    host.deploy_ok(&sample(bundles.path(), "v2", &[]));
    assert_eq!(
        host.body("/"),
        "Hello from v2\n",
        "the host works on without its controller"
    );
    let last_event = host
        .events()
        .last()
        .and_then(|e| e["id"].as_u64())
        .expect("events");
    state.lock().expect("state").down = false;
    wait_for("the backlog to arrive", Duration::from_secs(60), || {
        received_event_ids(&state)
            .iter()
            .max()
            .is_some_and(|max| *max >= last_event)
            .then_some(())
    });
    assert_every_event_once(&received_event_ids(&state));
}

#[test]
fn a_command_runs_once_and_its_result_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").expect("token");
    std::fs::set_permissions(
        &token_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .expect("chmod");
    let (port, state) = controller::start(&["s3cret-token"]);
    let mut host = host_for(port, |h| {
        h.set("controller", "token_file", token_file.display().to_string())
    });
    host.start();
    host.deploy_ok(&sample(dir.path(), "v1", &[]));
    let pid = host.status()["processes"][0]["pid"].clone();
    state.lock().expect("state").commands = vec![json!({ "id": "restart-1", "kind": "restart" })];
    let result = wait_for("the command's result", Duration::from_secs(30), || {
        let state = state.lock().expect("state");
        state
            .reports
            .iter()
            .flat_map(|r| r["command_results"].as_array().cloned().unwrap_or_default())
            .find(|r| r["id"] == "restart-1")
    });
    assert_eq!(result["accepted"], true, "{result:#}");
    wait_for("the restart to finish", Duration::from_secs(30), || {
        let status = host.status();
        (status["processes"][0]["pid"] != pid && status["deployment"].is_null()).then_some(())
    });
    let ended = wait_for("the command's outcome", Duration::from_secs(30), || {
        let state = state.lock().expect("state");
        state
            .reports
            .iter()
            .flat_map(|r| r["command_results"].as_array().cloned().unwrap_or_default())
            .find(|r| r["id"] == "restart-1" && r["outcome"].is_string())
    });
    assert_eq!(ended["outcome"], "succeeded", "{ended:#}");
    let reports_now = state.lock().expect("state").reports.len();
    wait_for(
        "more round trips with the command still offered",
        Duration::from_secs(10),
        || (state.lock().expect("state").reports.len() > reports_now + 3).then_some(()),
    );
    let deployments: Value =
        serde_json::from_str(&host.cli_ok(&["deployments", "--json"])).expect("json");
    let restarts = deployments
        .as_array()
        .expect("list")
        .iter()
        .filter(|d| d["kind"] == "restart")
        .count();
    assert_eq!(restarts, 1, "a command sent again is not run again");
    let state = state.lock().expect("state");
    assert_eq!(
        state.unauthorized, 0,
        "every report carried the bearer token"
    );
    let last = state.reports.last().expect("report");
    assert!(
        last["command_results"]
            .as_array()
            .is_some_and(|r| r.is_empty()),
        "acknowledged results are not resent"
    );
    assert!(
        !host.agent_log().contains("s3cret-token"),
        "the token is never logged"
    );
}

fn secret_file(dir: &std::path::Path, name: &str, content: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, content).expect("write");
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    path.display().to_string()
}

fn reports_after(state: &Mutex<Controller>, seen: usize) -> Vec<Value> {
    state.lock().expect("state").reports[seen..].to_vec()
}

#[test]
fn enrollment_issues_the_secret_reports_use_and_rotation_swaps_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = secret_file(dir.path(), "enroll", "enroll-tok-123\n");
    let machine_id = secret_file(dir.path(), "machine-id", "abc\n");
    // Only issued secrets open the report endpoint.
    let (port, state) = controller::start(&["not-issued-yet"]);
    state.lock().expect("state").enrollment_token = Some("enroll-tok-123".into());
    let mut host = host_for(port, |h| {
        h.set("controller", "enrollment_token_file", token).set(
            "controller",
            "machine_id_file",
            machine_id,
        )
    });
    host.start();
    wait_for(
        "a report with the issued secret",
        Duration::from_secs(20),
        || (!state.lock().expect("state").reports.is_empty()).then_some(()),
    );
    let enrollment = state.lock().expect("state").enrollments[0].clone();
    assert_eq!(enrollment["instance_id"], "i-test");
    assert_eq!(
        enrollment["machine_fingerprint"],
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        enrollment["facts"]["advertised_addr"],
        format!("127.0.0.1:{}", host.proxy_port)
    );
    assert!(
        enrollment["facts"]["launched_at"].is_string(),
        "{enrollment}"
    );
    let file = host.path("var/lib/hostmanager/controller-credential.json");
    let mode = std::fs::metadata(&file).expect("credential").permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    let stored = std::fs::read_to_string(&file).expect("read");
    assert!(
        stored.contains("secret-1") && !stored.contains("enroll-tok-123"),
        "{stored}"
    );
    assert_eq!(host.status()["controller"]["enrolled"], true);

    state.lock().expect("state").rotate = true;
    wait_for("the rotation", Duration::from_secs(10), || {
        (state.lock().expect("state").rotations == 1).then_some(())
    });
    let seen = {
        let mut state = state.lock().expect("state");
        state.tokens.retain(|t| t != "secret-1");
        state.reports.len()
    };
    wait_for(
        "reports with the new secret",
        Duration::from_secs(10),
        || (reports_after(&state, seen).len() >= 3).then_some(()),
    );
    assert!(
        std::fs::read_to_string(&file)
            .expect("read")
            .contains("secret-2")
    );
    assert_eq!(
        state.lock().expect("state").enrollments.len(),
        1,
        "enrolled once"
    );
    let log = host.agent_log();
    for secret in ["enroll-tok-123", "secret-1", "secret-2"] {
        assert!(!log.contains(secret), "{secret} is never logged");
    }
}

#[test]
fn gzip_reports_parse_as_the_controllers_and_carry_each_serials_outcome_until_acked() {
    let (port, state) = controller::start(&[]);
    let bundles = tempfile::tempdir().expect("tempdir");
    let good = sample(bundles.path(), "v1", &[]);
    let broken = sample(
        bundles.path(),
        "v2",
        &[Entry::File("Procfile", b"web: exit 3\n", 0o644)],
    );
    {
        let mut state = state.lock().expect("state");
        state.ack_desired = false;
        state.desired =
            Some(json!({ "serial": 1, "deployment": { "source": good.display().to_string() } }));
    }
    let mut host = host_for(port, |h| h.set("metrics", "window", "500ms"));
    host.start();
    let outcome = |serial: u64| {
        move |report: &Value| {
            report["desired_results"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["serial"] == serial)
                .cloned()
        }
    };
    wait_for(
        "serial 1's outcome, resent while unacknowledged",
        Duration::from_secs(30),
        || {
            let state = state.lock().expect("state");
            (state.reports.iter().filter_map(outcome(1)).count() >= 2).then_some(())
        },
    );
    let (report, body, gzipped) = {
        let state = state.lock().expect("state");
        let last = state.reports.len() - 1;
        (
            state.reports[last].clone(),
            state.bodies[last].clone(),
            state.gzipped.clone(),
        )
    };
    assert!(gzipped.iter().all(|g| *g), "every report is gzip-encoded");
    let result = outcome(1)(&report).expect("result");
    assert_eq!(result["outcome"], "succeeded", "{result}");
    assert_eq!(result["deployment_id"], 1);
    let parsed: hostmanager_protocol::Report =
        serde_json::from_slice(&body).expect("the controller's Report parses the agent's");
    let release = parsed.status.release.expect("release");
    assert_eq!(
        (release.serial, release.version_label.as_str()),
        (Some(1), "sample-v1")
    );
    assert!(parsed.facts.and_then(|f| f.launched_at).is_some());
    assert_eq!(host.status()["release"]["serial"], 1);
    wait_for("a metrics window", Duration::from_secs(10), || {
        reports_after(&state, 0)
            .iter()
            .rev()
            .find(|r| r["metrics"].is_object())
            .map(|_| ())
    });

    {
        let mut state = state.lock().expect("state");
        state.ack_desired = true;
        state.desired =
            Some(json!({ "serial": 2, "deployment": { "source": broken.display().to_string() } }));
    }
    let failed = wait_for("serial 2's outcome", Duration::from_secs(60), || {
        reports_after(&state, 0).iter().rev().find_map(outcome(2))
    });
    assert_eq!(failed["outcome"], "failed", "{failed}");
    assert!(
        failed["step"].is_string() && failed["message"].is_string(),
        "{failed}"
    );
    let seen = state.lock().expect("state").reports.len();
    wait_for(
        "reports after the acknowledgement",
        Duration::from_secs(10),
        || (reports_after(&state, seen).len() >= 3).then_some(()),
    );
    assert!(
        reports_after(&state, seen + 1)
            .iter()
            .all(|r| r["desired_results"]
                .as_array()
                .is_some_and(|d| d.is_empty())),
        "acknowledged outcomes are not resent"
    );
    assert_eq!(
        host.status()["release"]["serial"],
        1,
        "v1 (serial 1) still serves"
    );
}

#[test]
fn the_controllers_pace_and_retry_after_are_honoured() {
    let (port, state) = controller::start(&[]);
    let mut host = host_for(port, |h| h);
    host.start();
    wait_for("a first report", Duration::from_secs(10), || {
        (!state.lock().expect("state").reports.is_empty()).then_some(())
    });
    state.lock().expect("state").report_after_ms = Some(1000);
    let seen = state.lock().expect("state").reports.len();
    wait_for("paced reports", Duration::from_secs(20), || {
        (reports_after(&state, seen).len() >= 3).then_some(())
    });
    let gaps = |times: &[std::time::Instant]| -> Vec<Duration> {
        times.windows(2).map(|w| w[1] - w[0]).collect()
    };
    let received = state.lock().expect("state").received[seen..].to_vec();
    for gap in gaps(&received) {
        assert!(
            gap >= Duration::from_millis(950),
            "reports {gap:?} apart, asked 1 s"
        );
    }
    {
        let mut state = state.lock().expect("state");
        state.report_after_ms = None;
        state.throttle = 3;
    }
    wait_for("the throttled attempts", Duration::from_secs(20), || {
        (state.lock().expect("state").throttled_at.len() >= 3).then_some(())
    });
    // Without Retry-After the backoff would be 300-600 ms (150 ms doubling, ±20 %).
    let throttled = state.lock().expect("state").throttled_at.clone();
    for gap in gaps(&throttled) {
        assert!(
            gap >= Duration::from_millis(950),
            "retried {gap:?} after Retry-After: 1"
        );
    }
}
