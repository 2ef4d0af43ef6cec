//! The link to a central controller (optional: without `[controller] url` the agent is
//! standalone). One task does a report round trip per interval (`report.rs`): status, metrics,
//! host facts, the events not yet acknowledged and the results of desired states and commands
//! go up; acknowledgements, the desired state and commands come down. A partition changes
//! nothing on the host: the last desired state keeps serving, events wait in the durable
//! journal (the cursor advances only on the controller's acknowledgement), and the link backs
//! off and retries. Credentials (`enroll.rs`) and outcomes (`outcomes.rs`) have their own
//! modules; pacing is the protocol's (`hostmanager_protocol::pacing`).

mod enroll;
mod facts;
mod http;
mod info;
mod outcomes;
#[cfg(test)]
mod pacing_props;
mod protocol;
mod report;

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

pub use facts::first_start;
pub use http::MAX_REPLY_BYTES;
pub use outcomes::Awaiting;
pub use protocol::*;

use crate::config::{AwsConfig, Config, ControllerConfig};
use crate::local_api::ApiState;
use crate::paths::Paths;
use enroll::CredentialFile;
use hostmanager_protocol::{Credential, pacing};
use http::Failure;

/// What `hostmanager status` shows about the link.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStatus {
    pub url: String,
    pub connected: bool,
    pub last_contact: Option<String>,
    pub last_error: Option<String>,
    pub events_acknowledged: u64,
    pub applied_serial: u64,
    /// Whether the agent authenticates with an enrolled per-instance credential.
    #[serde(default)]
    pub enrolled: bool,
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
    aws: AwsConfig,
    url: String,
    instance_id: String,
    state_file: std::path::PathBuf,
    state: LinkState,
    client: reqwest::Client,
    /// `controller.token_file`: the bearer until an enrolled credential exists.
    token: Option<crate::secret::Secret<String>>,
    credential_file: CredentialFile,
    /// The enrolled credential (its `Debug` hides the secret).
    credential: Option<Credential>,
    /// The controller said the credential is revoked or expired: enroll again.
    reenroll: bool,
    /// A 401 was reported with a warning event; cleared by the next success.
    unauthorized_warned: bool,
    advertised_addr: Option<String>,
    launched_at: Option<String>,
    /// From IMDS, filled in the background (a report never waits for IMDS).
    placement: Arc<Mutex<crate::aws::Placement>>,
    status: Arc<Mutex<LinkStatus>>,
    /// The events of the report not yet acknowledged, with the cursor they follow: retries of
    /// a failing round trip send the same batch instead of reading the journal again.
    batch: Option<(u64, Vec<crate::events::Event>)>,
    /// Environment info requests that finished in the background (`info.rs`).
    info_results: info::InfoResults,
}

