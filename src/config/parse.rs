//! TOML text → `Config`, with every problem reported at once. Pure.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::model::*;
use super::parse_metrics::{cloudwatch, levels, metrics};
use super::reader::{Problem, Problems, Section};

/// Parses and validates the whole document; `Err` carries every problem found.
pub fn parse_config(text: &str) -> Result<Config, Vec<Problem>> {
    let table: toml::Table = text.parse().map_err(|error: toml::de::Error| {
        vec![Problem {
            key: "(syntax)".into(),
            message: error.to_string().trim().replace('\n', " "),
        }]
    })?;
    let mut problems = Problems::default();
    let mut root = Section::root(table, &mut problems);
    let config = Config {
        environment: environment(root.section("environment")),
        app: app(root.section("app")),
        supervise: super::supervise::supervise(root.section("supervise")),
        proxy: proxy(root.section("proxy")),
        health: health(root.section("health")),
        deploy: deploy(root.section("deploy")),
        bundle: bundle(root.section("bundle")),
        agent: agent(root.section("agent")),
        aws: aws(root.section("aws")),
        controller: controller(root.section("controller")),
        metrics: metrics(root.section("metrics")),
        cloudwatch: cloudwatch(root.section("cloudwatch")),
        events: events(root.section("events")),
        logs: super::logs::logs(root.section("logs")),
    };
    root.finish();
    cross_checks(&config, &mut problems);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems.into_vec())
    }
}

/// The configuration used when no file exists.
pub fn default_config() -> Config {
    parse_config("").expect("the empty document is a valid config")
}

fn environment(mut s: Section) -> EnvironmentConfig {
    let name = s.get("name", "local".to_string());
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        s.problem(
            "name",
            format!("{name:?} must be letters, digits and '-' (Elastic Beanstalk's rule)"),
        );
    }
    let id = s.get("id", "e-local".to_string());
    if !is_key_safe(&id) {
        s.problem(
            "id",
            format!(
                "{id:?} must be non-empty letters, digits, '-' or '_' (it becomes part of S3 keys)"
            ),
        );
    }
    let instance_id: Option<String> = s.optional("instance_id");
    if let Some(instance) = &instance_id
        && !is_key_safe(instance)
    {
        s.problem(
            "instance_id",
            format!("{instance:?} must be letters, digits, '-' or '_'"),
        );
    }
    s.finish();
    EnvironmentConfig {
        name,
        id,
        instance_id,
    }
}

fn app(mut s: Section) -> AppConfig {
    let user = s.get("user", "webapp".to_string());
    let allow_root = s.get("allow_root", false);
    if (user == "root" || user == "0") && !allow_root {
        s.problem(
            "user",
            "apps never run as root unless app.allow_root = true",
        );
    }
    let groups: Vec<String> = s.get("groups", Vec::new());
    if groups.iter().any(|g| g == "root" || g == "0") && !allow_root {
        s.problem(
            "groups",
            "the root group is refused unless app.allow_root = true",
        );
    }
    let port = port(&mut s, "port", 5000);
    let alternate_port = port_or(&mut s, "alternate_port", port.wrapping_add(1).max(1));
    if port == alternate_port {
        s.problem(
            "alternate_port",
            format!("must differ from app.port ({port})"),
        );
    }
    s.finish();
    AppConfig {
        user,
        allow_root,
        groups,
        port,
        alternate_port,
    }
}

fn proxy(mut s: Section) -> ProxyConfig {
    let enabled = s.get("enabled", true);
    let nginx_binary = PathBuf::from(s.get("nginx_binary", "/usr/sbin/nginx".to_string()));
    if !nginx_binary.is_absolute() {
        s.problem(
            "nginx_binary",
            format!("{} must be an absolute path", nginx_binary.display()),
        );
    }
    let listen_text = s.get("listen", "0.0.0.0:80".to_string());
    let listen = listen_text.parse::<SocketAddr>().unwrap_or_else(|_| {
        s.problem(
            "listen",
            format!("{listen_text:?} is not an address like \"0.0.0.0:80\""),
        );
        SocketAddr::from(([0, 0, 0, 0], 80))
    });
    let client_max_body_size = s.get("client_max_body_size", "10m".to_string());
    if !is_nginx_size(&client_max_body_size) {
        s.problem(
            "client_max_body_size",
            format!("{client_max_body_size:?} is not an nginx size like \"10m\""),
        );
    }
    let worker_processes = match s.optional::<toml::Value>("worker_processes") {
        None => "auto".to_string(),
        Some(toml::Value::Integer(n)) if (1..=1024).contains(&n) => n.to_string(),
        Some(toml::Value::String(text)) if text == "auto" => text,
        Some(other) => {
            s.problem(
                "worker_processes",
                format!("{other} must be \"auto\" or a number from 1 to 1024"),
            );
            "auto".to_string()
        }
    };
    let worker_connections = s.get("worker_connections", 1024u32);
    if !(16..=1_000_000).contains(&worker_connections) {
        s.problem(
            "worker_connections",
            format!("{worker_connections} must be between 16 and 1000000"),
        );
    }
    s.finish();
    ProxyConfig {
        enabled,
        nginx_binary,
        listen,
        client_max_body_size,
        worker_processes,
        worker_connections,
    }
}

