//! Live reconfiguration: SIGHUP applies a changed agent.toml to the running agent — health,
//! metrics, logs and nginx's settings — without restarting the apps or nginx's master; keys
//! that need a restart are named and keep their running value; an invalid file changes nothing.

mod common;

use std::time::Duration;

use common::bundles::sample;
use common::http::request;
use common::{TestHost, wait_for};
use serde_json::Value;

fn app_pids(host: &TestHost) -> Vec<i64> {
    let mut pids: Vec<i64> = host.status()["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .filter_map(|p| p["pid"].as_i64())
        .collect();
    pids.sort_unstable();
    pids
}

fn nginx_master(host: &TestHost) -> i64 {
    host.status()["proxy"]["pid"].as_i64().expect("nginx runs")
}

/// The message of the first event of `severity` whose message contains `text`.
fn event(host: &TestHost, severity: &str, text: &str) -> Option<String> {
    host.events()
        .iter()
        .filter(|e| e["severity"] == severity)
        .filter_map(|e| e["message"].as_str())
        .find(|m| m.contains(text))
        .map(str::to_string)
}

fn post_status(host: &TestHost, bytes: usize) -> u16 {
    request(host.proxy_port, "POST", "/", &[], &vec![b'x'; bytes])
        .expect("POST through nginx")
        .status
}

#[test]
fn sighup_applies_health_metrics_logs_and_proxy_settings_without_restarting_the_apps() {
    let mut host =
        TestHost::new()
            .set("metrics", "window", "10s")
            .set("proxy", "client_max_body_size", "1m");
    host.start();
    let bundles = tempfile::tempdir().expect("tempdir");
    host.deploy_ok(&sample(bundles.path(), "v1", &[]));
    let (pids, master) = (app_pids(&host), nginx_master(&host));
    // The sample app answers a POST with 501 (it only reads); nginx's 413 would come first.
    assert_ne!(post_status(&host, 8 * 1024), 413);
    assert_eq!(host.health()["status"], "Ok");

    host.change("health", "path", "/status/500");
    host.change("metrics", "window", "1s");
    host.change("proxy", "client_max_body_size", "4k");
    host.change("logs", "spool_budget_mib", 7);
    let old_port = host.app_port;
    host.change("app", "port", i64::from(old_port) + 1);
    host.reload();

    let applied = wait_for("the SIGHUP to be applied", Duration::from_secs(20), || {
        event(&host, "info", "applied:")
    });
    for key in [
        "health.path",
        "metrics.window",
        "proxy.client_max_body_size",
        "logs.spool_budget_mib",
    ] {
        assert!(applied.contains(key), "{key} missing from: {applied}");
    }
    let restart = event(&host, "warning", "need an agent restart").expect("app.port named");
    assert!(restart.ends_with("app.port"), "{restart}");
    assert!(
        event(
            &host,
            "info",
            "nginx reloaded with the new [proxy] settings"
        )
        .is_some(),
        "{:?}",
        host.events()
    );

    // nginx: the new limit, from the same master (a graceful reload, not a restart).
    assert_eq!(post_status(&host, 8 * 1024), 413);
    assert_eq!(nginx_master(&host), master);
    // Health probes the new path: the app answers 500 there.
    wait_for(
        "health to judge /status/500",
        Duration::from_secs(20),
        || (host.health()["status"] != "Ok").then_some(()),
    );
    // Metrics windows of 1 s once the 10 s one open at the change has closed.
    wait_for(
        "one-second metrics windows",
        Duration::from_secs(30),
        || (host.health()["metrics"]["window_secs"].as_f64() == Some(1.0)).then_some(()),
    );
    // The logs task runs again with its new budget.
    let logs: Value =
        serde_json::from_str(&host.cli_ok(&["logs", "status", "--json"])).expect("json");
    assert_eq!(logs["spool_budget_bytes"], 7 * 1024 * 1024);
    host.cli_ok(&["logs", "rotate"]);
    // app.port waits for a restart: the release still serves on the port it started with.
    assert_eq!(host.status()["release"]["web_port"], i64::from(old_port));
    assert_eq!(app_pids(&host), pids, "no app process restarted");
    assert_eq!(host.body("/"), "Hello from v1\n");

    // Back to a healthy path: applies again, health recovers.
    host.change("health", "path", "/health");
    host.reload();
    wait_for("health back to Ok", Duration::from_secs(20), || {
        (host.health()["status"] == "Ok").then_some(())
    });
    // Deployments run with the settings in force.
    host.deploy_ok(&sample(bundles.path(), "v2", &[]));
    assert_eq!(
        post_status(&host, 8 * 1024),
        413,
        "v2's config keeps the new limit"
    );
}

#[test]
fn an_invalid_config_changes_nothing_and_says_why() {
    let mut host = TestHost::new().set("proxy", "client_max_body_size", "1m");
    host.start();
    let bundles = tempfile::tempdir().expect("tempdir");
    host.deploy_ok(&sample(bundles.path(), "v1", &[]));
    let pids = app_pids(&host);

    host.change("proxy", "client_max_body_size", "4k");
    host.change("health", "colour", "blue");
    host.reload();
    let refused = wait_for("the refusal", Duration::from_secs(20), || {
        event(&host, "error", "SIGHUP: nothing changed")
    });
    assert!(refused.contains("health.colour"), "{refused}");
    assert_ne!(post_status(&host, 8 * 1024), 413, "the old limit stays");

    assert_eq!(app_pids(&host), pids);

    // Fixed, the same file applies.
    host.remove("health", "colour");
    host.reload();
    wait_for("the fixed file to apply", Duration::from_secs(20), || {
        event(&host, "info", "applied: proxy.client_max_body_size")
    });
    assert_eq!(post_status(&host, 8 * 1024), 413);
    assert_eq!(app_pids(&host), pids);
    assert_eq!(host.body("/"), "Hello from v1\n");
}

#[test]
fn a_new_controller_address_applies_to_the_running_link() {
    let controller = common::fleet::TestController::start(None);
    let mut host = common::fleet::fleet(&controller, 1).remove(0);
    let link = |host: &TestHost| host.status()["controller"].clone();
    wait_for("the link to connect", Duration::from_secs(20), || {
        (link(&host)["connected"] == true).then_some(())
    });

    let nowhere = format!("http://127.0.0.1:{}", common::free_ports(1)[0]);
    host.change("controller", "url", nowhere.as_str());
    host.reload();
    wait_for(
        "the link to follow the new address",
        Duration::from_secs(20),
        || {
            let status = link(&host);
            (status["url"] == nowhere.as_str() && status["connected"] == false).then_some(())
        },
    );

    host.change("controller", "url", controller.url());
    host.reload();
    let before = link(&host)["last_contact"].clone();
    wait_for("the link to report again", Duration::from_secs(20), || {
        let status = link(&host);
        (status["connected"] == true && status["last_contact"] != before).then_some(())
    });
    assert!(
        event(&host, "info", "applied: controller.url").is_some(),
        "{:?}",
        host.events()
    );
    // Enrollment carried over: the host still has its credential and one identity.
    assert_eq!(link(&host)["enrolled"], true);
}
