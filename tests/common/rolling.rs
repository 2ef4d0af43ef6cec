//! Rolling deployments behind the controller's HAProxy, for the fleet_rolling tests: the
//! environment's options, a sample-app bundle that fails on chosen hosts, and a fleet serving
//! v1 in the deployments' order.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::bundles::{Entry, sample};
use super::fleet::{TestController, fleet_in};
use super::lb::wait_in_rotation;
use super::{TestHost, tail};

/// Rolling, HAProxy checking `/lb` every 300 ms (2 to rise, 2 to fall). Each test adds its
/// batch size and command timeout (the controller's test config adds no margin to it).
pub const ROLLING: &[&str] = &[
    "aws:elasticbeanstalk:command:DeploymentPolicy=Rolling",
    "aws:elasticbeanstalk:environment:process:default:HealthCheckPath=/lb",
    "aws:elasticbeanstalk:environment:process:default:HealthyThresholdCount=2",
    "aws:elasticbeanstalk:environment:process:default:UnhealthyThresholdCount=2",
];

/// The sample app at `version`, whose `/lb` (the load balancer's check) fails on a host that
/// has `fail-lb-<version>` in its root, and whose prebuild hook fails on a host that has
/// `fail-hook-<version>`.
pub fn bundle(dir: &Path, version: &str) -> PathBuf {
    bundle_with(dir, version, &[])
}

/// `bundle`, with `extra` entries (an `LB_FAIL` file fails `/lb` on every host).
pub fn bundle_with(dir: &Path, version: &str, extra: &[Entry<'_>]) -> PathBuf {
    let app = std::fs::read_to_string(super::bundles::sample_app_dir().join("application.py"))
        .expect("sample app");
    let app = app.replacen(
        "        if path == \"/health\":",
        "        if path == \"/lb\" and os.path.exists(\"LB_FAIL\"):\n            self.answer(503, \"lb check failing\\n\")\n        elif path == \"/health\":",
        1,
    );
    let hook = "#!/bin/sh\n\
                version=$(cat VERSION)\n\
                if [ -e \"$HOSTMANAGER_ROOT/fail-lb-$version\" ]; then touch LB_FAIL; fi\n\
                if [ -e \"$HOSTMANAGER_ROOT/fail-hook-$version\" ]; then echo \"this host refuses $version\" >&2; exit 3; fi\n";
    let mut entries = vec![
        Entry::File("application.py", app.as_bytes(), 0o755),
        Entry::File(
            ".platform/hooks/prebuild/01-host.sh",
            hook.as_bytes(),
            0o755,
        ),
    ];
    entries.extend_from_slice(extra);
    sample(dir, version, &entries)
}

/// One host per batch, 20 s to deploy and pass the gate (the deadline of a failing gate).
pub const ONE_AT_A_TIME: [&str; 3] = [
    "aws:elasticbeanstalk:command:BatchSizeType=Fixed",
    "aws:elasticbeanstalk:command:BatchSize=1",
    "aws:elasticbeanstalk:command:Timeout=20",
];

pub fn bodies(versions: &[&str]) -> BTreeSet<String> {
    versions
        .iter()
        .map(|v| format!("Hello from {v}\n"))
        .collect()
}

pub fn serving(host: &TestHost) -> String {
    host.status()["release"]["version_label"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// `deploy NAME BUNDLE --label LABEL --wait`: its exit status and deployment document.
pub fn deploy(controller: &TestController, env: &str, bundle: &Path, label: &str) -> (bool, Value) {
    deploy_with(controller, env, bundle, label, &[])
}

/// `deploy`, with option settings (`NAMESPACE:OPTION=VALUE`) for the deployment.
pub fn deploy_with(
    controller: &TestController,
    env: &str,
    bundle: &Path,
    label: &str,
    options: &[&str],
) -> (bool, Value) {
    let mut args = vec![
        "deploy",
        env,
        bundle.to_str().expect("path"),
        "--label",
        label,
        "--wait",
        "--json",
    ];
    for option in options {
        args.extend(["--option", option]);
    }
    let output = controller.cli(&args);
    let document = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    assert!(
        document.is_object(),
        "deploy --wait --json printed no deployment: {}\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        tail(&controller.log(), 30)
    );
    (output.status.success(), document)
}

/// An environment of `count` hosts serving v1 through the load balancer.
pub fn rolling_fleet(
    controller: &TestController,
    bundles: &Path,
    count: usize,
    extra: &[&str],
) -> Vec<TestHost> {
    let options: Vec<&str> = ROLLING.iter().chain(extra).copied().collect();
    let mut hosts = fleet_in(controller, "web", count, &options);
    let (ok, deployment) = deploy(controller, "web", &bundle(bundles, "v1"), "v1");
    assert!(ok, "v1 deploys: {deployment:#}");
    wait_in_rotation(controller, "web", count);
    // The hosts in the deployments' order (enrollment time, then id): hosts[0] is the first
    // host of batch 1.
    let order: Vec<String> = deployment["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["instance_id"].as_str().unwrap_or("").to_string())
        .collect();
    hosts.sort_by_key(|h| order.iter().position(|id| *id == h.instance_id()));
    hosts
}

pub fn messages(controller: &TestController, deployment: &Value) -> Vec<String> {
    controller.deployment_messages("web", deployment["id"].as_i64().expect("id"))
}
