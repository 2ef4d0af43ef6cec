//! Tests of the EB shapes: the JSON keys boto3 prints, and the constructors.

use hostmanager_protocol::{CpuShares, MetricsWindow, ServingRelease};

use super::*;
use crate::health::Status;
use crate::health::fixtures::instance;
use crate::health::instance::Basis;
use crate::model::{NewEvent, PublishedHealth};

fn env() -> Environment {
    Environment {
        id: 42,
        name: "prod".into(),
        application: "shop".into(),
        tier: Tier::Web,
        options: Default::default(),
        status: EnvStatus::Ready,
        expected_version: Some("v1".into()),
        expected_deployment: Some(1),
        desired_serial: 1,
        desired_version: None,
        cname: None,
        health: PublishedHealth {
            status: "Degraded".into(),
            color: "Red".into(),
            causes: vec![
                "19.9 % of the requests are failing with HTTP 5xx.".into(),
                "x".repeat(300),
            ],
            since_ms: 0,
            pending: None,
        },
        created_ms: 1_700_000_000_123,
        updated_ms: 1_700_000_060_000,
    }
}

#[test]
fn dates_are_rfc3339_utc_with_milliseconds() {
    assert_eq!(date(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    assert_eq!(date(0), "1970-01-01T00:00:00.000Z");
}

#[test]
fn causes_are_cut_at_255_characters_on_char_boundaries() {
    assert_eq!(truncate_cause("short"), "short");
    let long = "é".repeat(300);
    let cut = truncate_cause(&long);
    assert_eq!(cut.chars().count(), 255);
    assert!(cut.ends_with('…'));
    let exact = "a".repeat(255);
    assert_eq!(truncate_cause(&exact), exact);
}

#[test]
fn environment_description_has_ebs_keys() {
    let json = serde_json::to_value(environment_description(
        &env(),
        Some("prod.example.com"),
        None,
    ))
    .expect("the test sets it up");
    assert_eq!(json["EnvironmentName"], "prod");
    assert_eq!(json["EnvironmentId"], "e-42");
    assert_eq!(json["ApplicationName"], "shop");
    assert_eq!(json["VersionLabel"], "v1");
    assert_eq!(json["Status"], "Ready");
    assert_eq!(json["Health"], "Red");
    assert_eq!(json["HealthStatus"], "Degraded");
    assert_eq!(json["Tier"]["Name"], "WebServer");
    assert_eq!(json["Tier"]["Type"], "Standard");
    assert_eq!(json["DateCreated"], "2023-11-14T22:13:20.123Z");
    assert_eq!(json["CNAME"], "prod.example.com");
    assert!(json.get("EndpointURL").is_none());
    let worker: EnvironmentTier = Tier::Worker.into();
    assert_eq!(
        (worker.name.as_str(), worker.kind.as_str()),
        ("Worker", "SQS/HTTP")
    );
}

#[test]
fn environment_health_has_ebs_keys() {
    let counts = InstancesHealth {
        ok: 4,
        severe: 1,
        ..Default::default()
    };
    let result = environment_health(
        &env(),
        ApplicationMetrics::default(),
        counts,
        1_700_000_000_000,
    );
    assert_eq!(result.causes[1].chars().count(), 255);
    let json = serde_json::to_value(&result).expect("the test sets it up");
    for key in [
        "EnvironmentName",
        "HealthStatus",
        "Status",
        "Color",
        "Causes",
        "ApplicationMetrics",
        "InstancesHealth",
        "RefreshedAt",
    ] {
        assert!(json.get(key).is_some(), "{key}");
    }
    assert_eq!(
        json["Causes"][0],
        "19.9 % of the requests are failing with HTTP 5xx."
    );
    assert_eq!(json["InstancesHealth"]["Ok"], 4);
    assert_eq!(json["InstancesHealth"]["Severe"], 1);
    assert_eq!(json["ApplicationMetrics"]["Duration"], 0);
}

#[test]
fn single_instance_health_has_ebs_keys() {
    let mut i = instance("i-1", Some(1_000), "Ok");
    i.facts.availability_zone = Some("eu-west-1a".into());
    i.facts.instance_type = Some("t3.small".into());
    i.facts.launched_at = Some("2023-11-14T22:00:00Z".into());
    i.status.release = Some(ServingRelease {
        deployment_id: 9,
        version_label: "v1".into(),
        serial: Some(3),
        deployed_at: "2023-11-14T22:05:00Z".into(),
        ..Default::default()
    });
    i.metrics = Some(MetricsWindow {
        duration_ms: 10_000,
        requests: 20,
        status_2xx: 20,
        latency_us: vec![[2_000, 20]],
        cpu: Some(CpuShares {
            user: 12.5,
            idle: 80.0,
            iowait: 2.5,
            ..Default::default()
        }),
        load_average: Some([0.5, 0.25, 0.125]),
        ..Default::default()
    });
    let health = InstanceHealth {
        instance_id: "i-1".into(),
        status: Status::Warning,
        causes: vec!["95% of CPU is in use".into()],
        basis: Basis::Reported,
    };
    let serials = BTreeMap::from([(3, 1)]);
    let json =
        serde_json::to_value(instance_health(&i, &health, &serials)).expect("the test sets it up");
    assert_eq!(json["InstanceId"], "i-1");
    assert_eq!(json["HealthStatus"], "Warning");
    assert_eq!(json["Color"], "Yellow");
    assert_eq!(json["Causes"][0], "95% of CPU is in use");
    assert_eq!(json["LaunchedAt"], "2023-11-14T22:00:00Z");
    assert_eq!(json["AvailabilityZone"], "eu-west-1a");
    assert_eq!(json["InstanceType"], "t3.small");
    assert_eq!(json["ApplicationMetrics"]["RequestCount"], 2.0);
    let cpu = &json["System"]["CPUUtilization"];
    assert_eq!(cpu["User"], 12.5);
    assert_eq!(cpu["IOWait"], 2.5);
    for key in ["Nice", "System", "Idle", "IRQ", "SoftIRQ"] {
        assert!(cpu.get(key).is_some(), "{key}");
    }
    assert_eq!(
        json["System"]["LoadAverage"],
        serde_json::json!([0.5, 0.25, 0.125])
    );
    assert_eq!(json["Deployment"]["VersionLabel"], "v1");
    assert_eq!(json["Deployment"]["DeploymentId"], 1);
    assert_eq!(json["Deployment"]["Status"], "Deployed");
    assert_eq!(json["Deployment"]["DeploymentTime"], "2023-11-14T22:05:00Z");

    let list = DescribeInstancesHealthResult {
        instance_health_list: vec![],
        refreshed_at: date(0),
        next_token: None,
    };
    let json = serde_json::to_value(list).expect("the test sets it up");
    assert!(json.get("InstanceHealthList").is_some());
    assert!(json.get("NextToken").is_none());
}

#[test]
fn event_description_has_ebs_keys_and_severity_names() {
    let stored = StoredEvent {
        seq: 5,
        event: NewEvent {
            environment: "prod".into(),
            instance_id: Some("i-1".into()),
            source_id: None,
            time_ms: 1_700_000_000_123,
            severity: EventSeverity::Warn,
            source: "controller".into(),
            message: "Environment health has transitioned from Ok to Warning.".into(),
            deployment_id: Some(3),
        },
    };
    let json = serde_json::to_value(event_description(&stored, "shop", Some("v1")))
        .expect("the test sets it up");
    assert_eq!(json["EventDate"], "2023-11-14T22:13:20.123Z");
    assert_eq!(json["Severity"], "WARN");
    assert_eq!(json["ApplicationName"], "shop");
    assert_eq!(json["EnvironmentName"], "prod");
    assert_eq!(json["VersionLabel"], "v1");
    assert_eq!(json["RequestId"], "d-3");
    assert_eq!(json["InstanceId"], "i-1");
    assert_eq!(
        json["Message"],
        "Environment health has transitioned from Ok to Warning."
    );
}

#[test]
fn application_version_shows_s3_sources_as_a_bundle() {
    let version = AppVersion {
        application: "shop".into(),
        label: "v1".into(),
        source: "s3://bucket/path/app.zip".into(),
        sha256: None,
        description: String::new(),
        size_bytes: None,
        created_ms: 0,
    };
    let json = serde_json::to_value(application_version(&version)).expect("the test sets it up");
    assert_eq!(json["SourceBundle"]["S3Bucket"], "bucket");
    assert_eq!(json["SourceBundle"]["S3Key"], "path/app.zip");
    assert_eq!(json["Status"], "Processed");
    assert!(json.get("Description").is_none());
    let local = AppVersion {
        source: "upload:abc".into(),
        ..version
    };
    let json = serde_json::to_value(application_version(&local)).expect("the test sets it up");
    assert!(json.get("SourceBundle").is_none());
    assert_eq!(json["SourceLocation"], "upload:abc");
}
