//! The EC2 provisioner against a real moto_server (Auto Scaling and EC2 APIs), one server per
//! test on a free loopback port.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_autoscaling::Client;

use super::Ec2Provisioner;
use crate::config::Ec2Config;

const ENVIRONMENT: &str = "web";
const GROUP: &str = "hostmanager-web";

/// A moto_server child, killed when dropped.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    fn start() -> Self {
        let binary = std::env::var("MOTO_SERVER").unwrap_or_else(|_| {
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv/bin/moto_server").to_string()
        });
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port();
        let mut child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!("cannot start {binary} (run scripts/deps.sh test or set MOTO_SERVER): {err}")
            });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
                break;
            }
            if let Some(status) = child.try_wait().expect("moto_server's status") {
                panic!("moto_server exited before answering: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen on port {port} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn sdk_config(&self) -> aws_config::SdkConfig {
        let settings = hostmanager::config::AwsConfig {
            region: Some("us-east-1".to_string()),
            endpoint_url: Some(self.endpoint.clone()),
            force_path_style: false,
            checksums: hostmanager::config::ChecksumPolicy::WhenSupported,
            imds_endpoint: String::new(),
            imds_timeout: Duration::from_secs(1),
        };
        hostmanager::aws::sdk_config_with_credentials(&settings, "test", "test")
            .await
            .expect("an SDK config")
    }

    fn ec2_config(&self) -> Ec2Config {
        Ec2Config {
            auto_scaling_group: "hostmanager-{environment}".to_string(),
            region: Some("us-east-1".to_string()),
            endpoint_url: Some(self.endpoint.clone()),
            launch_timeout: Duration::from_secs(10),
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// moto, an admin client on it, a provisioner on it, and group `hostmanager-web` with
/// desired 1 / max 4 (one instance running).
async fn setup() -> (Moto, Client, Ec2Provisioner) {
    let moto = Moto::start();
    let sdk = moto.sdk_config().await;
    let admin = Client::new(&sdk);
    admin
        .create_launch_configuration()
        .launch_configuration_name("hostmanager-web-lc")
        .image_id("ami-12c6146b")
        .instance_type("t3.micro")
        .send()
        .await
        .expect("CreateLaunchConfiguration");
    admin
        .create_auto_scaling_group()
        .auto_scaling_group_name(GROUP)
        .launch_configuration_name("hostmanager-web-lc")
        .availability_zones("us-east-1a")
        .min_size(0)
        .max_size(4)
        .desired_capacity(1)
        .send()
        .await
        .expect("CreateAutoScalingGroup");
    let provisioner = Ec2Provisioner::with_sdk_config(&moto.ec2_config(), &sdk);
    (moto, admin, provisioner)
}

/// The group's desired capacity, MaxSize and sorted instance ids.
async fn group(admin: &Client) -> (i32, i32, Vec<String>) {
    let output = admin
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(GROUP)
        .send()
        .await
        .expect("DescribeAutoScalingGroups");
    let group = &output.auto_scaling_groups()[0];
    let mut ids: Vec<String> = group
        .instances()
        .iter()
        .filter_map(|instance| instance.instance_id().map(str::to_owned))
        .collect();
    ids.sort();
    (
        group.desired_capacity().expect("desired capacity"),
        group.max_size().expect("max size"),
        ids,
    )
}

#[test]
fn group_name_replaces_the_environment() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let config = Ec2Config {
        auto_scaling_group: "asg-{environment}-hosts".to_string(),
        region: Some("eu-west-1".to_string()),
        endpoint_url: None,
        launch_timeout: Duration::from_secs(1),
    };
    let provisioner = runtime.block_on(Ec2Provisioner::new(&config));
    assert_eq!(provisioner.group_name("prod"), "asg-prod-hosts");
}

#[test]
fn ec2_new_instances_are_those_not_there_before_and_not_leaving() {
    use aws_sdk_autoscaling::types::{AutoScalingGroup, Instance, LifecycleState};
    let instance = |id: &str, state: LifecycleState| {
        Instance::builder()
            .instance_id(id)
            .lifecycle_state(state)
            .build()
    };
    let group = AutoScalingGroup::builder()
        .instances(instance("i-0zzz", LifecycleState::InService))
        .instances(instance("i-0ccc", LifecycleState::Pending))
        .instances(instance("i-0aaa", LifecycleState::InService))
        .instances(instance("i-0bbb", LifecycleState::Terminating))
        .instances(instance("i-0ddd", LifecycleState::Detaching))
        .instances(instance("i-0eee", LifecycleState::PendingWait))
        .build();
    let before = ["i-0aaa".to_string()].into_iter().collect();

    assert_eq!(
        super::new_instances(&before, &group),
        ["i-0ccc", "i-0eee", "i-0zzz"]
    );
}

#[tokio::test]
async fn ec2_launch_grows_the_group_and_returns_the_new_instances() {
    let (_moto, admin, provisioner) = setup().await;
    let (_, _, before) = group(&admin).await;
    assert_eq!(before.len(), 1, "the group starts with one instance");

    let launched = provisioner.launch(ENVIRONMENT, 2).await.expect("launch");

    assert_eq!(launched.len(), 2, "{launched:?}");
    assert!(
        launched.windows(2).all(|pair| pair[0] < pair[1]),
        "sorted, distinct: {launched:?}"
    );
    assert!(
        !launched.contains(&before[0]),
        "{launched:?} includes the existing {}",
        before[0]
    );
    let (desired, _, ids) = group(&admin).await;
    assert_eq!(desired, 3);
    assert_eq!(ids.len(), 3, "{ids:?}");
    for id in &launched {
        assert!(ids.contains(id), "{id} is not in the group: {ids:?}");
    }
}

#[tokio::test]
async fn ec2_terminate_removes_instances_and_skips_those_not_in_the_group() {
    let (_moto, admin, provisioner) = setup().await;
    let launched = provisioner.launch(ENVIRONMENT, 2).await.expect("launch");
    let gone = launched[0].clone();

    provisioner
        .terminate(ENVIRONMENT, &[gone.clone(), "i-notingroup".to_string()])
        .await
        .expect("terminate");

    let (desired, _, ids) = group(&admin).await;
    assert_eq!(desired, 2);
    assert!(
        !ids.contains(&gone),
        "{gone} is still in the group: {ids:?}"
    );
    assert!(
        ids.contains(&launched[1]),
        "{} left the group: {ids:?}",
        launched[1]
    );
    assert_eq!(ids.len(), 2, "{ids:?}");
}

#[tokio::test]
async fn ec2_launch_beyond_max_size_fails_and_changes_nothing() {
    let (_moto, admin, provisioner) = setup().await;
    let before = group(&admin).await;

    let err = provisioner
        .launch(ENVIRONMENT, 4)
        .await
        .expect_err("1 + 4 > MaxSize 4");

    let message = err.to_string();
    assert!(message.contains(GROUP), "{message}");
    assert!(message.contains("MaxSize 4"), "{message}");
    assert!(message.contains("desired capacity is 1"), "{message}");
    assert!(message.contains("raise MaxSize to at least 5"), "{message}");
    assert_eq!(group(&admin).await, before);
}

#[tokio::test]
async fn ec2_launch_on_a_missing_group_fails_naming_it() {
    let (_moto, admin, provisioner) = setup().await;
    let before = group(&admin).await;

    let err = provisioner
        .launch("api", 1)
        .await
        .expect_err("no such group");

    let message = err.to_string();
    assert!(
        message.contains("\"hostmanager-api\" does not exist"),
        "{message}"
    );
    assert!(message.contains("launch template"), "{message}");
    assert_eq!(group(&admin).await, before, "another group changed");
}

#[tokio::test]
async fn ec2_sdk_errors_name_the_operation_and_the_group() {
    let moto = Moto::start();
    let sdk = moto.sdk_config().await;
    // Nothing listens there any more: every call fails to connect.
    drop(moto);
    let provisioner = Ec2Provisioner::with_sdk_config(
        &Ec2Config {
            auto_scaling_group: "hostmanager-{environment}".to_string(),
            region: Some("us-east-1".to_string()),
            endpoint_url: None,
            launch_timeout: Duration::from_secs(1),
        },
        &sdk,
    );

    let err = provisioner
        .launch(ENVIRONMENT, 1)
        .await
        .expect_err("no server");

    let message = err.to_string();
    assert!(
        message.contains("DescribeAutoScalingGroups on group \"hostmanager-web\" failed"),
        "{message}"
    );
    assert!(
        message.contains("dispatch failure") || message.contains("connect"),
        "{message}"
    );
}
