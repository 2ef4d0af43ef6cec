//! `[deploy]` and `[bundle]`: how deployments run and which bundles are accepted. Pure.

use std::path::PathBuf;
use std::time::Duration;

use super::model::*;
use super::parse::{at_least_one, positive};
use super::reader::Section;

pub(super) fn deploy(mut s: Section) -> DeployConfig {
    let strategy_name = s.get("strategy", "zero-downtime".to_string());
    let strategy = match strategy_name.as_str() {
        "zero-downtime" => DeployStrategy::ZeroDowntime,
        "all-at-once" => DeployStrategy::AllAtOnce,
        other => {
            s.problem(
                "strategy",
                format!("{other:?} is not \"zero-downtime\" or \"all-at-once\""),
            );
            DeployStrategy::ZeroDowntime
        }
    };
    let fixed_port_name = s.get("fixed_port", "stop-then-start".to_string());
    let fixed_port = match fixed_port_name.as_str() {
        "stop-then-start" => FixedPortPolicy::StopThenStart,
        "refuse" => FixedPortPolicy::Refuse,
        other => {
            s.problem(
                "fixed_port",
                format!("{other:?} is not \"stop-then-start\" or \"refuse\""),
            );
            FixedPortPolicy::StopThenStart
        }
    };
    let timeout = positive(&mut s, "timeout", Duration::from_secs(600));
    let hook_timeout = positive(&mut s, "hook_timeout", Duration::from_secs(300));
    let hook_user: Option<String> = s.optional("hook_user");
    let health_gate_successes = s.get("health_gate_successes", 3u32);
    if health_gate_successes == 0 {
        s.problem("health_gate_successes", "must be at least 1");
    }
    let health_gate_interval = positive(&mut s, "health_gate_interval", Duration::from_millis(500));
    let health_gate_timeout = positive(&mut s, "health_gate_timeout", Duration::from_secs(60));
    let drain_timeout = s.duration("drain_timeout", Duration::from_secs(10));
    let releases_to_keep = s.get("releases_to_keep", 3usize);
    if releases_to_keep == 0 {
        s.problem(
            "releases_to_keep",
            "must be at least 1 (the serving release)",
        );
    }
    let records_keep = s.get("records_keep", 100usize);
    if records_keep == 0 {
        s.problem("records_keep", "must be at least 1");
    }
    let records_max_age = positive(&mut s, "records_max_age", Duration::from_secs(30 * 86_400));
    s.finish();
    DeployConfig {
        strategy,
        fixed_port,
        timeout,
        hook_timeout,
        hook_user,
        health_gate_successes,
        health_gate_interval,
        health_gate_timeout,
        drain_timeout,
        releases_to_keep,
        records_keep: records_keep.max(1),
        records_max_age,
    }
}

pub(super) fn bundle(mut s: Section) -> BundleConfig {
    let max_entries = at_least_one(&mut s, "max_entries", 20_000);
    let max_unpacked_bytes = at_least_one(&mut s, "max_unpacked_mib", 2048).saturating_mul(1 << 20);
    let max_compression_ratio = at_least_one(&mut s, "max_compression_ratio", 200);
    let max_download_bytes = at_least_one(&mut s, "max_download_mib", 1024).saturating_mul(1 << 20);
    let ca_file = s.optional::<String>("ca_file").map(PathBuf::from);
    if let Some(path) = &ca_file
        && !path.is_absolute()
    {
        s.problem(
            "ca_file",
            format!("{} must be an absolute path", path.display()),
        );
    }
    let download_attempts =
        u32::try_from(at_least_one(&mut s, "download_attempts", 3)).unwrap_or(3);
    s.finish();
    BundleConfig {
        max_entries,
        max_unpacked_bytes,
        max_compression_ratio,
        max_download_bytes,
        ca_file,
        download_attempts,
    }
}
