//! The link to a central controller (optional: without `[controller] url` the agent is
//! standalone). One task does a report round trip per interval (`protocol.rs`): status, the
//! events not yet acknowledged and command results go up; acknowledgements, the desired state
//! and commands come down. A partition changes nothing on the host: the last desired state
//! keeps serving, events wait in the durable journal (the cursor advances only on the
//! controller's acknowledgement), and the link backs off and retries.

mod protocol;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

pub use protocol::*;

use crate::config::ControllerConfig;
use crate::control::ApiState;
use crate::deploy::SubmitError;
use crate::events::{NewEvent, Severity};
use crate::paths::Paths;

const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// What `hostmanager status` shows about the link.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStatus {
    pub url: String,
    pub connected: bool,
    pub last_contact: Option<String>,
    pub last_error: Option<String>,
    pub events_acknowledged: u64,
    pub applied_serial: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("controller.token_file {path}: {source}")]
    Token {
        path: String,
        source: std::io::Error,
    },
    #[error("controller.ca_file {path}: {message}")]
    Ca { path: String, message: String },
    #[error("controller HTTP client: {0}")]
    Client(String),
}

#[derive(Debug)]
pub struct ControllerLink {
    api: Arc<ApiState>,
    config: ControllerConfig,
    url: String,
    instance_id: String,
    state_file: std::path::PathBuf,
    state: LinkState,
    client: reqwest::Client,
    token: Option<crate::secret::Secret<String>>,
    status: Arc<Mutex<LinkStatus>>,
}

