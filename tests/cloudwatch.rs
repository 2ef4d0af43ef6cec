//! CloudWatch publication end to end: the real agent and the real aws-sdk-cloudwatch, talking
//! Smithy RPC v2 CBOR to the small endpoint in `common/cloudwatch.rs`.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::bundles::sample;
use common::cloudwatch::{FakeCloudWatch, Received};
use common::{TestHost, free_ports, wait_for};

fn with_cloudwatch(endpoint: &str) -> TestHost {
    TestHost::new()
        .set("metrics", "window", "250ms")
        .set("cloudwatch", "enabled", true)
        .set("cloudwatch", "period", "1s")
        .set("aws", "region", "us-east-1")
        .set("aws", "endpoint_url", endpoint)
}

fn sum_of(datums: &[Received], name: &str) -> f64 {
    datums
        .iter()
        .filter(|d| d.name == name)
        .filter_map(|d| d.stats.map(|(_, sum, _, _)| sum))
        .sum()
}

#[test]
fn the_datums_carry_elastic_beanstalks_names_dimensions_values_and_units() {
    let cloudwatch = FakeCloudWatch::start();
    let mut host = with_cloudwatch(&cloudwatch.endpoint());
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    host.deploy_ok(&sample(dir.path(), "v1", &[]));
    for (path, status, count) in [
        ("/status/200", 200, 6),
        ("/sleep/300", 200, 2),
        ("/status/404", 404, 3),
        ("/status/503", 503, 2),
    ] {
        for _ in 0..count {
            assert_eq!(host.get(path).expect("GET").status, status);
        }
    }
    let datums = wait_for(
        "CloudWatch to receive every request",
        Duration::from_secs(30),
        || {
            let datums = cloudwatch.datums();
            let counted = [
                ("ApplicationRequestsTotal", 13.0),
                ("ApplicationRequests2xx", 8.0),
                ("ApplicationRequests3xx", 0.0),
                ("ApplicationRequests4xx", 3.0),
                ("ApplicationRequests5xx", 2.0),
            ];
            counted
                .iter()
                .all(|(name, n)| sum_of(&datums, name) == *n)
                .then_some(datums)
        },
    );

    let calls = cloudwatch.calls();
    assert!(
        calls.iter().all(|c| {
            c.path == "/service/GraniteServiceVersion20100801/operation/PutMetricData"
                && c.content_type.as_deref() == Some("application/cbor")
                && c.protocol.as_deref() == Some("rpc-v2-cbor")
        }),
        "{calls:#?}"
    );
    for datum in &datums {
        assert_eq!(datum.namespace, "HostManager");
        assert_eq!(
            datum.dimensions,
            [
                ("EnvironmentName".to_string(), "local".to_string()),
                ("InstanceId".to_string(), "i-test".to_string())
            ]
        );
        assert_eq!(
            datum.storage_resolution,
            Some(1),
            "1 s periods are high resolution"
        );
        assert!(datum.timestamp.is_some_and(|t| t > 1.7e9), "{datum:?}");
        let unit = datum.unit.as_deref();
        let expected = match datum.name.as_str() {
            n if n.starts_with("ApplicationRequests") => "Count",
            n if n.starts_with("ApplicationLatency") => "Seconds",
            n if n.starts_with("CPU") || n == "RootFilesystemUtil" => "Percent",
            _ => "None",
        };
        assert_eq!(unit, Some(expected), "{datum:?}");
    }
    let names: BTreeSet<&str> = datums.iter().map(|d| d.name.as_str()).collect();
    let expected: BTreeSet<&str> = [
        "ApplicationRequestsTotal",
        "ApplicationRequests2xx",
        "ApplicationRequests3xx",
        "ApplicationRequests4xx",
        "ApplicationRequests5xx",
        "ApplicationLatencyP10",
        "ApplicationLatencyP50",
        "ApplicationLatencyP75",
        "ApplicationLatencyP85",
        "ApplicationLatencyP90",
        "ApplicationLatencyP95",
        "ApplicationLatencyP99",
        "ApplicationLatencyP99.9",
        "CPUUser",
        "CPUNice",
        "CPUSystem",
        "CPUIdle",
        "CPUIowait",
        "CPUIrq",
        "CPUSoftirq",
        "LoadAverage1min",
        "LoadAverage5min",
        "RootFilesystemUtil",
        "InstanceHealth",
    ]
    .into();
    assert_eq!(names, expected);

    // The two 300 ms requests are the slowest: the worst period's P99.9 shows them.
    let slowest = datums
        .iter()
        .filter(|d| d.name == "ApplicationLatencyP99.9")
        .filter_map(|d| d.stats.map(|(_, _, _, max)| max))
        .fold(0.0, f64::max);
    assert!((0.3..2.0).contains(&slowest), "P99.9 {slowest}");
    for cpu in datums.iter().filter(|d| d.name.starts_with("CPU")) {
        let (count, sum, min, max) = cpu.stats.expect("statistic set");
        assert!(count >= 1.0 && (0.0..=100.0).contains(&min) && min <= max && max <= 100.0);
        assert!(sum <= count * 100.0, "{cpu:?}");
    }
    // InstanceHealth: EB's numeric codes as value/count arrays.
    for health in datums.iter().filter(|d| d.name == "InstanceHealth") {
        assert!(health.stats.is_none());
        assert_eq!(health.values.len(), health.counts.len());
        assert!(
            health
                .values
                .iter()
                .all(|v| [0.0, 1.0, 5.0, 10.0, 15.0, 20.0, 25.0].contains(v)),
            "{health:?}"
        );
        assert!(health.counts.iter().all(|c| *c >= 1.0));
    }
    let status = host.health()["cloudwatch"].clone();
    assert_eq!(status["datums_dropped"], 0, "{status:#}");
    assert!(status["datums_sent"].as_u64() > Some(0), "{status:#}");
}

