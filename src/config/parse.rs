//! TOML text → `Config`, with every problem reported at once. Pure.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::model::*;
use super::parse_deploy::{bundle, deploy};
use super::parse_metrics::{cloudwatch, levels, metrics};
use super::parse_remote::{aws, controller, events};
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
        platform: super::parse_platform::platform(root.section("platform")),
        worker: super::worker::worker(root.section("worker")),
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
    let platform_ports: Vec<u16> = s.get("platform_ports", vec![5000, 8000, 8080]);
    if platform_ports.contains(&0) {
        s.problem("platform_ports", "0 is not a port");
    }
    let modules_dir = PathBuf::from(s.get("modules_dir", "/usr/lib/nginx/modules".to_string()));
    if !modules_dir.is_absolute() {
        s.problem(
            "modules_dir",
            format!("{} must be an absolute path", modules_dir.display()),
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
        platform_ports,
        modules_dir,
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

fn agent(mut s: Section) -> AgentConfig {
    let shutdown_timeout = positive(&mut s, "shutdown_timeout", Duration::from_secs(10));
    s.finish();
    AgentConfig { shutdown_timeout }
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
    fn a_duration_too_long_for_a_deadline_is_refused() {
        // `Instant::now() + health_gate_timeout` would panic the deploy task.
        let text = "[deploy]\nhealth_gate_timeout = \"1000000000years\"\n";
        let problems = parse_config(text).expect_err("absurd duration");
        let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["deploy.health_gate_timeout"]);
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
