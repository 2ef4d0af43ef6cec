//! The controller with real agents (real nginx, real apps) on loopback: enrollment, an
//! AllAtOnce deployment through the controller, environment health with Elastic Beanstalk's
//! causes, a controller killed mid-deployment, a host cut off.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::bundles::{Entry, sample};
use common::fleet::{TestController, fleet};
use common::{TestHost, wait_for};
use serde_json::Value;

fn serving(host: &TestHost) -> Option<String> {
    host.get("/")
        .ok()
        .filter(|r| r.status == 200)
        .map(|r| r.body)
}

fn health_status(controller: &TestController) -> (String, Vec<String>) {
    let health = controller.health("web");
    let causes = health["Causes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c.as_str().map(str::to_string))
        .collect();
    (
        health["HealthStatus"].as_str().unwrap_or("").to_string(),
        causes,
    )
}

/// Every host event the controller stored appears once (same instance, date and message).
fn assert_host_events_once(controller: &TestController) {
    let events = controller.events("web");
    let mut seen = HashSet::new();
    for event in events
        .iter()
        .filter(|e| e["InstanceId"].is_string() && e["Source"] != "controller")
    {
        let key = (
            event["InstanceId"].to_string(),
            event["EventDate"].to_string(),
            event["Message"].to_string(),
            event["SourceId"].to_string(),
        );
        assert!(seen.insert(key.clone()), "event stored twice: {key:?}");
    }
    assert!(!seen.is_empty(), "host events reached the controller");
}

#[test]
fn a_version_deployed_through_the_controller_serves_on_every_host_and_health_rolls_up() {
    let controller = TestController::start(None);
    let hosts = fleet(&controller, 4);
    let bundles = tempfile::tempdir().expect("tempdir");
    let v1 = sample(bundles.path(), "v1", &[]);
    controller.deploy_wait("web", &v1, "v1");
    for host in &hosts {
        let body = serving(host).expect("the host serves");
        assert!(body.contains("v1"), "{body}");
        assert_eq!(host.status()["release"]["version_label"], "v1");
    }
    wait_for("environment health Ok", Duration::from_secs(30), || {
        let (status, _) = health_status(&controller);
        (status == "Ok").then_some(())
    });

    // One host's app starts failing a share of its requests: Warning, with EB's causes.
    let failing = &hosts[0];
    let (status, causes) = wait_for(
        "environment health Warning",
        Duration::from_secs(60),
        || {
            for _ in 0..4 {
                let _ = failing.get("/status/500");
                let _ = failing.get("/");
            }
            for host in &hosts[1..] {
                for _ in 0..12 {
                    let _ = host.get("/");
                }
            }
            let (status, causes) = health_status(&controller);
            (status == "Warning").then_some((status, causes))
        },
    );
    assert_eq!(status, "Warning");
    assert!(
        causes
            .iter()
            .any(|c| c == "Impaired services on 1 out of 4 instances.")
            || causes
                .iter()
                .any(|c| c.ends_with("% of the requests are failing with HTTP 5xx.")),
        "EB's causes: {causes:?}"
    );
    wait_for(
        "environment health back to Ok",
        Duration::from_secs(60),
        || {
            for host in &hosts {
                let _ = host.get("/");
            }
            let (status, _) = health_status(&controller);
            (status == "Ok").then_some(())
        },
    );
    let events = controller.events("web");
    let messages: Vec<&str> = events
        .iter()
        .filter_map(|e| e["Message"].as_str())
        .collect();
    // Hysteresis publishes the latest candidate, so the way there may pass through Degraded or
    // Info: what must show is a transition into Warning, and a later one back to Ok.
    let transition_to = |m: &str, to: &str| {
        m.starts_with("Environment health has transitioned from ")
            && m.contains(&format!(" to {to}."))
    };
    let worse = messages.iter().position(|m| transition_to(m, "Warning"));
    let better = worse.and_then(|at| messages[at..].iter().position(|m| transition_to(m, "Ok")));
    assert!(
        worse.is_some() && better.is_some(),
        "transition events: {messages:#?}"
    );
    assert!(
        messages.contains(&"New application version was deployed to running EC2 instances."),
        "{messages:#?}"
    );
    assert_host_events_once(&controller);
}

#[test]
fn a_controller_killed_mid_deployment_resumes_it_and_marks_no_host_missing() {
    let mut controller = TestController::start(None);
    let hosts = fleet(&controller, 2);
    let bundles = tempfile::tempdir().expect("tempdir");
    let v1 = sample(bundles.path(), "v1", &[]);
    let v2 = sample(bundles.path(), "v2", &[]);
    controller.deploy_wait("web", &v1, "v1");

    let deployment =
        controller.cli_json(&["deploy", "web", v2.to_str().expect("path"), "--label", "v2"]);
    let id = deployment["id"].as_i64().expect("deployment id");
    controller.kill();
    controller.spawn();
    // During the failover grace no host is NoData, and the deployment finishes.
    let finished: Value = wait_for(
        "the deployment resumed and finished",
        Duration::from_secs(60),
        || {
            let instances = controller.api("/v1/environments/web/instances");
            for instance in instances["InstanceHealthList"]
                .as_array()
                .into_iter()
                .flatten()
            {
                assert_ne!(
                    instance["HealthStatus"], "NoData",
                    "no host is missing after a restart: {instance}"
                );
            }
            let deployment = controller.api(&format!("/v1/deployments/{id}"));
            (deployment["status"] != "Pending" && deployment["status"] != "InProgress")
                .then_some(deployment)
        },
    );
    assert_eq!(
        finished["status"],
        "Succeeded",
        "{finished:#}\n{}",
        common::tail(&controller.log(), 40)
    );
    for host in &hosts {
        assert!(serving(host).expect("serves").contains("v2"));
    }
    let messages = controller.deployment_messages("web", id);
    for once in [
        "Environment update is starting.",
        "New application version was deployed to running EC2 instances.",
    ] {
        assert_eq!(
            messages.iter().filter(|m| *m == once).count(),
            1,
            "{once:?} once in {messages:#?}"
        );
    }
    assert_host_events_once(&controller);
}

#[test]
fn a_host_cut_off_is_nodata_then_back_with_its_events_once() {
    let mut controller_config = TestController::start(None);
    let mut hosts = fleet(&controller_config, 2);
    let controller = &mut controller_config;
    let bundles = tempfile::tempdir().expect("tempdir");
    let v1 = sample(bundles.path(), "v1", &[]);
    controller.deploy_wait("web", &v1, "v1");
    // Past the failover grace (3 s in the test config), silence means NoData.
    wait_for(
        "the failover grace is over",
        Duration::from_secs(30),
        || (health_status(controller).0 == "Ok").then_some(()),
    );
    let cut = &mut hosts[1];
    cut.stop_agent(nix::sys::signal::Signal::SIGKILL, Duration::from_secs(10));
    let instance = wait_for("the silent host is NoData", Duration::from_secs(30), || {
        let instances = controller.api("/v1/environments/web/instances");
        instances["InstanceHealthList"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["InstanceId"] == "i-0001" && i["HealthStatus"] == "NoData")
            .cloned()
    });
    let causes = instance["Causes"].to_string();
    assert!(causes.contains("No data. Last seen"), "{causes}");
    cut.start();
    wait_for("the host is back", Duration::from_secs(30), || {
        let instances = controller.api("/v1/environments/web/instances");
        instances["InstanceHealthList"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["InstanceId"] == "i-0001" && i["HealthStatus"] == "Ok")
            .cloned()
    });
    assert_host_events_once(controller);
}

#[test]
fn a_deployment_whose_hook_fails_fails_naming_the_hosts_and_the_old_version_keeps_serving() {
    let controller = TestController::start(None);
    let hosts = fleet(&controller, 2);
    let bundles = tempfile::tempdir().expect("tempdir");
    let v1 = sample(bundles.path(), "v1", &[]);
    controller.deploy_wait("web", &v1, "v1");
    // A prebuild hook that fails: every host refuses the release and v1 keeps serving.
    let failing = b"#!/bin/sh\necho 'assets.tar missing' >&2\nexit 3\n";
    let v2 = sample(
        bundles.path(),
        "v2",
        &[Entry::File(
            ".platform/hooks/prebuild/10_assets.sh",
            failing,
            0o755,
        )],
    );
    let output = controller.cli(&[
        "deploy",
        "web",
        v2.to_str().expect("path"),
        "--label",
        "v2",
        "--wait",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        !output.status.success(),
        "a failed deployment exits non-zero:\n{stdout}\n{stderr}"
    );
    let said = format!("{stdout}\n{stderr}");
    assert!(
        said.contains("Unsuccessful command execution on instance id(s) 'i-0000,i-0001'"),
        "EB's text naming the instances:\n{said}"
    );
    assert!(
        said.contains("exit status: 3") || said.contains("10_assets.sh"),
        "the host's reason:\n{said}"
    );
    for host in &hosts {
        assert!(
            serving(host).expect("serves").contains("v1"),
            "the old version keeps serving"
        );
    }
    let env = controller.cli_json(&["env", "status", "web"]);
    assert_eq!(
        env["VersionLabel"], "v1",
        "the expected version stays v1: {env}"
    );
    assert_eq!(env["Status"], "Ready", "{env}");
}
