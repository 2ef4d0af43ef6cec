//! The health gate: the new web process must pass `deploy.health_gate_successes` checks in a
//! row on its port before it takes traffic. While it fails, the gate also looks at where the
//! process listens (`ports.rs`): one that listens only elsewhere fails the gate at once,
//! naming the ports; one that listens on its platform's default port instead of `$PORT` is
//! gated there and served there, as Elastic Beanstalk does (unless `deploy.fixed_port =
//! "refuse"`).

use std::net::SocketAddr;
use std::path::Path;

use serde_json::json;
use tokio::time::Instant;

use super::Engine;
use super::model::ReleaseInfo;
use super::ports::{self, PORT_CONFIRMATIONS, PortFinding};
use super::runtime::RuntimeInfo;
use super::steps::StepFailure;
use crate::config::{DeployStrategy, FixedPortPolicy, PlatformName};
use crate::events::{NewEvent, Severity};
use crate::health::probe;
use crate::proxy::StagedConfig;
use crate::supervise::{ProcessKey, ProcessState};

const OUTPUT_TAIL_LINES: usize = 50;

/// Where a release's web process passed its gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct GatePassed {
    /// Where it listens and answers: nginx proxies here.
    pub port: u16,
    /// The `$PORT` it was given, when it ignored it for a fixed port.
    pub given_port: Option<u16>,
}

/// What a pass of the gate judges where the web process listens against.
struct PortRules {
    /// The `$PORT` it was given.
    given: u16,
    /// Fixed ports it may listen on instead (none on the pass that checks a fixed port).
    accepted: Vec<u16>,
    platform: Option<PlatformName>,
}

/// How one pass of the gate on one port ended.
enum Gate {
    Healthy,
    /// It listens on this accepted fixed port instead.
    ListensOn(u16),
}

impl Engine {
    /// Gates the web process of `release` (started with `$PORT = port`) for deployment `id`.
    pub(super) async fn gate_web(
        &self,
        id: u64,
        release: u64,
        port: u16,
        runtime: Option<&RuntimeInfo>,
        path: &str,
    ) -> Result<GatePassed, StepFailure> {
        let platform = runtime.map(|r| r.platform);
        let app_port = self.config.app.port;
        let rules = PortRules {
            given: port,
            accepted: self.accepted_fixed_ports(runtime),
            platform,
        };
        let fixed = match self.gate_on(id, release, port, &rules, path).await? {
            Gate::Healthy => {
                return Ok(GatePassed {
                    port,
                    given_port: None,
                });
            }
            Gate::ListensOn(fixed) => fixed,
        };
        if self.config.deploy.fixed_port == FixedPortPolicy::Refuse {
            return Err(self.gate_failure(ports::refused_message(port, fixed, platform, app_port)));
        }
        self.warn_deployment(
            id,
            ports::fixed_port_warning(port, fixed, platform, app_port),
        );
        let rules = PortRules {
            accepted: Vec::new(),
            ..rules
        };
        match self.gate_on(id, release, fixed, &rules, path).await? {
            Gate::Healthy => Ok(GatePassed {
                port: fixed,
                given_port: Some(port),
            }),
            // No port is accepted on this pass: it cannot end on another one.
            Gate::ListensOn(other) => Err(self.gate_failure(format!(
                "process web moved from port {fixed} to {other} during its health gate"
            ))),
        }
    }

