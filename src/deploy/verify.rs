//! After nginx switched to a new release: what the bundle's overrides became on this host
//! (reported), and whether the health path answers through nginx, on the address users reach,
//! as Elastic Beanstalk's load balancer would ask it. A deployment never succeeds while nginx
//! serves errors: when the check fails, the job fails before its commit point and nginx and
//! the previous release serve again. The failure names the likely cause.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use super::Engine;
use super::steps::StepFailure;
use crate::events::{NewEvent, Severity};
use crate::health::{ELB_USER_AGENT, ProbeResult, probe_as};
use crate::proxy::StagedConfig;
use crate::proxy::overrides::ProxyTarget;

/// How long a check of an override's loopback target may take to connect.
const TARGET_CONNECT_TIMEOUT: Duration = Duration::from_millis(300);

impl Engine {
    /// Deploy log lines, info events and the record's list for each translation; warnings as
    /// warning events.
    pub(super) fn report_translations(&self, id: u64, staged: &StagedConfig) {
        for translation in &staged.translations {
            let line = format!("nginx override translated: {translation}");
            self.deploy_log(id, &line);
            self.events.emit(
                NewEvent::new(Severity::Info, "proxy", line)
                    .deployment(id)
                    .details(json!({ "translation": translation })),
            );
        }
        for warning in &staged.warnings {
            self.deploy_log(id, &format!("nginx override: {warning}"));
            self.events
                .emit(NewEvent::new(Severity::Warning, "proxy", warning.clone()).deployment(id));
        }
        let translations = staged.translations.clone();
        self.update_record(id, |record| record.proxy_translations = translations);
    }

    /// Passes at the first good answer through nginx. Fails once nginx has answered with an
    /// error `health_gate_successes` times in a row (users see those errors, so the check
    /// does not wait out the whole budget), or when the gate's budget is spent.
    pub(super) async fn verify_through_nginx(
        &self,
        port: u16,
        staged: &StagedConfig,
        path: &str,
    ) -> Result<(), StepFailure> {
        let deploy = &self.config.deploy;
        let health = &self.health_settings();
        let addr = public_addr(self.proxy.listen());
        let deadline = Instant::now() + deploy.health_gate_timeout;
        let mut answered_errors = 0;
        loop {
            let result = probe_as(addr, path, health.timeout, ELB_USER_AGENT).await;
            if result.ok {
                return Ok(());
            }
            answered_errors = match result.status {
                Some(_) => answered_errors + 1,
                None => 0,
            };
            let out_of_budget = Instant::now() + deploy.health_gate_interval > deadline;
            if answered_errors >= deploy.health_gate_successes || out_of_budget {
                return Err(self.public_failure(addr, port, staged, &result, path).await);
            }
            tokio::time::sleep(deploy.health_gate_interval).await;
        }
    }

    async fn public_failure(
        &self,
        addr: SocketAddr,
        port: u16,
        staged: &StagedConfig,
        result: &ProbeResult,
        path: &str,
    ) -> StepFailure {
        let mut targets = Vec::new();
        for target in &staged.targets {
            targets.push((target.clone(), listens(&target.address).await));
        }
        let error_log = crate::fsutil::tail_lines(&self.paths.nginx_log_dir().join("error.log"), 3);
        let facts = Facts {
            path,
            url: format!("http://{addr}/"),
            result,
            app_port: port,
            targets: &targets,
            overrides: &staged.overrides,
        };
        StepFailure::new(likely_cause(&facts)).with_details(json!({
            "status": result.status,
            "error": result.error,
            "generation": staged.generation,
            "overrides": staged.overrides,
            "translations": staged.translations,
            "nginx_error_log": error_log,
        }))
    }
}

/// Where users reach nginx: its listen address, with a wildcard as loopback.
fn public_addr(listen: SocketAddr) -> SocketAddr {
    match listen {
        SocketAddr::V4(v4) if v4.ip().is_unspecified() => {
            SocketAddr::from(([127, 0, 0, 1], v4.port()))
        }
        SocketAddr::V6(v6) if v6.ip().is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, v6.port()))
        }
        other => other,
    }
}

/// Whether something accepts connections on `address` (`127.0.0.1:9999`, `localhost:9999`).
async fn listens(address: &str) -> bool {
    match address
        .replace("localhost", "127.0.0.1")
        .parse::<SocketAddr>()
    {
        Ok(addr) => connects(addr).await,
        Err(_) => false,
    }
}