impl ControllerLink {
    pub fn new(
        api: Arc<ApiState>,
        config: ControllerConfig,
        url: String,
        instance_id: String,
        paths: &Paths,
        status: Arc<Mutex<LinkStatus>>,
    ) -> Result<Self, LinkError> {
        let token = match &config.token_file {
            Some(path) => Some(read_token(path)?),
            None => None,
        };
        let mut builder = reqwest::Client::builder()
            .connect_timeout(config.timeout)
            .timeout(config.timeout);
        if let Some(ca_file) = &config.ca_file {
            let ca = |message: String| LinkError::Ca {
                path: ca_file.display().to_string(),
                message,
            };
            let pem = std::fs::read(ca_file).map_err(|e| ca(e.to_string()))?;
            builder = builder.tls_certs_merge(
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ca(e.to_string()))?,
            );
        }
        let client = builder
            .build()
            .map_err(|e| LinkError::Client(e.to_string()))?;
        let state_file = paths.state_dir().join("controller.json");
        let state: LinkState = crate::fsutil::read_json(&state_file)
            .ok()
            .flatten()
            .unwrap_or_default();
        Ok(Self {
            api,
            config,
            url,
            instance_id,
            state_file,
            state,
            client,
            token,
            status,
        })
    }

    pub async fn run(mut self, cancel: CancellationToken) {
        let mut failures: u32 = 0;
        loop {
            let outcome = tokio::select! {
                () = cancel.cancelled() => return,
                outcome = self.round_trip() => outcome,
            };
            let delay = match outcome {
                Ok(()) => {
                    if failures > 0 {
                        self.api.sink.info(
                            "controller",
                            format!("Controller {} reachable again", self.url),
                        );
                    }
                    failures = 0;
                    self.config.interval
                }
                Err(error) => {
                    failures += 1;
                    if failures == 1 {
                        self.api.sink.warn("controller", format!("Controller {} unreachable: {error}; the host keeps its desired state", self.url));
                    }
                    self.set_status(|status| {
                        status.connected = false;
                        status.last_error = Some(error.clone());
                    });
                    backoff(self.config.interval, failures)
                }
            };
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    async fn round_trip(&mut self) -> Result<(), String> {
        let report = Report {
            instance_id: self.instance_id.clone(),
            environment: self.api.info.environment.clone(),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            applied_serial: self.state.applied_serial,
            status: crate::control::status_report(&self.api),
            events: self
                .api
                .events
                .oldest_after(self.state.events_cursor, MAX_EVENTS_PER_REPORT),
            command_results: self.state.pending_results.clone(),
        };
        let url = format!(
            "{}/v1/hosts/{}/report",
            self.url.trim_end_matches('/'),
            self.instance_id
        );
        let body = serde_json::to_vec(&report).map_err(|e| e.to_string())?;
        let mut request = self
            .client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose());
        }
        let response = request.send().await.map_err(|error| describe(&error))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(format!(
                "HTTP {status}: {}",
                body.chars().take(200).collect::<String>()
            ));
        }
        let bytes = response.bytes().await.map_err(|error| describe(&error))?;
        let reply: ReportReply =
            serde_json::from_slice(&bytes).map_err(|e| format!("unreadable answer: {e}"))?;
        let sent_up_to = report
            .events
            .last()
            .map_or(self.state.events_cursor, |e| e.id);
        self.state.acknowledge(&reply, sent_up_to);
        self.apply(&reply);
        self.save_state();
        let state = self.state.clone();
        self.set_status(|status| {
            status.connected = true;
            status.last_contact = Some(jiff::Timestamp::now().to_string());
            status.last_error = None;
            status.events_acknowledged = state.events_cursor;
            status.applied_serial = state.applied_serial;
        });
        Ok(())
    }

    /// Queues the desired state if it is new and runs new commands; results go up next time.
    fn apply(&mut self, reply: &ReportReply) {
        if let Some(desired) = self.state.newer_desired(reply).cloned() {
            match self.api.deployer.submit(desired.deployment) {
                Ok(record) => {
                    self.state.applied_serial = desired.serial;
                    self.api.sink.emit(
                        NewEvent::new(
                            Severity::Info,
                            "controller",
                            format!(
                                "Desired state {} from the controller: deployment {} queued",
                                desired.serial, record.id
                            ),
                        )
                        .deployment(record.id),
                    )
                }
                // An invalid document is recorded as applied: retrying it would fail forever.
                Err(error @ SubmitError::Invalid(_)) => {
                    self.state.applied_serial = desired.serial;
                    self.api.sink.error(
                        "controller",
                        format!(
                            "Desired state {} from the controller refused: {error}",
                            desired.serial
                        ),
                    )
                }
                // A full queue or a disk error passes: the next round trip tries again.
                Err(error) => {
                    tracing::warn!(serial = desired.serial, %error, "desired state not queued yet")
                }
            }
        }
        let commands = self.state.take_new_commands(reply);
        if commands.is_empty() {
            return;
        }
        // Remembered as run BEFORE they run: a crash in between loses a command rather than
        // running it twice (two rollbacks would go back two releases).
        self.save_state();
        for command in commands {
            let outcome = match command.kind {
                CommandKind::Restart => self.api.deployer.submit_restart(),
                CommandKind::Rollback => self.api.deployer.submit_rollback(),
            };
            let result = match outcome {
                Ok(record) => CommandResult {
                    id: command.id,
                    accepted: true,
                    deployment_id: Some(record.id),
                    error: None,
                },
                Err(error) => CommandResult {
                    id: command.id,
                    accepted: false,
                    deployment_id: None,
                    error: Some(error.to_string()),
                },
            };
            self.state.pending_results.push(result);
        }
    }

    fn save_state(&self) {
        if let Err(error) = crate::fsutil::write_json_atomic(&self.state_file, &self.state, 0o600) {
            tracing::error!(%error, "cannot persist the controller link state");
        }
    }

    fn set_status(&self, change: impl FnOnce(&mut LinkStatus)) {
        change(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// Doubling from the interval, capped, with ±20 % jitter so a fleet does not retry in step.
fn backoff(interval: Duration, failures: u32) -> Duration {
    let base = interval
        .saturating_mul(1u32 << failures.min(10))
        .min(MAX_BACKOFF);
    base.mul_f64(0.8 + 0.4 * fastrand::f64())
}

fn read_token(path: &std::path::Path) -> Result<crate::secret::Secret<String>, LinkError> {
    use std::os::unix::fs::PermissionsExt;
    let token = |source| LinkError::Token {
        path: path.display().to_string(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(token)?;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(path = %path.display(), "the controller token file is readable by others; chmod 600 it");
    }
    let text = std::fs::read_to_string(path).map_err(token)?;
    Ok(crate::secret::Secret::new(text.trim().to_string()))
}

fn describe(error: &reqwest::Error) -> String {
    crate::errors::chain(error)
}
