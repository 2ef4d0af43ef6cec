//! The port contract with real processes and real nginx (docs/deployments.md#the-port-contract):
//! a web process that listens elsewhere fails its gate at once, naming the ports; one that
//! hard-codes its platform's default port serves there and is replaced stop-then-start, with a
//! warning; an app that honours `$PORT` keeps zero-downtime cutovers; `status --json` shows
//! where each process listens.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::bundles::{Entry, sample};
use common::load::{Load, assert_every_request_served};
use common::{TestHost, wait_for};
use serde_json::Value;

/// The Python platform's default port, which Elastic Beanstalk bundles hard-code.
const PYTHON_PORT: u16 = 8000;

/// What the sample app answers on `/`.
fn hello(version: &str) -> String {
    format!("Hello from {version}\n")
}

fn steps(record: &Value) -> Vec<String> {
    record["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["name"].as_str().expect("name").to_string())
        .collect()
}

fn position(steps: &[String], name: &str) -> usize {
    steps
        .iter()
        .position(|s| s == name)
        .unwrap_or_else(|| panic!("no step {name} in {steps:?}"))
}

fn warnings(host: &TestHost, deployment: &Value) -> Vec<String> {
    host.events()
        .into_iter()
        .filter(|e| e["severity"] == "warning" && e["deployment_id"] == *deployment)
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The web process's listening ports as `status --json` shows them, once sampled.
fn web_listening(host: &TestHost) -> Vec<u16> {
    wait_for(
        "the web process's ports in status",
        Duration::from_secs(20),
        || {
            let status = host.status();
            let release = status["release"]["deployment_id"].clone();
            let web = status["processes"]
                .as_array()?
                .iter()
                .find(|p| p["name"] == "web" && p["release"] == release)?
                .clone();
            serde_json::from_value(web["listening"].clone()).ok()
        },
    )
}

fn fixed_port_sample(dir: &std::path::Path, version: &str, port: u16) -> std::path::PathBuf {
    let procfile = format!("web: PORT={port} python3 application.py\n");
    sample(
        dir,
        version,
        &[Entry::File("Procfile", procfile.as_bytes(), 0o644)],
    )
}

#[test]
fn a_web_process_listening_elsewhere_fails_at_once_naming_the_ports() {
    // A gate that waited out its budget would take three minutes: the message below comes from
    // the early failure only.
    let mut host = TestHost::new()
        .set("deploy", "health_gate_timeout", "3min")
        .set("deploy", "timeout", "5min");
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    host.deploy_ok(&sample(dir.path(), "v1", &[]));
    assert_eq!(
        web_listening(&host),
        [host.app_port],
        "listens on its $PORT"
    );

    let elsewhere = common::free_ports(1)[0];
    let record = host.deploy(&fixed_port_sample(dir.path(), "v2", elsewhere), &[]);
    assert_eq!(record["status"], "failed", "{record:#}");
    let message = record["message"].as_str().expect("message");
    assert_eq!(
        message,
        format!(
            "health-gate: process web listens on port {elsewhere}, not on the port it was given ($PORT = {}): make it listen on $PORT, e.g. `--bind :$PORT`; a fixed port is only accepted in its place when it is the python platform's default port 8000 or app.port {}",
            host.alternate_port, host.app_port
        )
    );
    assert_eq!(record["web_listening"], serde_json::json!([elsewhere]));
    assert_eq!(
        host.body("/"),
        hello("v1"),
        "the serving release keeps serving"
    );
}

#[test]
fn an_app_hard_coding_app_port_takes_it_over_stop_then_start() {
    // app.port is where the first release listens, legitimately; the second is given the
    // alternate port, cannot bind the one it hard-codes and says so on stderr.
    let mut host = TestHost::new();
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    host.deploy_ok(&fixed_port_sample(dir.path(), "v1", host.app_port));
    assert_eq!(host.status()["release"]["given_port"], Value::Null);
    let v2 = host.deploy_ok(&fixed_port_sample(dir.path(), "v2", host.app_port));
    let names = steps(&v2);
    let gate = position(&names, "health-gate");
    assert_eq!(
        names[gate..gate + 4],
        ["health-gate", "stop-old", "restart-web", "health-gate"],
        "{names:?}"
    );
    let failed = &v2["steps"][gate]["message"];
    assert!(
        failed
            .as_str()
            .is_some_and(|m| m.contains("its stderr says a port it binds is already in use")),
        "{failed}"
    );
    assert!(
        warnings(&host, &v2["id"]).iter().any(|w| w.starts_with(&format!(
            "the new web process cannot bind a port in use, and sample-v1 (deployment 1) listens on port {}",
            host.app_port
        ))),
        "{:#?}",
        host.events()
    );
    let status = host.status();
    assert_eq!(status["release"]["web_port"], host.app_port);
    assert_eq!(status["release"]["given_port"], host.alternate_port);
    assert_eq!(host.body("/"), hello("v2"));
    // Known now: the next version stops it first, without a failed start.
    let v3 = host.deploy_ok(&fixed_port_sample(dir.path(), "v3", host.app_port));
    let names = steps(&v3);
    assert!(position(&names, "stop-old") < position(&names, "start-web"));
    assert!(!names.iter().any(|n| n == "restart-web"), "{names:?}");
    assert_eq!(host.body("/"), hello("v3"));
}

#[test]
fn a_fixed_platform_port_is_served_and_replaced_stop_then_start() {
    let _port = common::reserve_port(PYTHON_PORT);
    let mut host = TestHost::new();
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");

    let v1 = host.deploy_ok(&fixed_port_sample(dir.path(), "v1", PYTHON_PORT));
    assert_eq!(
        host.body("/"),
        hello("v1"),
        "nginx proxies to the fixed port"
    );
    let status = host.status();
    assert_eq!(status["release"]["web_port"], PYTHON_PORT);
    assert_eq!(status["release"]["given_port"], host.app_port);
    assert_eq!(v1["web_listening"], serde_json::json!([PYTHON_PORT]));
    assert_eq!(web_listening(&host), [PYTHON_PORT]);
    assert!(
        warnings(&host, &v1["id"]).iter().any(|w| w.starts_with(&format!(
            "process web ignores $PORT ({}) and listens on the python platform's default port 8000: nginx proxies there",
            host.app_port
        ))),
        "{:#?}",
        host.events()
    );
    let text = host.cli_ok(&["status"]);
    assert!(
        text.contains(&format!(
            "Port:       web ignores $PORT ({}) and listens on 8000",
            host.app_port
        )),
        "{text}"
    );

    // The next version cannot start beside it: the serving release stops first.
    let v2 = host.deploy_ok(&fixed_port_sample(dir.path(), "v2", PYTHON_PORT));
    let names = steps(&v2);
    assert!(
        position(&names, "stop-old") < position(&names, "start-web"),
        "{names:?}"
    );
    assert!(
        warnings(&host, &v2["id"])
            .iter()
            .any(|w| w.starts_with("sample-v1 (deployment ")
                && w.contains("listens on port 8000, not on the $PORT it was given")),
        "{:#?}",
        host.events()
    );
    assert_eq!(host.body("/"), hello("v2"));

    // A version that honours $PORT: the last stop-then-start, then nginx follows $PORT.
    let v3 = host.deploy_ok(&sample(dir.path(), "v3", &[]));
    let names = steps(&v3);
    assert!(position(&names, "stop-old") < position(&names, "start-web"));
    let status = host.status();
    assert_eq!(status["release"]["web_port"], host.app_port);
    assert_eq!(status["release"]["given_port"], Value::Null);
    assert_eq!(host.body("/"), hello("v3"));

    // Rolling back to the fixed-port v2: it starts beside v3 (8000 is free) and nginx moves.
    let rolled = host.cli(&["rollback", "--wait", "--json"]);
    let rolled: Value = serde_json::from_slice(&rolled.stdout).expect("rollback record");
    assert_eq!(rolled["status"], "succeeded", "{rolled:#}");
    assert_eq!(host.body("/"), hello("v2"));
    assert_eq!(host.status()["release"]["web_port"], PYTHON_PORT);

    // From the fixed port back to $PORT, then zero downtime again, under load.
    host.deploy_ok(&sample(dir.path(), "v4", &[]));
    assert_eq!(web_listening(&host), [host.app_port]);
    let load = Load::start(host.proxy_port, "/", 2);
    load.run_for(60);
    let v5 = host.deploy_ok(&sample(dir.path(), "v5", &[]));
    load.run_for(60);
    let outcomes = load.finish();
    let names = steps(&v5);
    assert!(
        position(&names, "switch-traffic") < position(&names, "stop-old"),
        "zero-downtime order: {names:?}"
    );
    assert!(warnings(&host, &v5["id"]).is_empty());
    assert_every_request_served(&outcomes, &BTreeSet::from([hello("v4"), hello("v5")]));
}

#[test]
fn fixed_ports_can_be_refused() {
    // A bundle with only a Procfile may come from any platform: each of proxy.platform_ports
    // is accepted, unless deploy.fixed_port refuses them all.
    let fixed = common::free_ports(1)[0];
    let mut host = TestHost::new()
        .set("platform", "name", "procfile")
        .set("proxy", "platform_ports", vec![fixed as i64])
        .set("deploy", "fixed_port", "refuse");
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    let record = host.deploy(&fixed_port_sample(dir.path(), "v1", fixed), &[]);
    assert_eq!(record["status"], "failed", "{record:#}");
    assert_eq!(
        record["message"],
        format!(
            "health-gate: process web listens on port {fixed} (an Elastic Beanstalk platform's default) instead of the port it was given ($PORT = {}), and deploy.fixed_port = \"refuse\": make it listen on $PORT, e.g. `--bind :$PORT`",
            host.app_port
        )
    );

    // Hard-coding the port the serving release holds: refused too, and the gate says why
    // the process exited instead of only that it did.
    host.deploy_ok(&sample(dir.path(), "v2", &[]));
    let record = host.deploy(&fixed_port_sample(dir.path(), "v3", host.app_port), &[]);
    assert_eq!(record["status"], "failed", "{record:#}");
    let message = record["message"].as_str().expect("message");
    assert!(
        message.contains(
            "before it became healthy: its stderr says a port it binds is already in use"
        ) && message.contains("make it listen on $PORT"),
        "{message}"
    );
    assert_eq!(
        host.body("/"),
        hello("v2"),
        "the serving release keeps serving"
    );
}
