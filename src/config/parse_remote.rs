//! `[aws]`, `[controller]` and `[events]`: what the agent talks to and what it keeps. Pure.

use std::path::PathBuf;
use std::time::Duration;

use super::model::*;
use super::parse::{at_least_one, positive};
use super::reader::Section;

pub(super) fn aws(mut s: Section) -> AwsConfig {
    let region: Option<String> = s.optional("region");
    if let Some(region) = &region
        && (region.is_empty()
            || !region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
    {
        s.problem(
            "region",
            format!("{region:?} is not a region name like \"us-east-1\""),
        );
    }
    let endpoint_url: Option<String> = s.optional("endpoint_url");
    if let Some(url) = &endpoint_url
        && !is_http_url(url)
    {
        s.problem(
            "endpoint_url",
            format!("{url:?} must start with http:// or https://"),
        );
    }
    // S3-compatible servers mostly need path-style addressing and only required checksums.
    let custom = endpoint_url.is_some();
    let force_path_style = s.get("force_path_style", custom);
    let checksums_name = s.get(
        "checksums",
        if custom {
            "when-required"
        } else {
            "when-supported"
        }
        .to_string(),
    );
    let checksums = match checksums_name.as_str() {
        "when-supported" => ChecksumPolicy::WhenSupported,
        "when-required" => ChecksumPolicy::WhenRequired,
        other => {
            s.problem(
                "checksums",
                format!("{other:?} is not \"when-supported\" or \"when-required\""),
            );
            ChecksumPolicy::WhenSupported
        }
    };
    let imds_endpoint = s.get("imds_endpoint", "http://169.254.169.254".to_string());
    if !is_http_url(&imds_endpoint) {
        s.problem(
            "imds_endpoint",
            format!("{imds_endpoint:?} must start with http:// or https://"),
        );
    }
    let imds_timeout = positive(&mut s, "imds_timeout", Duration::from_secs(1));
    s.finish();
    AwsConfig {
        region,
        endpoint_url,
        force_path_style,
        checksums,
        imds_endpoint,
        imds_timeout,
    }
}

pub(super) fn controller(mut s: Section) -> ControllerConfig {
    let url: Option<String> = s.optional("url");
    if let Some(text) = &url
        && !is_http_url(text)
    {
        s.problem(
            "url",
            format!("{text:?} must start with https:// (or http:// on a trusted network)"),
        );
    }
    let absolute = |s: &mut Section, key: &str| {
        let path = s.optional::<String>(key).map(PathBuf::from);
        if let Some(path) = &path
            && !path.is_absolute()
        {
            s.problem(key, format!("{} must be an absolute path", path.display()));
        }
        path
    };
    let token_file = absolute(&mut s, "token_file");
    let ca_file = absolute(&mut s, "ca_file");
    // Both may be set: the static token serves until the enrollment's credential exists.
    let enrollment_token_file = absolute(&mut s, "enrollment_token_file");
    let machine_id_file =
        absolute(&mut s, "machine_id_file").unwrap_or_else(|| PathBuf::from("/etc/machine-id"));
    let advertise_addr: Option<String> = s.optional("advertise_addr");
    if let Some(addr) = &advertise_addr
        && !is_host_port(addr)
    {
        s.problem(
            "advertise_addr",
            format!("{addr:?} is not a host:port like \"10.0.1.17:80\""),
        );
    }
    let interval = positive(&mut s, "interval", Duration::from_secs(10));
    let timeout = positive(&mut s, "timeout", Duration::from_secs(10));
    s.finish();
    ControllerConfig {
        url,
        token_file,
        ca_file,
        enrollment_token_file,
        machine_id_file,
        advertise_addr,
        interval,
        timeout,
    }
}

pub(super) fn events(mut s: Section) -> EventsConfig {
    let segment_bytes = at_least_one(&mut s, "segment_mib", 4).saturating_mul(1 << 20);
    let retention_bytes = at_least_one(&mut s, "retention_mib", 64).saturating_mul(1 << 20);
    if retention_bytes < segment_bytes {
        s.problem("retention_mib", "must be at least events.segment_mib");
    }
    let max_age = positive(&mut s, "max_age", Duration::from_secs(30 * 24 * 3600));
    s.finish();
    EventsConfig {
        segment_bytes,
        retention_bytes,
        max_age,
    }
}

/// `host:port` (a name, an IPv4 address or a bracketed IPv6 one, and a non-zero port).
fn is_host_port(text: &str) -> bool {
    let Some((host, port)) = text.rsplit_once(':') else {
        return false;
    };
    let (host, bracketed) = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(inner) => (inner, true),
        None => (host, false),
    };
    !host.is_empty()
        && (bracketed || !host.contains(':'))
        && !host.contains(['/', ' ', '[', ']'])
        && port.parse::<u16>().is_ok_and(|p| p > 0)
}

fn is_http_url(text: &str) -> bool {
    text.strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"))
        .is_some_and(|rest| !rest.is_empty())
}