#[test]
fn an_unreachable_cloudwatch_blocks_nothing_and_drops_the_oldest_beyond_the_buffer() {
    let closed = format!("http://127.0.0.1:{}", free_ports(1)[0]);
    let mut host = with_cloudwatch(&closed)
        .set("metrics", "window", "100ms")
        .set("cloudwatch", "buffer", 30)
        .set("cloudwatch", "timeout", "1s");
    host.start();
    let dropping = wait_for("the drop counter to rise", Duration::from_secs(30), || {
        let health = host.health();
        let cloudwatch = &health["cloudwatch"];
        (cloudwatch["datums_dropped"].as_u64()? > 0 && cloudwatch["last_error"].is_string())
            .then_some(health)
    });
    // Windows and health checks go on while every call fails, and the buffer stays bounded.
    let (windows, checked) = (
        dropping["metrics"]["totals"]["windows"]
            .as_u64()
            .expect("windows"),
        dropping["checked_at"].clone(),
    );
    let later = wait_for("more windows and checks", Duration::from_secs(10), || {
        let health = host.health();
        let cloudwatch = &health["cloudwatch"];
        assert!(
            cloudwatch["datums_buffered"].as_u64() <= Some(30),
            "{cloudwatch:#}"
        );
        (health["metrics"]["totals"]["windows"].as_u64()? >= windows + 5
            && health["checked_at"] != checked
            && cloudwatch["datums_dropped"].as_u64()?
                > dropping["cloudwatch"]["datums_dropped"].as_u64()?)
        .then_some(health)
    });
    assert_eq!(later["cloudwatch"]["datums_sent"], 0);
    let text = host.cli_ok(&["health"]);
    assert!(
        text.contains("CloudWatch: HostManager (us-east-1)"),
        "{text}"
    );
}

#[test]
fn off_config_the_instance_id_and_region_come_from_imdsv2() {
    let cloudwatch = FakeCloudWatch::start();
    let (imds, asked) = common::imds::fake_imds();
    let mut host = with_cloudwatch(&cloudwatch.endpoint())
        .unset("environment", "instance_id")
        .unset("aws", "region")
        .set("aws", "imds_endpoint", imds);
    host.start();
    let datum = wait_for("a datum", Duration::from_secs(20), || {
        cloudwatch.datums().into_iter().next()
    });
    assert!(
        datum
            .dimensions
            .contains(&("InstanceId".to_string(), "i-0abc123def4567890".to_string())),
        "{datum:?}"
    );
    let status = host.health()["cloudwatch"].clone();
    assert_eq!(status["region"], "eu-west-3", "{status:#}");
    let asked = asked.lock().expect("log").clone();
    assert_eq!(
        asked.first().map(String::as_str),
        Some("PUT /latest/api/token token=false"),
        "token first: {asked:?}"
    );
}

/// SIGHUP: the sink goes on under the new namespace, keeping what it counted.
#[test]
fn a_new_namespace_applies_without_a_restart() {
    let cloudwatch = FakeCloudWatch::start();
    let mut host = with_cloudwatch(&cloudwatch.endpoint());
    host.start();
    wait_for("datums under HostManager", Duration::from_secs(30), || {
        cloudwatch
            .datums()
            .iter()
            .any(|d| d.namespace == "HostManager")
            .then_some(())
    });
    let agent = host.agent_pid();
    host.change("cloudwatch", "namespace", "Reloaded");
    host.reload();
    wait_for(
        "datums under the new namespace",
        Duration::from_secs(30),
        || {
            cloudwatch
                .datums()
                .iter()
                .any(|d| d.namespace == "Reloaded")
                .then_some(())
        },
    );
    assert_eq!(host.agent_pid(), agent, "the same agent");
    let health = host.health();
    assert_eq!(health["cloudwatch"]["namespace"], "Reloaded", "{health:#}");
}