fn health(mut s: Section) -> HealthConfig {
    let path = s.get("path", "/".to_string());
    if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        s.problem(
            "path",
            format!("{path:?} must start with '/' and contain no spaces"),
        );
    }
    let interval = positive(&mut s, "interval", Duration::from_secs(5));
    let timeout = positive(&mut s, "timeout", Duration::from_secs(2));
    let failures_before_unhealthy = s.get("failures_before_unhealthy", 2u32);
    if failures_before_unhealthy == 0 {
        s.problem("failures_before_unhealthy", "must be at least 1");
    }
    let status_change_after = s.get("status_change_after", 3u32);
    if status_change_after == 0 {
        s.problem("status_change_after", "must be at least 1");
    }
    let defaults = HealthThresholds::DEFAULT;
    let thresholds = HealthThresholds {
        min_requests: s.get("min_requests", defaults.min_requests),
        requests_5xx: levels(&mut s, "requests_5xx", defaults.requests_5xx),
        requests_4xx: levels(&mut s, "requests_4xx", defaults.requests_4xx),
        cpu: levels(&mut s, "cpu", defaults.cpu),
        root_filesystem: levels(&mut s, "root_filesystem", defaults.root_filesystem),
    };
    s.finish();
    HealthConfig {
        path,
        interval,
        timeout,
        failures_before_unhealthy,
        status_change_after,
        thresholds,
    }
}

fn deploy(mut s: Section) -> DeployConfig {
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
    s.finish();
    DeployConfig {
        strategy,
        timeout,
        hook_timeout,
        hook_user,
        health_gate_successes,
        health_gate_interval,
        health_gate_timeout,
        drain_timeout,
        releases_to_keep,
    }
}

fn bundle(mut s: Section) -> BundleConfig {
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

fn agent(mut s: Section) -> AgentConfig {
    let shutdown_timeout = positive(&mut s, "shutdown_timeout", Duration::from_secs(10));
    s.finish();
    AgentConfig { shutdown_timeout }
}

fn aws(mut s: Section) -> AwsConfig {
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

fn controller(mut s: Section) -> ControllerConfig {
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
    let interval = positive(&mut s, "interval", Duration::from_secs(10));
    let timeout = positive(&mut s, "timeout", Duration::from_secs(10));
    s.finish();
    ControllerConfig {
        url,
        token_file,
        ca_file,
        interval,
        timeout,
    }
}

fn events(mut s: Section) -> EventsConfig {
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

fn is_http_url(text: &str) -> bool {
    text.strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"))
        .is_some_and(|rest| !rest.is_empty())
}

fn cross_checks(config: &Config, problems: &mut Problems) {
    let listen_port = config.proxy.listen.port();
    if config.proxy.enabled && [config.app.port, config.app.alternate_port].contains(&listen_port) {
        problems.add(
            "proxy.listen",
            format!("port {listen_port} is also an app port (app.port / app.alternate_port)"),
        );
    }
    if config.health.timeout > config.health.interval {
        problems.add("health.timeout", "must not exceed health.interval");
    }
}

fn port(s: &mut Section, key: &str, default: u16) -> u16 {
    port_or(s, key, default)
}

fn port_or(s: &mut Section, key: &str, default: u16) -> u16 {
    let value = s.get(key, i64::from(default));
    match u16::try_from(value) {
        Ok(port) if port > 0 => port,
        _ => {
            s.problem(key, format!("{value} is not a TCP port (1-65535)"));
            default
        }
    }
}

pub(super) fn positive(s: &mut Section, key: &str, default: Duration) -> Duration {
    let value = s.duration(key, default);
    if value.is_zero() {
        s.problem(key, "must be greater than zero");
        return default;
    }
    value
}

pub(super) fn at_least_one(s: &mut Section, key: &str, default: u64) -> u64 {
    let value = s.get(key, i64::try_from(default).unwrap_or(i64::MAX));
    match u64::try_from(value) {
        Ok(n) if n >= 1 => n,
        _ => {
            s.problem(key, format!("{value} must be a whole number of at least 1"));
            default
        }
    }
}

pub(super) fn is_key_safe(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn is_nginx_size(text: &str) -> bool {
    let digits = text.trim_end_matches(['k', 'K', 'm', 'M', 'g', 'G']);
    !digits.is_empty()
        && digits.len() + 1 >= text.len()
        && digits.chars().all(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_empty_document_gives_the_documented_defaults() {
        let config = default_config();
        assert_eq!(config.app.user, "webapp");
        assert_eq!(config.app.port, 5000);
        assert_eq!(config.app.alternate_port, 5001);
        assert_eq!(config.proxy.listen.to_string(), "0.0.0.0:80");
        assert_eq!(config.deploy.timeout, Duration::from_secs(600));
        assert_eq!(config.deploy.strategy, DeployStrategy::ZeroDowntime);
        assert_eq!(config.bundle.max_unpacked_bytes, 2048 << 20);
    }

    #[test]
    fn every_mistake_is_listed_with_its_key() {
        let text = "[app]\nport = 70000\nuser = \"root\"\n[proxy]\nlisten = \"nowhere\"\ncolour = \"blue\"\n[health]\ninterval = \"often\"\n";
        let problems = parse_config(text).expect_err("config is broken");
        let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "app.user",
                "app.port",
                "proxy.listen",
                "proxy.colour",
                "health.interval"
            ]
        );
        assert!(problems[0].message.contains("allow_root"));
    }

    #[test]
    fn syntax_errors_carry_the_line() {
        let problems = parse_config("[app\nport = 1").expect_err("syntax");
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].message.contains("line 1"),
            "{}",
            problems[0].message
        );
    }

    #[test]
    fn nginx_sizes() {
        for good in ["1", "10m", "512k", "2G"] {
            assert!(is_nginx_size(good), "{good}");
        }
        for bad in ["", "m", "10mb", "1.5m", "-1"] {
            assert!(!is_nginx_size(bad), "{bad}");
        }
    }

    #[test]
    fn listen_port_may_not_collide_with_app_ports() {
        let problems = parse_config("[proxy]\nlisten = \"127.0.0.1:5000\"").expect_err("collision");
        assert_eq!(problems[0].key, "proxy.listen");
    }
}