async fn connects(addr: SocketAddr) -> bool {
    matches!(
        tokio::time::timeout(TARGET_CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

/// What the cause is inferred from.
struct Facts<'a> {
    path: &'a str,
    url: String,
    result: &'a ProbeResult,
    /// The new web process's port: it answered the health check there just before.
    app_port: u16,
    /// The overrides' loopback targets that are not the app, and whether they listen.
    targets: &'a [(ProxyTarget, bool)],
    overrides: &'a [String],
}

/// The failure in words an operator can act on. Pure.
fn likely_cause(facts: &Facts<'_>) -> String {
    let Facts { path, url, .. } = facts;
    let app = facts.app_port;
    let Some(status) = facts.result.status else {
        let error = facts.result.error.as_deref().unwrap_or("no answer");
        return format!(
            "{path} through nginx at {url} did not answer ({error}), while the app answered on its port {app}"
        );
    };
    let head = format!("nginx answers {status} for {path} at {url}");
    let dead = facts.targets.iter().find(|(_, listening)| !listening);
    if matches!(status, 502 | 504)
        && let Some((target, _)) = dead
    {
        return format!(
            "{head}: the override `{}` (line {}) proxies to {}, where nothing listens; the app listens on $PORT ({app})",
            target.file, target.line, target.address
        );
    }
    if let Some((target, _)) = facts.targets.first() {
        return format!(
            "{head}: the override `{}` (line {}) proxies to {}, which is not the app; the app listens on $PORT ({app})",
            target.file, target.line, target.address
        );
    }
    match facts.overrides {
        [] => format!("{head}, while the app answers on its port {app}: see nginx's error.log"),
        overrides => format!(
            "{head}, while the app answers on its port {app}: the bundle's nginx overrides ({}) answer it differently",
            overrides.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(status: Option<u16>, error: &str) -> ProbeResult {
        ProbeResult {
            ok: false,
            status,
            latency_ms: 1,
            error: Some(error.into()),
        }
    }

    fn target(address: &str) -> ProxyTarget {
        ProxyTarget {
            file: "conf.d/elasticbeanstalk/00_application.conf".into(),
            line: 2,
            address: address.into(),
        }
    }

    fn cause(status: Option<u16>, targets: &[(ProxyTarget, bool)], overrides: &[String]) -> String {
        let result = result(status, "connection refused");
        likely_cause(&Facts {
            path: "/health",
            url: "http://127.0.0.1:18080/".into(),
            result: &result,
            app_port: 18501,
            targets,
            overrides,
        })
    }

    #[test]
    fn a_502_names_the_override_that_proxies_where_nothing_listens() {
        let targets = [
            (target("127.0.0.1:7000"), true),
            (target("127.0.0.1:9999"), false),
        ];
        assert_eq!(
            cause(Some(502), &targets, &[]),
            "nginx answers 502 for /health at http://127.0.0.1:18080/: the override `conf.d/elasticbeanstalk/00_application.conf` (line 2) proxies to 127.0.0.1:9999, where nothing listens; the app listens on $PORT (18501)"
        );
    }

    #[test]
    fn other_answers_name_the_overrides_or_the_missing_answer() {
        let overrides = ["conf.d/elasticbeanstalk/00_application.conf".to_string()];
        assert_eq!(
            cause(Some(500), &[], &overrides),
            "nginx answers 500 for /health at http://127.0.0.1:18080/, while the app answers on its port 18501: the bundle's nginx overrides (conf.d/elasticbeanstalk/00_application.conf) answer it differently"
        );
        assert_eq!(
            cause(Some(404), &[(target("localhost:7000"), true)], &overrides),
            "nginx answers 404 for /health at http://127.0.0.1:18080/: the override `conf.d/elasticbeanstalk/00_application.conf` (line 2) proxies to localhost:7000, which is not the app; the app listens on $PORT (18501)"
        );
        assert!(cause(None, &[], &[]).contains("did not answer (connection refused)"));
    }

    #[test]
    fn a_wildcard_listen_is_checked_on_loopback() {
        assert_eq!(
            public_addr("0.0.0.0:80".parse().expect("addr")).to_string(),
            "127.0.0.1:80"
        );
        assert_eq!(
            public_addr("[::]:80".parse().expect("addr")).to_string(),
            "[::1]:80"
        );
    }
}
