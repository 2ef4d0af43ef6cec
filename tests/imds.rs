//! Instance identity from IMDSv2, against a tiny local stand-in for the EC2 metadata service
//! (the one double the project allows: IMDS cannot run here).

mod common;

use std::time::Duration;

use common::imds::fake_imds;
use common::moto::block_on;
use hostmanager::aws::resolve_identity;
use hostmanager::config::{EnvironmentConfig, default_config};

#[test]
fn instance_id_and_region_come_from_imdsv2_with_a_token() {
    let (url, seen) = fake_imds();
    let mut config = default_config();
    config.aws.imds_endpoint = url;
    let environment = EnvironmentConfig {
        instance_id: None,
        ..config.environment.clone()
    };
    let identity = block_on(resolve_identity(&environment, &config.aws));
    assert_eq!(identity.instance_id, "i-0abc123def4567890");
    assert_eq!(identity.region.as_deref(), Some("eu-west-3"));
    assert_eq!(identity.source, "imds");
    let requests = seen.lock().expect("log").clone();
    assert_eq!(
        requests.first().map(String::as_str),
        Some("PUT /latest/api/token token=false"),
        "{requests:?}"
    );
    assert!(
        requests
            .iter()
            .filter(|r| r.starts_with("GET"))
            .all(|r| r.ends_with("token=true")),
        "{requests:?}"
    );
}

#[test]
fn configured_values_win_and_imds_is_not_asked() {
    let (url, seen) = fake_imds();
    let mut config = default_config();
    config.aws.imds_endpoint = url;
    config.aws.region = Some("us-west-2".into());
    let environment = EnvironmentConfig {
        instance_id: Some("i-configured".into()),
        ..config.environment.clone()
    };
    let identity = block_on(resolve_identity(&environment, &config.aws));
    assert_eq!(
        (identity.instance_id.as_str(), identity.region.as_deref()),
        ("i-configured", Some("us-west-2"))
    );
    assert!(seen.lock().expect("log").is_empty());
}

#[test]
fn off_ec2_the_agent_falls_back_to_the_host_name() {
    let port = common::free_ports(1)[0];
    let mut config = default_config();
    config.aws.imds_endpoint = format!("http://127.0.0.1:{port}");
    config.aws.imds_timeout = Duration::from_millis(300);
    let environment = EnvironmentConfig {
        instance_id: None,
        ..config.environment.clone()
    };
    let identity = block_on(resolve_identity(&environment, &config.aws));
    assert_eq!(identity.source, "hostname");
    assert_eq!(
        identity.instance_id,
        nix::unistd::gethostname()
            .expect("hostname")
            .into_string()
            .expect("utf-8")
    );
}