    /// N consecutive good checks on `port`, directly; fails early when the process exits or
    /// listens only elsewhere than `port` and the accepted ports. The ports it listens on go
    /// into deployment `id`'s record.
    async fn gate_on(
        &self,
        id: u64,
        release: u64,
        port: u16,
        rules: &PortRules,
        path: &str,
    ) -> Result<Gate, StepFailure> {
        let deploy = &self.config.deploy;
        let health = &self.health_settings();
        let key = ProcessKey {
            release,
            name: "web".to_string(),
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + deploy.health_gate_timeout;
        let (mut successes, mut attempts) = (0, 0);
        let mut last_error = String::new();
        let mut finding = (PortFinding::Undecided, 0);
        let mut recorded = None;
        loop {
            let result = probe(addr, path, health.timeout).await;
            attempts += 1;
            let listening = self.supervisor.listening_now(&key).await;
            if listening != recorded {
                self.update_record(id, |r| r.web_listening = listening.clone());
                recorded = listening.clone();
            }
            if result.ok {
                successes += 1;
                if successes >= deploy.health_gate_successes {
                    return Ok(Gate::Healthy);
                }
            } else {
                successes = 0;
                last_error = result.error.unwrap_or_default();
                let listening = listening.as_deref().unwrap_or_default();
                let now = ports::judge(port, listening, &rules.accepted);
                finding = match finding {
                    (seen, times) if seen == now => (now, times + 1),
                    _ => (now, 1),
                };
                match &finding {
                    (PortFinding::Fixed(fixed), times) if *times >= PORT_CONFIRMATIONS => {
                        return Ok(Gate::ListensOn(*fixed));
                    }
                    (PortFinding::Elsewhere(elsewhere), times) if *times >= PORT_CONFIRMATIONS => {
                        return Err(self.gate_failure(ports::elsewhere_message(
                            rules.given,
                            elsewhere,
                            &rules.accepted,
                            rules.platform,
                            self.config.app.port,
                        )));
                    }
                    _ => {}
                }
            }
            if let Some(exit) = self.web_exit(release) {
                let mut message =
                    format!("process web exited with {exit} before it became healthy");
                let stderr = self.paths.process_stderr_log("web");
                let hint = ports::bind_conflict_hint(&crate::fsutil::tail_lines(&stderr, 10));
                if let Some(hint) = hint {
                    message.push_str(": ");
                    message.push_str(hint);
                }
                return Err(StepFailure {
                    port_taken: hint.is_some(),
                    ..self.gate_failure(message)
                });
            }
            if Instant::now() + deploy.health_gate_interval > deadline {
                return Err(self.gate_failure(format!(
                    "health check {} on port {port} did not pass {} times in a row within {:?} ({attempts} checks; last error: {last_error}; {})",
                    path,
                    deploy.health_gate_successes,
                    deploy.health_gate_timeout,
                    ports::listening_words(listening.as_deref())
                )));
            }
            tokio::time::sleep(deploy.health_gate_interval).await;
        }
    }

    /// The ports a web process of `runtime`'s platform may listen on instead of `$PORT`.
    pub(super) fn accepted_fixed_ports(&self, runtime: Option<&RuntimeInfo>) -> Vec<u16> {
        ports::accepted_fixed_ports(
            runtime.map(|r| r.platform),
            &self.config.proxy.platform_ports,
            self.config.app.port,
        )
    }

    /// When the new web process of deployment `id` could not bind a port (`failure`), whether
    /// that is most likely the fixed port the serving release listens on, so that stopping it
    /// first lets the new one start (as Elastic Beanstalk would on one instance). Says so in
    /// a warning when it is.
    pub(super) fn make_room_for(
        &self,
        id: u64,
        failure: &StepFailure,
        serving: &ReleaseInfo,
        runtime: Option<&RuntimeInfo>,
    ) -> bool {
        let held = serving.web_port;
        let fits = failure.port_taken
            && self.config.deploy.fixed_port == FixedPortPolicy::StopThenStart
            && self.accepted_fixed_ports(runtime).contains(&held);
        if fits {
            self.warn_deployment(id, ports::make_room_warning(&named(serving), held));
        }
        fits
    }

    /// Whether deployment `id` stops the serving release before starting the new one: under
    /// all-at-once, and when the serving release holds a fixed port the new one may want too
    /// (with a warning, under zero-downtime).
    pub(super) fn stops_first(&self, id: u64, serving: Option<&ReleaseInfo>) -> bool {
        let Some(serving) = serving else {
            return false;
        };
        if self.config.deploy.strategy == DeployStrategy::AllAtOnce {
            return true;
        }
        let Some(given) = serving.given_port else {
            return false;
        };
        self.warn_deployment(
            id,
            ports::stop_first_warning(&named(serving), serving.web_port, given),
        );
        true
    }

    /// A warning of deployment `id`: in deploy.log and as an event.
    pub(super) fn warn_deployment(&self, id: u64, warning: String) {
        self.deploy_log(id, &warning);
        self.events
            .emit(NewEvent::new(Severity::Warning, "deploy", warning).deployment(id));
    }

    /// Stages nginx's config again for a web process found on a fixed `port`, as step `step`;
    /// the config staged for `$PORT` is removed either way.
    pub(super) async fn restage_on(
        &self,
        id: u64,
        step: &str,
        staged: StagedConfig,
        port: u16,
        overrides: Option<&Path>,
        runtime: Option<&RuntimeInfo>,
    ) -> Result<StagedConfig, StepFailure> {
        let outcome = self
            .step(id, step, async {
                Ok(self
                    .proxy
                    .stage(port, overrides, &RuntimeInfo::static_files_of(runtime))
                    .await?)
            })
            .await;
        let _ = super::retention::remove_tree(staged.dir).await;
        outcome
    }

    fn web_exit(&self, release: u64) -> Option<String> {
        self.supervisor
            .statuses()
            .into_iter()
            .find(|p| p.release == release && p.name == "web" && p.state == ProcessState::Backoff)
            .and_then(|p| p.last_exit.map(|e| e.to_string()))
    }

    pub(super) fn gate_failure(&self, message: String) -> StepFailure {
        let stderr = self.paths.process_stderr_log("web");
        StepFailure::new(message).with_details(json!({
            "process": "web",
            "stderr_log": stderr.display().to_string(),
            "stderr_tail": crate::fsutil::tail_lines(&stderr, OUTPUT_TAIL_LINES),
        }))
    }
}

/// "v1 (deployment 3)".
fn named(release: &ReleaseInfo) -> String {
    format!(
        "{} (deployment {})",
        release.version_label, release.deployment_id
    )
}
