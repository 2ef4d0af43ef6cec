//! The policies that need new hosts, with real agents the controller's local provisioner
//! starts on this machine (or a standby pool of enrolled hosts), behind the real HAProxy, with
//! continuous load through it: Immutable, RollingWithAdditionalBatch, TrafficSplitting (the
//! split measured, and a failing new version sending the traffic back).

mod common;

use std::collections::BTreeSet;

use serde_json::Value;

use common::bundles::Entry;
use common::fleet::{TestController, fleet_in};
use common::lb::{CapacityWatch, cname, server_states, wait_in_rotation};
use common::load::{Load, assert_every_request_served};
use common::provision::{controller_with_local_provisioner, controller_with_standby_pool};
use common::rolling::*;
use common::{tail, wait_for};

const IMMUTABLE: &str = "aws:elasticbeanstalk:command:DeploymentPolicy=Immutable";
const ADDITIONAL_BATCH: &str =
    "aws:elasticbeanstalk:command:DeploymentPolicy=RollingWithAdditionalBatch";
const TRAFFIC_SPLITTING: &str = "aws:elasticbeanstalk:command:DeploymentPolicy=TrafficSplitting";

/// v2 deployed to `web` with `options` under load through the load balancer, its capacity
/// watched: it succeeds and no request fails; the deployment and the capacity seen.
fn watched_deploy(
    controller: &TestController,
    lb_port: u16,
    bundles: &std::path::Path,
    options: &[&str],
) -> (Value, common::lb::Capacity) {
    let load = Load::start_for_host(lb_port, "/", Some(&cname("web")), 3);
    let capacity = CapacityWatch::start(controller, "web");
    let (ok, deployment) = deploy_with(controller, "web", &bundle(bundles, "v2"), "v2", options);
    let capacity = capacity.finish();
    let outcomes = load.finish();
    assert!(ok, "{deployment:#}\n{}", tail(&controller.log(), 40));
    assert_every_request_served(&outcomes, &bodies(&["v1", "v2"]));
    (deployment, capacity)
}