impl ControllerLink {
    pub fn new(
        api: Arc<ApiState>,
        agent: &Config,
        url: String,
        instance_id: String,
        paths: &Paths,
        status: Arc<Mutex<LinkStatus>>,
    ) -> Result<Self, LinkError> {
        let config = agent.controller.clone();
        let token = match &config.token_file {
            Some(path) => Some(enroll::read_token(path)?),
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
        let credential_file = CredentialFile::new(&paths.state_dir());
        let credential = credential_file.load();
        let advertised_addr =
            facts::advertised_addr(config.advertise_addr.as_deref(), agent.proxy.listen);
        Ok(Self {
            api,
            aws: agent.aws.clone(),
            url,
            instance_id,
            state_file,
            state,
            client,
            token,
            credential_file,
            credential,
            reenroll: false,
            unauthorized_warned: false,
            advertised_addr,
            launched_at: first_start(&paths.state_dir()),
            placement: Arc::default(),
            status,
            batch: None,
            info_results: info::InfoResults::default(),
            config,
        })
    }

    pub async fn run(mut self, cancel: CancellationToken) {
        self.set_status(|status| status.enrolled = self.credential.is_some());
        let (aws, placement) = (self.aws.clone(), self.placement.clone());
        let lookup = async move {
            let found = crate::aws::resolve_placement(&aws).await;
            *placement.lock().unwrap_or_else(|p| p.into_inner()) = found;
        };
        let imds_cancel = cancel.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = imds_cancel.cancelled() => {}
                () = lookup => {}
            }
        });
        let interval = self.config.interval;
        // A fleet restarted together must not report in step.
        let first = pacing::first_delay(interval, fastrand::f64());
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(first) => {}
        }
        let mut failures: u32 = 0;
        loop {
            let outcome = tokio::select! {
                () = cancel.cancelled() => return,
                outcome = self.attempt() => outcome,
            };
            let delay = match outcome {
                Ok(report_after_ms) => {
                    if failures > 0 {
                        self.api.sink.info(
                            "controller",
                            format!("Controller {} reachable again", self.url),
                        );
                    }
                    failures = 0;
                    self.unauthorized_warned = false;
                    pacing::after_success(interval, report_after_ms, fastrand::f64())
                }
                Err(failure) => {
                    failures += 1;
                    self.failed(&failure, failures);
                    let retry_after = failure.retry_after();
                    pacing::after_failure(interval, failures, retry_after, fastrand::f64())
                }
            };
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// One attempt: enroll first when needed, then the report; a rotation the controller asks
    /// for follows a successful report. Returns the controller's `report_after_ms`.
    async fn attempt(&mut self) -> Result<Option<u64>, Failure> {
        self.ensure_credential().await?;
        let reply = self.round_trip().await?;
        if reply.rotate_credential {
            self.rotate().await;
        }
        Ok(reply.report_after_ms)
    }

    /// Records the failure; one warning event per kind of trouble, not one per retry.
    fn failed(&mut self, failure: &Failure, failures: u32) {
        let error = failure.to_string();
        if failure.is_unauthorized() {
            if !self.unauthorized_warned {
                self.unauthorized_warned = true;
                self.api.sink.warn(
                    "controller",
                    format!("Controller {} refused the agent's credential: {error}; the host keeps its desired state", self.url),
                );
            }
            // Revoked or expired: enroll again, once per backoff step, if the agent can.
            if let Failure::Http { revoked: true, .. } = failure
                && self.config.enrollment_token_file.is_some()
            {
                self.reenroll = true;
            }
        } else if failures == 1 {
            self.api.sink.warn(
                "controller",
                format!(
                    "Controller {} unreachable: {error}; the host keeps its desired state",
                    self.url
                ),
            );
        }
        self.set_status(|status| {
            status.connected = false;
            status.last_error = Some(error);
        });
    }

    /// Where an environment info request uploads, with the current bearer.
    fn uploader(&self) -> info::Uploader {
        info::Uploader {
            client: self.client.clone(),
            base: format!(
                "{}/v1/hosts/{}/logs",
                self.url.trim_end_matches('/'),
                self.instance_id
            ),
            bearer: self
                .bearer()
                .map(|b| crate::secret::Secret::new(b.to_string())),
        }
    }

    /// The bearer of the next request: the enrolled secret, else `controller.token_file`.
    fn bearer(&self) -> Option<&str> {
        match &self.credential {
            Some(credential) => Some(credential.secret.as_str()),
            None => self.token.as_ref().map(|t| t.expose().as_str()),
        }
    }

    /// Enrolls when an enrollment token is configured and no usable credential is stored.
    async fn ensure_credential(&mut self) -> Result<(), Failure> {
        let Some(token_file) = self.config.enrollment_token_file.clone() else {
            return Ok(());
        };
        if self.credential.is_some() && !self.reenroll {
            return Ok(());
        }
        // Read now, not at start: the operator may provision it after the agent started.
        let token = enroll::read_token(&token_file).map_err(|e| Failure::Other(e.to_string()))?;
        let request = hostmanager_protocol::EnrollRequest {
            instance_id: self.instance_id.clone(),
            machine_fingerprint: enroll::machine_fingerprint(&self.config.machine_id_file)?,
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            facts: self.facts(),
        };
        let credential = enroll::enroll(&self.client, &self.url, &token, &request).await?;
        self.credential_file.save(&credential)?;
        self.api.sink.info(
            "controller",
            format!(
                "Enrolled with controller {} as {} (environment {})",
                self.url, credential.instance_id, credential.environment
            ),
        );
        self.credential = Some(credential);
        self.reenroll = false;
        self.set_status(|status| status.enrolled = true);
        Ok(())
    }

    /// Swaps the credential for a new one; on failure the old one serves on and the next
    /// reply asks again.
    async fn rotate(&mut self) {
        let rotated =
            enroll::rotate(&self.client, &self.url, &self.instance_id, self.bearer()).await;
        let saved = rotated.and_then(|credential| {
            self.credential_file.save(&credential)?;
            Ok(credential)
        });
        match saved {
            Ok(credential) => {
                self.credential = Some(credential);
                self.set_status(|status| status.enrolled = true);
                tracing::info!("controller credential rotated");
            }
            Err(failure) => {
                tracing::warn!(error = %failure, "controller credential not rotated; retrying when asked again")
            }
        }
    }

    fn facts(&self) -> hostmanager_protocol::HostFacts {
        let placement = self
            .placement
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        facts::host_facts(
            self.advertised_addr.clone(),
            &placement,
            self.launched_at.clone(),
        )
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
