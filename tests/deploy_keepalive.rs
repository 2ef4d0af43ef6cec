//! Zero downtime for keep-alive clients: a cutover changes the app's port in nginx's memory
//! (the traffic switch), so no client connection is closed, and nginx is not reloaded.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::bundles::sample;
use common::keepalive::KeepAliveLoad;
use common::load::assert_every_request_served;
use common::{TestHost, wait_for};
use serde_json::Value;

fn nginx_workers(host: &TestHost) -> BTreeSet<i32> {
    let master = host.status()["proxy"]["pid"].as_i64().expect("nginx runs") as i32;
    let children = std::fs::read_to_string(format!("/proc/{master}/task/{master}/children"))
        .expect("children");
    children
        .split_whitespace()
        .filter_map(|pid| pid.parse().ok())
        .collect()
}

fn job_ok(host: &TestHost, args: &[&str]) -> Value {
    let output = host.cli(args);
    let record: Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(record["status"], "succeeded", "{args:?}: {record:#}");
    record
}

#[test]
fn keep_alive_clients_lose_nothing_across_deploys_restarts_a_configure_and_a_rollback() {
    let mut host = TestHost::new();
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    host.deploy_ok(&sample(dir.path(), "v0", &[]));
    assert_eq!(host.status()["proxy"]["switch"]["mode"], "runtime");
    let workers = nginx_workers(&host);
    let load = KeepAliveLoad::start(host.proxy_port, "/", 4);
    let mut valid = BTreeSet::from(["Hello from v0\n".to_string()]);
    for n in 1..=10 {
        let version = format!("v{n}");
        valid.insert(format!("Hello from {version}\n"));
        host.deploy_ok(&sample(dir.path(), &version, &[]));
        if n % 3 == 0 {
            job_ok(&host, &["restart", "--wait", "--json"]);
        }
    }
    job_ok(&host, &["configure", "--set", "X=1", "--wait", "--json"]);
    job_ok(&host, &["rollback", "--wait", "--json"]);
    let (outcomes, connections) = load.finish();
    assert_every_request_served(&outcomes, &valid);
    // Four connections, each kept for up to nginx's keepalive_requests (1000) requests.
    let most = 4 + outcomes.len() / 1000 + 4;
    assert!(
        connections <= most,
        "{connections} connections for {} requests: nginx closed kept-alive connections",
        outcomes.len()
    );
    // The rollback undid the configure: v10 without X.
    assert_eq!(host.body("/"), "Hello from v10\n");
    assert_eq!(host.body("/env/X"), "\n");
    assert_eq!(nginx_workers(&host), workers, "nginx was reloaded");
}

#[test]
fn a_killed_agent_leaves_nginx_sending_traffic_to_the_serving_release() {
    let mut host = TestHost::new();
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    host.deploy_ok(&sample(dir.path(), "v1", &[]));
    host.deploy_ok(&sample(dir.path(), "v2", &[]));
    let load = KeepAliveLoad::start(host.proxy_port, "/", 2);
    host.stop_agent(nix::sys::signal::Signal::SIGKILL, Duration::from_secs(5));
    wait_for(
        "requests served while the agent is down",
        Duration::from_secs(10),
        || (host.body("/") == "Hello from v2\n").then_some(()),
    );
    host.start();
    host.deploy_ok(&sample(dir.path(), "v3", &[]));
    let (outcomes, _) = load.finish();
    let valid = BTreeSet::from(["Hello from v2\n".to_string(), "Hello from v3\n".to_string()]);
    assert_every_request_served(&outcomes, &valid);
    assert_eq!(host.body("/"), "Hello from v3\n");
}

#[test]
fn without_nginx_lua_module_cutovers_reload_and_say_so() {
    let empty = tempfile::tempdir().expect("tempdir");
    let mut host = TestHost::new().set("proxy", "modules_dir", empty.path().display().to_string());
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    host.deploy_ok(&sample(dir.path(), "v1", &[]));
    host.deploy_ok(&sample(dir.path(), "v2", &[]));
    assert_eq!(host.body("/"), "Hello from v2\n");
    let switch = &host.status()["proxy"]["switch"];
    assert_eq!(switch["mode"], "reload", "{switch:#}");
    assert!(
        switch["reason"]
            .as_str()
            .is_some_and(|r| r.contains("ngx_http_lua_module") || r.contains("ndk_http_module")),
        "{switch:#}"
    );
    let said: Vec<Value> = host
        .events()
        .into_iter()
        .filter(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.contains("reloads nginx"))
        })
        .collect();
    assert_eq!(said.len(), 1, "said once: {said:#?}");
    let human = host.cli_ok(&["status"]);
    assert!(human.contains("Switch:     by reloading nginx"), "{human}");
}
