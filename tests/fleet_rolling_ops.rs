//! Rolling operations through the controller behind its real HAProxy, under load: a
//! controller killed in the middle of batch 2, a rolling restart, a URL swap without a reload,
//! and a second operation refused while one runs.

mod common;

use std::path::Path;
use std::time::Duration;

use common::fleet::fleet_in;
use common::lb::{cname, controller_with_lb, get_via, wait_in_rotation};
use common::load::{Load, assert_every_request_served};
use common::rolling::*;
use common::{tail, wait_for};
use serde_json::Value;

#[test]
fn a_controller_killed_during_batch_two_resumes_without_resending_batch_one() {
    let (mut controller, lb_port) = controller_with_lb();
    let bundles = tempfile::tempdir().expect("tempdir");
    let hosts = rolling_fleet(
        &controller,
        bundles.path(),
        4,
        &[
            "aws:elasticbeanstalk:command:BatchSizeType=Percentage",
            "aws:elasticbeanstalk:command:BatchSize=50",
            "aws:elasticbeanstalk:command:Timeout=30",
        ],
    );
    let v2 = bundle(bundles.path(), "v2");
    let output = controller.cli(&[
        "deploy",
        "web",
        v2.to_str().expect("path"),
        "--label",
        "v2",
        "--json",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let started: Value = serde_json::from_slice(&output.stdout).expect("deployment");
    let id = started["id"].as_i64().expect("id");
    let load = Load::start_for_host(lb_port, "/", Some(&cname("web")), 2);
    wait_for("batch 2 under way", Duration::from_secs(60), || {
        let d = controller.api(&format!("/v1/deployments/{id}"));
        let members = d["members"].as_array()?.clone();
        (members[0]["state"] == "healthy" && members[2]["state"] != "pending").then_some(())
    });
    let batch_one: Vec<Value> = hosts[..2]
        .iter()
        .map(|h| h.status()["release"]["deployment_id"].clone())
        .collect();
    controller.kill();
    controller.spawn();
    let done = wait_for("the deployment's end", Duration::from_secs(90), || {
        let d = controller.api(&format!("/v1/deployments/{id}"));
        d["status"]
            .as_str()
            .is_some_and(|s| s != "InProgress")
            .then_some(d)
    });
    let outcomes = load.finish();
    assert_eq!(
        done["status"],
        "Succeeded",
        "{done:#}\n{}",
        tail(&controller.log(), 30)
    );
    assert_every_request_served(&outcomes, &bodies(&["v1", "v2"]));
    let again: Vec<Value> = hosts[..2]
        .iter()
        .map(|h| h.status()["release"]["deployment_id"].clone())
        .collect();
    assert_eq!(batch_one, again, "batch 1's hosts were not deployed again");
    let text = controller.deployment_messages("web", id);
    let starts = text
        .iter()
        .filter(|m| m.starts_with("Batch 1: Starting application deployment on"))
        .count();
    assert_eq!(starts, 1, "batch 1 started once: {text:#?}");
    for host in &hosts {
        assert_eq!(serving(host), "v2");
    }
}

#[test]
fn a_rolling_restart_and_a_url_swap_fail_no_request_and_a_second_operation_is_refused() {
    let (controller, lb_port) = controller_with_lb();
    let bundles = tempfile::tempdir().expect("tempdir");
    let blue = rolling_fleet(&controller, bundles.path(), 2, &ONE_AT_A_TIME);
    let options: Vec<&str> = ROLLING.iter().chain(&ONE_AT_A_TIME).copied().collect();
    let green = fleet_in(&controller, "green", 2, &options);
    let (ok, _) = deploy(&controller, "green", &bundle(bundles.path(), "v2"), "v2");
    assert!(ok);
    wait_in_rotation(&controller, "green", 2);

    // Policies that need new hosts are refused, naming why; nothing changes.
    let refused = controller.cli(&[
        "env",
        "update",
        "web",
        "--option",
        "aws:elasticbeanstalk:command:DeploymentPolicy=Immutable",
    ]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("Immutable needs new hosts, and this controller has no provisioner"),
        "{stderr}"
    );

    let load = Load::start_for_host(lb_port, "/", Some(&cname("web")), 3);
    let restart = controller.cli(&["restart", "web", "--json"]);
    assert!(
        restart.status.success(),
        "{}",
        String::from_utf8_lossy(&restart.stderr)
    );
    let restart: Value = serde_json::from_slice(&restart.stdout).expect("deployment");
    // A second operation while one runs: EB's 409.
    let second = controller.cli(&["restart", "web"]);
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains(
            "Environment named web is in an invalid state for this operation. Must be Ready."
        ),
        "{stderr}"
    );
    let id = restart["id"].as_i64().expect("id");
    let done = wait_for("the rolling restart's end", Duration::from_secs(60), || {
        let d = controller.api(&format!("/v1/deployments/{id}"));
        d["status"]
            .as_str()
            .is_some_and(|s| s != "InProgress" && s != "Pending")
            .then_some(d)
    });
    assert_eq!(done["status"], "Succeeded", "{done:#}");
    let batches: Vec<u64> = done["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["batch"].as_u64())
        .collect();
    assert_eq!(batches, [0, 1], "one host per batch, as the deployments");
    wait_in_rotation(&controller, "web", 2);

    // A configuration change is a deployment of the same version, in the same batches.
    let update = controller.cli(&[
        "env",
        "update",
        "web",
        "--option",
        "aws:elasticbeanstalk:application:environment:GREETING=hello",
        "--wait",
        "--json",
    ]);
    assert!(
        update.status.success(),
        "{}",
        String::from_utf8_lossy(&update.stderr)
    );
    let update: Value = serde_json::from_slice(&update.stdout).expect("deployment");
    assert_eq!(
        (update["policy"].as_str(), update["version_label"].as_str()),
        (Some("Rolling"), Some("v1"))
    );
    assert_eq!(update["members"][1]["batch"], 1, "{update:#}");
    for host in &blue {
        assert_eq!(host.body("/env/GREETING"), "hello\n");
    }
    wait_in_rotation(&controller, "web", 2);

    // The swap: web's host name now reaches green's hosts, with no reload of HAProxy.
    let worker = |data: &Path| {
        common::lb::haproxy_command(data, "show info")
            .expect("show info")
            .lines()
            .find(|l| l.starts_with("Pid:"))
            .map(str::to_string)
    };
    let before = worker(controller.data_dir());
    let swapped = controller.cli_json(&["swap", "web", "green"]);
    assert_eq!(swapped["Environments"][0]["CNAME"], cname("green"));
    assert_eq!(swapped["Environments"][1]["CNAME"], cname("web"));
    wait_for(
        "web's name served by green",
        Duration::from_secs(10),
        || {
            let answer = get_via(lb_port, &cname("web"), "/").ok()?;
            (answer.body == "Hello from v2\n").then_some(())
        },
    );
    let outcomes = load.finish();
    assert_eq!(
        before,
        worker(controller.data_dir()),
        "the swap did not reload HAProxy"
    );
    assert_every_request_served(&outcomes, &bodies(&["v1", "v2"]));
    assert!(
        outcomes
            .iter()
            .any(|o| matches!(o, Ok((200, b)) if b == "Hello from v2\n")),
        "requests reached green after the swap"
    );
    let env = controller.api("/v1/environments/green");
    assert_eq!(env["CNAME"], cname("web"), "the swap is stored");
    drop((blue, green));
}