/// The environment's enrolled instances and the version each reports serving.
fn instances(controller: &TestController, env: &str) -> Vec<(String, String)> {
    let list = controller.api(&format!("/v1/environments/{env}/instances"));
    let mut found: Vec<(String, String)> = list["InstanceHealthList"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|i| {
            (
                i["InstanceId"].as_str().unwrap_or("").to_string(),
                i["Deployment"]["VersionLabel"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    found.sort();
    found
}

fn ids(hosts: &[common::TestHost]) -> BTreeSet<String> {
    hosts.iter().map(common::TestHost::instance_id).collect()
}

fn member_ids(deployment: &Value, role: &str) -> BTreeSet<String> {
    deployment["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter(|m| m["role"].as_str().unwrap_or("deploy") == role)
        .map(|m| m["instance_id"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn immutable_replaces_every_host_with_new_ones_and_fails_no_request() {
    let (controller, lb_port, local) = controller_with_local_provisioner("5s");
    let bundles = tempfile::tempdir().expect("tempdir");
    let originals = rolling_fleet(&controller, bundles.path(), 2, &ONE_AT_A_TIME);
    let (deployment, capacity) = watched_deploy(&controller, lb_port, bundles.path(), &[IMMUTABLE]);
    assert!(
        capacity.least >= 2,
        "never fewer servers in rotation than the environment had: {capacity:#?}"
    );
    let launched = member_ids(&deployment, "launch");
    assert_eq!(
        launched.len(),
        2,
        "as many new hosts as originals: {deployment:#}"
    );
    assert_eq!(member_ids(&deployment, "retire"), ids(&originals));
    assert_eq!(
        instances(&controller, "web"),
        launched
            .iter()
            .map(|id| (id.clone(), "v2".to_string()))
            .collect::<Vec<_>>(),
        "the new hosts serve v2; the originals left the environment"
    );
    assert_eq!(
        local.roots(),
        launched,
        "the local provisioner's hosts are the new ones"
    );
    wait_for(
        "the load balancer to have the new hosts only",
        std::time::Duration::from_secs(20),
        || {
            let servers: BTreeSet<String> = server_states(controller.data_dir(), "web")
                .into_keys()
                .collect();
            (servers == launched).then_some(())
        },
    );
    let text = messages(&controller, &deployment);
    for expected in [
        "Immutable deployment policy enabled. Launching one instance with the new version to verify health.",
        "Launching 1 more instance(s) with the new version.",
        "New application version was deployed to running EC2 instances.",
    ] {
        assert!(
            text.iter().any(|m| m == expected),
            "missing {expected:?} in {text:#?}"
        );
    }
    assert!(
        text.iter()
            .any(|m| m.starts_with("Added instance(s) [local-")),
        "{text:#?}"
    );
    assert!(
        text.iter()
            .any(|m| m.contains("Removing the original instance(s) [")),
        "{text:#?}"
    );
}

#[test]
fn an_additional_batch_keeps_full_capacity_and_is_released_at_the_end() {
    let (controller, lb_port, local) = controller_with_local_provisioner("5s");
    let bundles = tempfile::tempdir().expect("tempdir");
    let originals = rolling_fleet(&controller, bundles.path(), 2, &ONE_AT_A_TIME);
    let (deployment, capacity) =
        watched_deploy(&controller, lb_port, bundles.path(), &[ADDITIONAL_BATCH]);
    assert!(
        capacity.least >= 2,
        "capacity never below the environment's 2 hosts: {capacity:#?}"
    );
    assert!(
        capacity.changes.iter().any(|(_, states)| states.len() == 3),
        "the additional host served beside the originals: {capacity:#?}"
    );
    for host in &originals {
        assert_eq!(serving(host), "v2");
    }
    assert_eq!(member_ids(&deployment, "launch").len(), 1);
    assert_eq!(
        instances(&controller, "web"),
        ids(&originals)
            .into_iter()
            .map(|id| (id, "v2".to_string()))
            .collect::<Vec<_>>(),
        "the additional host was released: the environment is its 2 hosts again"
    );
    assert!(
        local.roots().is_empty(),
        "its agent and root are gone: {:?}",
        local.roots()
    );
    let text = messages(&controller, &deployment);
    assert!(
        text.iter().any(|m| m == "Rolling with Additional Batch deployment policy enabled. Launching a new batch of 1 additional instance(s)."),
        "{text:#?}"
    );
    assert!(
        text.iter()
            .any(|m| m.starts_with("Removing the additional batch of instance(s) [local-")),
        "{text:#?}"
    );
}

/// The new version's share of the requests through the load balancer while the deployment
/// evaluates it (from the new hosts passing their gates to the originals' retirement).
fn split_share(
    controller: &TestController,
    lb_port: u16,
) -> (usize, usize, Vec<common::load::Outcome>) {
    let member_states = |role: &str| -> Vec<String> {
        let list = controller.api("/v1/environments/web/deployments");
        list["Deployments"][0]["members"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter(|m| m["role"] == role)
            .map(|m| m["state"].as_str().unwrap_or("").to_string())
            .collect()
    };
    wait_for(
        "the new hosts pass their gates",
        std::time::Duration::from_secs(90),
        || {
            let states = member_states("launch");
            (states.len() == 2 && states.iter().all(|s| s == "healthy")).then_some(())
        },
    );
    let load = Load::start_for_host(lb_port, "/", Some(&cname("web")), 6);
    wait_for(
        "the evaluation to end",
        std::time::Duration::from_secs(60),
        || {
            member_states("retire")
                .iter()
                .any(|s| s != "pending")
                .then_some(())
        },
    );
    let outcomes = load.finish();
    let new = outcomes
        .iter()
        .filter(|o| matches!(o, Ok((200, body)) if body == "Hello from v2\n"))
        .count();
    (new, outcomes.len(), outcomes)
}

#[test]
fn traffic_splitting_sends_the_new_version_its_share_then_all_of_it() {
    let (controller, lb_port, _local) = controller_with_local_provisioner("10s");
    let bundles = tempfile::tempdir().expect("tempdir");
    let originals = rolling_fleet(&controller, bundles.path(), 2, &ONE_AT_A_TIME);
    let v2 = bundle(bundles.path(), "v2");
    let options = [
        TRAFFIC_SPLITTING,
        "aws:elasticbeanstalk:trafficsplitting:NewVersionPercent=25",
    ];
    let deploying = std::thread::scope(|scope| {
        let deploying = scope.spawn(|| deploy_with(&controller, "web", &v2, "v2", &options));
        let share = split_share(&controller, lb_port);
        (deploying.join().expect("deploy"), share)
    });
    let ((ok, deployment), (new, total, outcomes)) = deploying;
    assert!(ok, "{deployment:#}\n{}", tail(&controller.log(), 40));
    assert_every_request_served(&outcomes, &bodies(&["v1", "v2"]));
    assert!(
        total >= 2_000,
        "enough requests to measure the split: {total}"
    );
    let percent = new as f64 * 100.0 / total as f64;
    assert!(
        (percent - 25.0).abs() <= 4.0,
        "the new hosts got {percent:.1} % of {total} requests, not 25 %"
    );
    let launched = member_ids(&deployment, "launch");
    assert_eq!(member_ids(&deployment, "retire"), ids(&originals));
    assert_eq!(
        instances(&controller, "web"),
        launched
            .iter()
            .map(|id| (id.clone(), "v2".to_string()))
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_failing_new_version_sends_the_traffic_back_and_releases_the_new_hosts() {
    let (controller, lb_port, local) = controller_with_local_provisioner("5s");
    let bundles = tempfile::tempdir().expect("tempdir");
    let originals = rolling_fleet(&controller, bundles.path(), 2, &ONE_AT_A_TIME);
    // v2 deploys on its hosts (its /health answers) but the load balancer's check (/lb) fails.
    let broken_dir = bundles.path().join("broken");
    std::fs::create_dir_all(&broken_dir).expect("mkdir");
    let broken = bundle_with(&broken_dir, "v2", &[Entry::File("LB_FAIL", b"", 0o644)]);
    let load = Load::start_for_host(lb_port, "/", Some(&cname("web")), 3);
    let (ok, deployment) = deploy_with(
        &controller,
        "web",
        &broken,
        "v2",
        &[TRAFFIC_SPLITTING, "aws:elasticbeanstalk:command:Timeout=8"],
    );
    let outcomes = load.finish();
    assert!(!ok, "the deployment fails: {deployment:#}");
    assert_eq!(deployment["status"], "Failed");
    // The new hosts never took traffic: held out until their checks pass, which they never do.
    assert_every_request_served(&outcomes, &bodies(&["v1"]));
    assert_eq!(
        instances(&controller, "web"),
        ids(&originals)
            .into_iter()
            .map(|id| (id, "v1".to_string()))
            .collect::<Vec<_>>(),
        "the originals serve v1, untouched; the new hosts are gone"
    );
    assert!(local.roots().is_empty(), "{:?}", local.roots());
    wait_in_rotation(&controller, "web", 2);
    let text = messages(&controller, &deployment);
    assert!(
        text.iter()
            .any(|m| m.starts_with("Terminating the new instance(s) [local-")),
        "{text:#?}"
    );
    assert!(
        text.iter().any(|m| m.contains("did not pass health check")),
        "{text:#?}"
    );
}

#[test]
fn the_standby_pool_lends_hosts_and_takes_the_originals_back() {
    let (controller, lb_port) = controller_with_standby_pool();
    let bundles = tempfile::tempdir().expect("tempdir");
    let pool = fleet_in(&controller, "standby", 2, &[]);
    let originals = rolling_fleet(&controller, bundles.path(), 2, &ONE_AT_A_TIME);
    let load = Load::start_for_host(lb_port, "/", Some(&cname("web")), 3);
    let (ok, first) = deploy_with(
        &controller,
        "web",
        &bundle(bundles.path(), "v2"),
        "v2",
        &[IMMUTABLE],
    );
    assert!(ok, "{first:#}\n{}", tail(&controller.log(), 40));
    assert_eq!(
        member_ids(&first, "launch"),
        ids(&pool),
        "the pool's hosts were lent"
    );
    assert_eq!(
        instances(&controller, "web"),
        ids(&pool)
            .into_iter()
            .map(|id| (id, "v2".to_string()))
            .collect::<Vec<_>>()
    );
    let back: BTreeSet<String> = instances(&controller, "standby")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        back,
        ids(&originals),
        "the originals went back into the pool"
    );
    // They come back for the next deployment, and take it although they applied a serial
    // of this environment before (serials are global).
    let (ok, second) = deploy_with(
        &controller,
        "web",
        &bundle(bundles.path(), "v3"),
        "v3",
        &[IMMUTABLE],
    );
    let outcomes = load.finish();
    assert!(ok, "{second:#}\n{}", tail(&controller.log(), 40));
    assert_every_request_served(&outcomes, &bodies(&["v1", "v2", "v3"]));
    assert_eq!(member_ids(&second, "launch"), ids(&originals));
    for host in &originals {
        assert_eq!(serving(host), "v3");
    }
    assert!(
        instances(&controller, "standby")
            .iter()
            .all(|(_, version)| version == "v2")
    );
}
