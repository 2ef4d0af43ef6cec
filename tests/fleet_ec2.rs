//! An Immutable deployment whose new hosts come from the environment's EC2 Auto Scaling group
//! (moto_server, through the controller's real aws-sdk-autoscaling calls). moto launches no
//! machine: the test plays the instances' boot by starting an agent for each new instance id
//! the group lists, enrolled as its launch template's user data would enroll it. At the end
//! the group holds the new instances only: the originals were terminated through the API.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use aws_sdk_autoscaling::Client;
use serde_json::Value;

use common::fleet::{TestController, enrolled_host};
use common::lb::{cname, controller_with_lb_env, wait_in_rotation};
use common::load::{Load, assert_every_request_served};
use common::moto::{Moto, block_on};
use common::rolling::{ONE_AT_A_TIME, ROLLING, bodies, bundle, deploy, deploy_with, serving};
use common::{TestHost, tail, wait_for};

const GROUP: &str = "hostmanager-web";

fn autoscaling(moto: &Moto) -> Client {
    let credentials =
        aws_sdk_autoscaling::config::Credentials::new("test", "test", None, None, "tests");
    let config = aws_sdk_autoscaling::config::Builder::new()
        .behavior_version(aws_sdk_autoscaling::config::BehaviorVersion::latest())
        .region(aws_sdk_autoscaling::config::Region::new("us-east-1"))
        .endpoint_url(moto.endpoint())
        .credentials_provider(credentials)
        .build();
    Client::from_conf(config)
}

/// The group's instances (sorted) and desired capacity.
fn group(client: &Client) -> (BTreeSet<String>, i32) {
    block_on(async {
        let found = client
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(GROUP)
            .send()
            .await
            .expect("DescribeAutoScalingGroups");
        let group = found.auto_scaling_groups()[0].clone();
        let ids = group
            .instances()
            .iter()
            .filter_map(|i| i.instance_id().map(str::to_string))
            .collect();
        (ids, group.desired_capacity().unwrap_or(-1))
    })
}

fn create_group(client: &Client, desired: i32) {
    block_on(async {
        client
            .create_launch_configuration()
            .launch_configuration_name("hostmanager-web-lc")
            .image_id("ami-12c6146b")
            .instance_type("t3.micro")
            .send()
            .await
            .expect("CreateLaunchConfiguration");
        client
            .create_auto_scaling_group()
            .auto_scaling_group_name(GROUP)
            .launch_configuration_name("hostmanager-web-lc")
            .availability_zones("us-east-1a")
            .min_size(0)
            .max_size(4)
            .desired_capacity(desired)
            .send()
            .await
            .expect("CreateAutoScalingGroup");
    });
}

/// An agent for EC2 instance `id`, as its user data would start it.
fn boot(controller: &TestController, id: &str, token: &str) -> TestHost {
    let mut host = enrolled_host(controller, id, token)
        .set("metrics", "window", "1s")
        .set("health", "min_requests", 5);
    host.start();
    host
}

#[test]
fn immutable_through_the_ec2_provisioner_grows_the_group_then_terminates_the_originals() {
    let moto = Moto::start();
    let client = autoscaling(&moto);
    create_group(&client, 2);
    let (originals, _) = group(&client);
    let provisioner = format!(
        "[provisioner]\nkind = \"ec2\"\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\nlaunch_timeout = \"30s\"\n",
        moto.endpoint()
    );
    let credentials = vec![
        ("AWS_ACCESS_KEY_ID".to_string(), "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY".to_string(), "test".to_string()),
        ("AWS_EC2_METADATA_DISABLED".to_string(), "true".to_string()),
    ];
    let (controller, lb_port) =
        controller_with_lb_env(|config| format!("{config}{provisioner}"), credentials);
    let mut create = vec!["env", "create", "web"];
    for option in ROLLING.iter().chain(&ONE_AT_A_TIME) {
        create.extend(["--option", option]);
    }
    controller.cli_json(&create);
    let token = controller.enrollment_token("web", 4);
    let mut hosts: Vec<TestHost> = originals
        .iter()
        .map(|id| boot(&controller, id, &token))
        .collect();
    let bundles = tempfile::tempdir().expect("tempdir");
    let (ok, first) = deploy(&controller, "web", &bundle(bundles.path(), "v1"), "v1");
    assert!(ok, "v1 deploys: {first:#}");
    wait_in_rotation(&controller, "web", 2);

    let v2 = bundle(bundles.path(), "v2");
    let load = Load::start_for_host(lb_port, "/", Some(&cname("web")), 3);
    let (ok, deployment): (bool, Value) = std::thread::scope(|scope| {
        let deploying = scope.spawn(|| {
            let immutable = "aws:elasticbeanstalk:command:DeploymentPolicy=Immutable";
            deploy_with(&controller, "web", &v2, "v2", &[immutable])
        });
        // The instances the controller launched boot and enroll, one batch after the other.
        let mut booted: BTreeSet<String> = originals.clone();
        wait_for(
            "two instances launched and booted",
            Duration::from_secs(120),
            || {
                let (ids, _) = group(&client);
                for id in ids.difference(&booted.clone()) {
                    hosts.push(boot(&controller, id, &token));
                    booted.insert(id.clone());
                }
                (booted.len() == 4 || deploying.is_finished()).then_some(())
            },
        );
        deploying.join().expect("deploy thread")
    });
    let outcomes = load.finish();
    assert!(ok, "{deployment:#}\n{}", tail(&controller.log(), 40));
    assert_every_request_served(&outcomes, &bodies(&["v1", "v2"]));
    let (left, desired) = group(&client);
    assert!(
        left.is_disjoint(&originals),
        "the originals were terminated: {left:?}"
    );
    assert_eq!(
        (left.len(), desired),
        (2, 2),
        "the group is back to its size, with the new instances"
    );
    for host in hosts.iter().filter(|h| left.contains(&h.instance_id())) {
        assert_eq!(serving(host), "v2");
    }
}
