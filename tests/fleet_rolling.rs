//! Rolling deployments through the controller, behind its real HAProxy, with real agents
//! (real nginx, real apps) and continuous load through the load balancer: batches drained
//! and gated one after another with no failed request, Elastic Beanstalk's outcome and texts
//! when a host's hook or gate fails, AutoRollback, IgnoreHealthCheck.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::lb::{CapacityWatch, cname, controller_with_lb, get_via, wait_in_rotation};
use common::load::{Load, assert_every_request_served};
use common::rolling::*;
use common::{TestHost, tail, wait_for};

#[test]
fn a_rolling_deployment_keeps_capacity_and_fails_no_request_through_the_load_balancer() {
    let (controller, lb_port) = controller_with_lb();
    let bundles = tempfile::tempdir().expect("tempdir");
    let hosts = rolling_fleet(
        &controller,
        bundles.path(),
        6,
        &[
            "aws:elasticbeanstalk:command:BatchSizeType=Percentage",
            "aws:elasticbeanstalk:command:BatchSize=34",
            "aws:elasticbeanstalk:command:Timeout=30",
        ],
    );
    let env = controller.api("/v1/environments/web");
    assert_eq!(env["CNAME"], cname("web"));
    let v2 = bundle(bundles.path(), "v2");

    let load = Load::start_for_host(lb_port, "/", Some(&cname("web")), 4);
    let capacity = CapacityWatch::start(&controller, "web");
    let (ok, deployment) = deploy(&controller, "web", &v2, "v2");
    let capacity = capacity.finish();
    let outcomes = load.finish();
    assert!(ok, "the deployment succeeds: {deployment:#}");
    assert_every_request_served(&outcomes, &bodies(&["v1", "v2"]));
    assert!(
        capacity.samples > 10,
        "capacity was sampled throughout: {capacity:?}"
    );
    assert!(
        capacity.least >= 3,
        "capacity never below N - batch = 3 servers in rotation: {capacity:#?}"
    );
    let batches: BTreeSet<u64> = deployment["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["batch"].as_u64())
        .collect();
    assert_eq!(
        batches,
        BTreeSet::from([0, 1]),
        "6 hosts at 34 %: 2 batches of 3"
    );
    for host in &hosts {
        assert_eq!(serving(host), "v2");
    }
    let text = messages(&controller, &deployment);
    let ids = |hosts: &[TestHost]| {
        let mut ids: Vec<String> = hosts.iter().map(TestHost::instance_id).collect();
        ids.sort();
        ids.join(",")
    };
    let first = format!(
        "Batch 1: Starting application deployment on instance(s) [{}].",
        ids(&hosts[..3])
    );
    let second = format!(
        "Batch 2: Starting application deployment on instance(s) [{}].",
        ids(&hosts[3..])
    );
    for expected in [
        first.as_str(),
        "Batch 1: Registering instance(s) with the load balancer and waiting for them to be healthy.",
        "Batch 1: Completed application deployment.",
        second.as_str(),
        "Command execution completed on 6 of 6 instances in environment.",
        "New application version was deployed to running EC2 instances.",
    ] {
        assert!(
            text.iter().any(|m| m == expected),
            "{expected:?} in {text:#?}"
        );
    }
    // Once done, every host is back in rotation and the environment serves v2.
    wait_in_rotation(&controller, "web", 6);
    let answer = get_via(lb_port, &cname("web"), "/").expect("through the load balancer");
    assert_eq!(answer.body, "Hello from v2\n");
    let unknown = get_via(lb_port, "nobody.elb.test", "/").expect("answered");
    assert_eq!(unknown.status, 404, "no environment has that host name");
}

#[test]
fn a_failed_hook_aborts_with_ebs_texts_and_the_expected_version_stays_the_old_one() {
    let (controller, lb_port) = controller_with_lb();
    let bundles = tempfile::tempdir().expect("tempdir");
    let hosts = rolling_fleet(&controller, bundles.path(), 3, &ONE_AT_A_TIME);
    // i-0001 is batch 2: batch 1 (i-0000) deploys v2 and keeps it.
    std::fs::write(hosts[1].path("fail-hook-v2"), "").expect("marker");
    let load = Load::start_for_host(lb_port, "/", Some(&cname("web")), 2);
    let capacity = CapacityWatch::start(&controller, "web");
    let (ok, deployment) = deploy(&controller, "web", &bundle(bundles.path(), "v2"), "v2");
    let capacity = capacity.finish();
    let outcomes = load.finish();
    assert!(
        !ok,
        "deploy --wait exits non-zero when the deployment fails"
    );
    assert!(
        capacity.least >= 2,
        "one host out at a time: {capacity:#?}\n{}",
        tail(&controller.log(), 40)
    );
    assert_every_request_served(&outcomes, &bodies(&["v1", "v2"]));
    assert_eq!(deployment["status"], "Failed");
    assert_eq!(
        deployment["message"],
        format!(
            "Unsuccessful command execution on instance id(s) '{}'. Aborting the operation.",
            hosts[1].instance_id()
        )
    );
    let failed = &deployment["members"][1];
    assert_eq!(failed["state"], "failed");
    let detail = format!("{} {}", failed["step"], failed["message"]);
    assert!(
        detail.contains("Output: this host refuses v2"),
        "the failing step's output: {detail}"
    );
    assert_eq!(
        deployment["members"][2]["state"], "pending",
        "batch 3 was never sent"
    );
    let text = messages(&controller, &deployment);
    for expected in [
        "Failed to deploy application.",
        "During an aborted deployment, some instances may have deployed the new application version. To ensure all instances are running the same version, re-deploy the appropriate application version.",
    ] {
        assert!(
            text.iter().any(|m| m == expected),
            "{expected:?} in {text:#?}"
        );
    }
    assert_eq!(
        [serving(&hosts[0]), serving(&hosts[1]), serving(&hosts[2])],
        ["v2", "v1", "v1"],
        "finished batches keep the new version; the failed host rolled back on its own"
    );
    let env = controller.api("/v1/environments/web");
    assert_eq!(
        env["VersionLabel"], "v1",
        "the expected version stays the old one"
    );
    wait_for(
        "the wrong-version cause on the host that deployed v2",
        Duration::from_secs(30),
        || {
            let instances = controller.api("/v1/environments/web/instances");
            let causes = instances["InstanceHealthList"]
                .as_array()?
                .iter()
                .find(|i| i["InstanceId"] == hosts[0].instance_id())?["Causes"]
                .to_string();
            causes
                .contains("Incorrect application version \\\"v2\\\"")
                .then_some(())
        },
    );

    // A restart in between takes no serial the failed deployment gave its first batch: the
    // next deployment reaches every host, that one included.
    std::fs::remove_file(hosts[1].path("fail-hook-v2")).expect("marker");
    let restart = controller.cli(&["restart", "web", "--wait"]);
    assert!(
        restart.status.success(),
        "{}",
        String::from_utf8_lossy(&restart.stderr)
    );
    let (ok, v3) = deploy(&controller, "web", &bundle(bundles.path(), "v3"), "v3");
    assert!(ok, "{v3:#}");
    for host in &hosts {
        assert_eq!(serving(host), "v3");
    }
}

#[test]
fn a_failed_gate_aborts_at_the_batch_deadline_and_auto_rollback_restores_the_old_version() {
    let (controller, lb_port) = controller_with_lb();
    let bundles = tempfile::tempdir().expect("tempdir");
    let hosts = rolling_fleet(
        &controller,
        bundles.path(),
        3,
        &[
            ONE_AT_A_TIME.as_slice(),
            &["aws:elasticbeanstalk:command:AutoRollback=true"],
        ]
        .concat(),
    );
    // i-0001 deploys v2 fine but fails the load balancer's check: it never passes its gate.
    std::fs::write(hosts[1].path("fail-lb-v2"), "").expect("marker");
    let load = Load::start_for_host(lb_port, "/", Some(&cname("web")), 2);
    let (ok, deployment) = deploy(&controller, "web", &bundle(bundles.path(), "v2"), "v2");
    assert!(!ok);
    assert_eq!(
        deployment["message"],
        format!(
            "Instance id(s) '{}' did not pass health check after command execution. Aborting the operation.",
            hosts[1].instance_id()
        )
    );
    let rollback = wait_for("the rollback's end", Duration::from_secs(90), || {
        let list = controller.api("/v1/environments/web/deployments");
        let newest = list["Deployments"].as_array()?.first()?.clone();
        (newest["kind"] == "rollback"
            && matches!(newest["status"].as_str(), Some("Succeeded" | "Failed")))
        .then_some(newest)
    });
    let outcomes = load.finish();
    assert_eq!(rollback["status"], "Succeeded", "{rollback:#}");
    assert_eq!(rollback["version_label"], "v1");
    let order: Vec<String> = rollback["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["instance_id"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        order,
        [hosts[1].instance_id(), hosts[0].instance_id()],
        "newest batch first; the third host never got v2"
    );
    for host in &hosts {
        assert_eq!(serving(host), "v1");
    }
    // A host failing its check is out of rotation: no request reached it.
    assert_every_request_served(&outcomes, &bodies(&["v1", "v2"]));
    let events: Vec<String> = controller
        .events("web")
        .iter()
        .filter_map(|e| e["Message"].as_str().map(str::to_string))
        .collect();
    assert!(
        events
            .iter()
            .any(|m| m.starts_with("AutoRollback: deployment ")),
        "{events:#?}"
    );
}

#[test]
fn ignore_health_check_goes_on_past_a_failed_gate_with_a_warning() {
    let (controller, _lb_port) = controller_with_lb();
    let bundles = tempfile::tempdir().expect("tempdir");
    let hosts = rolling_fleet(
        &controller,
        bundles.path(),
        3,
        &[
            ONE_AT_A_TIME.as_slice(),
            &["aws:elasticbeanstalk:command:IgnoreHealthCheck=true"],
        ]
        .concat(),
    );
    std::fs::write(hosts[0].path("fail-lb-v2"), "").expect("marker");
    let (ok, deployment) = deploy(&controller, "web", &bundle(bundles.path(), "v2"), "v2");
    assert!(ok, "{deployment:#}");
    let text = messages(&controller, &deployment);
    let warning = format!(
        "Batch 1: Instance id(s) '{}' did not pass health check after command execution. Continuing: IgnoreHealthCheck is set.",
        hosts[0].instance_id()
    );
    assert!(text.contains(&warning), "{text:#?}");
    for host in &hosts {
        assert_eq!(serving(host), "v2");
    }
}
