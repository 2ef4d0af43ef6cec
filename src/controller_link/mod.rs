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
use crate::deploy::SubmitError;
use crate::events::{NewEvent, Severity};
use crate::local_api::ApiState;
use crate::paths::Paths;

const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Largest controller answer the agent reads (a desired state with its properties and a few
/// commands is a few KiB); a bigger one fails the round trip instead of filling memory.
pub const MAX_REPLY_BYTES: usize = 4 << 20;
/// How much of an error answer's body goes into the error message.
const ERROR_BODY_BYTES: usize = 4 << 10;

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
    /// The events of the report not yet acknowledged, with the cursor they follow: retries of
    /// a failing round trip send the same batch instead of reading the journal again.
    batch: Option<(u64, Vec<crate::events::Event>)>,
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
            batch: None,
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

    /// The events to send: the batch of the last failed attempt if the cursor has not moved,
    /// else read once from the store.
    fn events_batch(&mut self) -> Vec<crate::events::Event> {
        let store = self.api.events.clone();
        batch_after(&mut self.batch, self.state.events_cursor, |cursor| {
            store.oldest_after(cursor, MAX_EVENTS_PER_REPORT)
        })
    }

    async fn round_trip(&mut self) -> Result<(), String> {
        let events = self.events_batch();
        let report = Report {
            instance_id: self.instance_id.clone(),
            environment: self.api.info.environment.clone(),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            applied_serial: self.state.applied_serial,
            status: crate::local_api::status_report(&self.api),
            events,
            command_results: self.state.pending_results.clone(),
            desired_results: Vec::new(),
            metrics: None,
            facts: None,
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
            let body = read_capped(response, ERROR_BODY_BYTES, true)
                .await
                .unwrap_or_default();
            return Err(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&body)
                    .chars()
                    .take(200)
                    .collect::<String>()
            ));
        }
        let bytes = read_capped(response, MAX_REPLY_BYTES, false).await?;
        let reply: ReportReply =
            serde_json::from_slice(&bytes).map_err(|e| format!("unreadable answer: {e}"))?;
        let sent_up_to = report
            .events
            .last()
            .map_or(self.state.events_cursor, |e| e.id);
        self.state.acknowledge(&reply, sent_up_to);
        self.batch = None;
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
                    outcome: None,
                },
                Err(error) => CommandResult {
                    id: command.id,
                    accepted: false,
                    deployment_id: None,
                    error: Some(error.to_string()),
                    outcome: None,
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

/// The batch cached for `cursor`, or a fresh one from `read` (cached for the next retry).
fn batch_after<T: Clone>(
    cache: &mut Option<(u64, Vec<T>)>,
    cursor: u64,
    read: impl FnOnce(u64) -> Vec<T>,
) -> Vec<T> {
    match cache {
        Some((after, batch)) if *after == cursor => batch.clone(),
        _ => {
            let batch = read(cursor);
            *cache = Some((cursor, batch.clone()));
            batch
        }
    }
}

/// Reads at most `cap` bytes of the body: more is an error, or with `truncate` cut off.
async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
    truncate: bool,
) -> Result<Vec<u8>, String> {
    let too_big = || format!("the controller's answer is larger than {cap} bytes");
    if !truncate
        && response
            .content_length()
            .is_some_and(|len| len > cap as u64)
    {
        return Err(too_big());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|error| describe(&error))? {
        if body.len() + chunk.len() > cap {
            if truncate {
                body.extend_from_slice(&chunk[..cap - body.len()]);
                return Ok(body);
            }
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// One HTTP answer of `body_len` bytes on a loopback port (without a content-length when
    /// `chunked`, so only the streaming cap can stop it).
    fn serve_once(body_len: usize, chunked: bool) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("addr"));
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("accept");
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request);
            let head = match chunked {
                false => format!("HTTP/1.1 200 OK\r\ncontent-length: {body_len}\r\n\r\n"),
                true => "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n".to_string(),
            };
            let _ = stream.write_all(head.as_bytes());
            let chunk = vec![b'x'; 64 << 10];
            let mut left = body_len;
            while left > 0 {
                let n = left.min(chunk.len());
                if stream.write_all(&chunk[..n]).is_err() {
                    return;
                }
                left -= n;
            }
        });
        url
    }

    #[test]
    fn retries_reuse_the_batch_until_the_cursor_moves() {
        let mut cache = None;
        let mut reads = 0;
        let mut read = |cursor: u64| {
            reads += 1;
            vec![cursor + 1, cursor + 2]
        };
        assert_eq!(batch_after(&mut cache, 10, &mut read), [11, 12]);
        assert_eq!(batch_after(&mut cache, 10, &mut read), [11, 12], "a retry");
        assert_eq!(batch_after(&mut cache, 10, &mut read), [11, 12], "another");
        assert_eq!(
            batch_after(&mut cache, 12, &mut read),
            [13, 14],
            "acknowledged"
        );
        assert_eq!(reads, 2, "the journal is read once per cursor");
    }

    #[tokio::test]
    async fn answers_past_the_cap_are_refused_and_error_bodies_cut() {
        let client = reqwest::Client::new();
        for chunked in [false, true] {
            let url = serve_once(MAX_REPLY_BYTES + 1, chunked);
            let response = client.get(&url).send().await.expect("send");
            let refused = read_capped(response, MAX_REPLY_BYTES, false).await;
            assert_eq!(
                refused,
                Err(format!(
                    "the controller's answer is larger than {MAX_REPLY_BYTES} bytes"
                )),
                "chunked: {chunked}"
            );
        }
        let url = serve_once(100_000, true);
        let response = client.get(&url).send().await.expect("send");
        let cut = read_capped(response, ERROR_BODY_BYTES, true)
            .await
            .expect("cut");
        assert_eq!(cut.len(), ERROR_BODY_BYTES);
        let url = serve_once(1000, false);
        let response = client.get(&url).send().await.expect("send");
        assert_eq!(
            read_capped(response, MAX_REPLY_BYTES, false)
                .await
                .map(|b| b.len()),
            Ok(1000)
        );
    }
}
