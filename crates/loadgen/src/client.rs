//! The HTTP side, as the agent's `src/controller_link/http.rs` does it: a JSON body (gzip for
//! reports), a bearer, and failures that keep what pacing needs (`Retry-After` on 429/503).

use std::io::Write;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use hostmanager_protocol::pacing;

#[derive(Debug, Clone)]
pub struct Failure {
    /// The HTTP status; none when there was no answer (refused, reset, timed out).
    pub status: Option<u16>,
    pub retry_after: Option<Duration>,
    pub message: String,
}

impl Failure {
    /// The controller's `Retry-After`, honoured on 429 and 503 only (as the agent does).
    pub fn retry_after(&self) -> Option<Duration> {
        match self.status {
            Some(429 | 503) => self.retry_after,
            _ => None,
        }
    }

    /// The controller is shedding load (as opposed to down or refusing the request).
    pub fn is_busy(&self) -> bool {
        matches!(self.status, Some(429 | 503))
    }

    fn other(message: impl Into<String>) -> Self {
        Self {
            status: None,
            retry_after: None,
            message: message.into(),
        }
    }
}

/// How a body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
}

/// The serialized (and maybe compressed) body: built before the clock starts, so the measured
/// latency is the controller's round trip, not the generator's JSON work.
pub fn encode(body: &impl Serialize, encoding: Encoding) -> Result<Vec<u8>, String> {
    let json = serde_json::to_vec(body).map_err(|e| e.to_string())?;
    match encoding {
        Encoding::Identity => Ok(json),
        Encoding::Gzip => {
            // The agent's level: fast, reports are repetitive JSON.
            let mut encoder = flate2::write::GzEncoder::new(
                Vec::with_capacity(json.len() / 4),
                flate2::Compression::fast(),
            );
            encoder.write_all(&json).map_err(|e| e.to_string())?;
            encoder.finish().map_err(|e| e.to_string())
        }
    }
}

/// POSTs an encoded JSON body with `bearer` and parses the answer as `T`.
pub async fn post<T: DeserializeOwned>(
    client: &reqwest::Client,
    url: &str,
    bearer: &str,
    body: Vec<u8>,
    encoding: Encoding,
) -> Result<T, Failure> {
    let mut request = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .bearer_auth(bearer);
    if encoding == Encoding::Gzip {
        request = request.header(reqwest::header::CONTENT_ENCODING, "gzip");
    }
    let response = request
        .body(body)
        .send()
        .await
        .map_err(|e| Failure::other(chain(&e)))?;
    let status = response.status();
    if !status.is_success() {
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(pacing::retry_after);
        let text = response.text().await.unwrap_or_default();
        return Err(Failure {
            status: Some(status.as_u16()),
            retry_after,
            message: format!(
                "HTTP {status}: {}",
                text.chars().take(200).collect::<String>()
            ),
        });
    }
    let bytes = response
        .bytes()
        .await
        .map_err(|e| Failure::other(chain(&e)))?;
    serde_json::from_slice(&bytes).map_err(|e| Failure::other(format!("unreadable answer: {e}")))
}

/// The error and its causes on one line ("error sending request: connection refused").
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
