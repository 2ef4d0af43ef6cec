//! One POST to the controller: a JSON body (gzip-compressed for reports), a bearer, and an
//! answer read under a cap. Failures keep what the pacing and the 401 handling need: the
//! status, `Retry-After`, and whether the controller said the credential is revoked.

use std::io::Write;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use hostmanager_protocol::pacing;

/// Largest controller answer the agent reads (a desired state with its properties and a few
/// commands is a few KiB); a bigger one fails the round trip instead of filling memory.
pub const MAX_REPLY_BYTES: usize = 4 << 20;
/// How much of an error answer's body is read (its first 200 characters go into the error).
pub(super) const ERROR_BODY_BYTES: usize = 4 << 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No answer, an unreadable one, or a local problem (a token file, the machine id).
    Other(String),
    /// An HTTP error answer.
    Http {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
        /// A 401 whose body says the credential was revoked or expired.
        revoked: bool,
    },
}

impl Failure {
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, Self::Http { status: 401, .. })
    }

    /// The controller's `Retry-After`, honoured on 429 and 503 only.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Http {
                status: 429 | 503,
                retry_after,
                ..
            } => *retry_after,
            _ => None,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Other(message) | Self::Http { message, .. } => f.write_str(message),
        }
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Self::Other(message)
    }
}

/// How a request body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    /// `Content-Encoding: gzip`: reports are mostly repetitive JSON (events, status).
    Gzip,
}

/// POSTs `body` as JSON with `bearer` and parses the answer as `T`.
pub async fn post_json<T: DeserializeOwned>(
    client: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
    body: &impl Serialize,
    encoding: Encoding,
) -> Result<T, Failure> {
    let json = serde_json::to_vec(body).map_err(|e| e.to_string())?;
    let mut request = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json");
    request = match encoding {
        Encoding::Identity => request.body(json),
        Encoding::Gzip => request
            .header(reqwest::header::CONTENT_ENCODING, "gzip")
            .body(gzip(&json).map_err(|e| format!("compressing the report: {e}"))?),
    };
    if let Some(bearer) = bearer {
        // reqwest marks the header sensitive: it never shows in its debug output.
        request = request.bearer_auth(bearer);
    }
    answer(request).await
}

/// POSTs a file's bytes (a log tail or bundle) with `bearer`, under its own `timeout`: an
/// upload may take longer than a report.
pub async fn post_bytes<T: DeserializeOwned>(
    client: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<T, Failure> {
    let mut request = client
        .post(url)
        .timeout(timeout)
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .body(body);
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    answer(request).await
}

/// Sends the request and parses a success as `T`; an error answer becomes a [`Failure`] with
/// its status, `Retry-After` and the start of its body.
async fn answer<T: DeserializeOwned>(request: reqwest::RequestBuilder) -> Result<T, Failure> {
    let response = request.send().await.map_err(|error| describe(&error))?;
    let status = response.status();
    if !status.is_success() {
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(pacing::retry_after);
        let body = read_capped(response, ERROR_BODY_BYTES, true)
            .await
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&body);
        return Err(Failure::Http {
            status: status.as_u16(),
            message: format!(
                "HTTP {status}: {}",
                text.chars().take(200).collect::<String>()
            ),
            retry_after,
            revoked: status.as_u16() == 401 && says_revoked(&text),
        });
    }
    let bytes = read_capped(response, MAX_REPLY_BYTES, false).await?;
    serde_json::from_slice(&bytes).map_err(|e| Failure::Other(format!("unreadable answer: {e}")))
}

/// Whether a 401 body (`{"error": "revoked"}` and the like) says the credential is dead, as
/// opposed to a wrong one: only then is enrolling again worth it.
pub fn says_revoked(body: &str) -> bool {
    let error = serde_json::from_str::<hostmanager_protocol::ErrorBody>(body)
        .map(|b| b.error)
        .unwrap_or_else(|_| body.to_string())
        .to_ascii_lowercase();
    error.contains("revoked") || error.contains("expired")
}

fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4),
        flate2::Compression::fast(),
    );
    encoder.write_all(bytes)?;
    encoder.finish()
}

/// Reads at most `cap` bytes of the body: more is an error, or with `truncate` cut off.
pub(super) async fn read_capped(
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

fn describe(error: &reqwest::Error) -> String {
    crate::errors::chain(error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// One HTTP answer of `body_len` bytes on a loopback port (without a content-length when
    /// `chunked`, so only the streaming cap can stop it).
    fn serve_once(body_len: usize, chunked: bool) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("addr"));
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("accept");
            let mut request = [0u8; 1024];
            let _ = std::io::Read::read(&mut stream, &mut request);
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
    fn revoked_and_expired_credentials_are_told_from_wrong_ones() {
        assert!(says_revoked(r#"{"error":"revoked"}"#));
        assert!(says_revoked(r#"{"error":"credential expired"}"#));
        assert!(says_revoked("Credential REVOKED"));
        assert!(!says_revoked(r#"{"error":"unknown credential"}"#));
        assert!(!says_revoked(""));
    }

    #[test]
    fn gzip_bodies_decode_to_the_json() {
        let json = br#"{"events":[]}"#.repeat(100);
        let packed = gzip(&json).expect("gzip");
        assert!(packed.len() < json.len());
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(packed.as_slice())
            .read_to_end(&mut out)
            .expect("gunzip");
        assert_eq!(out, json);
    }

    #[test]
    fn retry_after_counts_on_429_and_503_only() {
        let http = |status| Failure::Http {
            status,
            message: String::new(),
            retry_after: Some(Duration::from_secs(3)),
            revoked: false,
        };
        assert_eq!(http(429).retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(http(503).retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(http(500).retry_after(), None);
        assert!(http(401).is_unauthorized());
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
