//! The link to a central controller, against a small controller speaking the agent's protocol
//! (docs/controller.md) on loopback: desired state, event delivery, partitions, commands.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::bundles::sample;
use common::{TestHost, wait_for};
use serde_json::{Value, json};

/// What the test controller holds and what it has received.
#[derive(Debug, Default)]
struct Controller {
    reports: Vec<Value>,
    desired: Option<Value>,
    commands: Vec<Value>,
    /// While set, every report is answered 503 and not stored.
    down: bool,
    token: Option<String>,
    unauthorized: usize,
}

fn controller(token: Option<&str>) -> (u16, Arc<Mutex<Controller>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let state = Arc::new(Mutex::new(Controller {
        token: token.map(str::to_string),
        ..Default::default()
    }));
    let shared = state.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            let (mut length, mut authorization) = (0usize, None);
            let _ = reader.read_line(&mut line);
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                    break;
                }
                let (name, value) = header.split_once(':').unwrap_or(("", ""));
                match name.to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    "authorization" => authorization = Some(value.trim().to_string()),
                    _ => {}
                }
            }
            let mut body = vec![0u8; length];
            let _ = reader.read_exact(&mut body);
            let (status, reply) = answer(&shared, &body, authorization);
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                reply.len()
            );
        }
    });
    (port, state)
}

fn answer(
    shared: &Mutex<Controller>,
    body: &[u8],
    authorization: Option<String>,
) -> (&'static str, String) {
    let mut state = shared.lock().expect("state");
    if let Some(token) = &state.token
        && authorization.as_deref() != Some(&format!("Bearer {token}"))
    {
        state.unauthorized += 1;
        return ("401 Unauthorized", "{}".into());
    }
    if state.down {
        return ("503 Service Unavailable", "{}".into());
    }
    let report: Value = serde_json::from_slice(body).expect("report is JSON");
    let events_ack = report["events"]
        .as_array()
        .and_then(|e| e.last())
        .map(|e| e["id"].clone());
    let commands_ack: Vec<Value> = report["command_results"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| r["id"].clone())
        .collect();
    state.reports.push(report);
    let reply = json!({
        "events_ack": events_ack,
        "commands_ack": commands_ack,
        "desired": state.desired,
        "commands": state.commands,
    });
    ("200 OK", reply.to_string())
}

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
    let (port, state) = controller(None);
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
    let (port, state) = controller(None);
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
    let (port, state) = controller(Some("s3cret-token"));
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
