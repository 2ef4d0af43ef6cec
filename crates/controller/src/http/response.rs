//! Answers: JSON bodies, errors in one shape (`{"error": "..."}`), and reading request bodies
//! with a bound and optional gzip.

use std::io::Read;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode, header};
use serde::Serialize;

pub type Answer = Response<Full<Bytes>>;

pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Answer {
    match serde_json::to_vec(value) {
        Ok(body) => Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "response")),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("encoding the answer: {e}"),
        ),
    }
}

pub fn ok<T: Serialize>(value: &T) -> Answer {
    json(StatusCode::OK, value)
}

pub fn error(status: StatusCode, message: &str) -> Answer {
    json(
        status,
        &hostmanager_protocol::ErrorBody {
            error: message.to_string(),
        },
    )
}

pub fn plain(status: StatusCode, text: &str) -> Answer {
    let mut answer = Response::new(Full::new(Bytes::from(text.to_string())));
    *answer.status_mut() = status;
    answer.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    answer
}

/// 503 with `Retry-After`: the agent waits that long instead of its backoff.
pub fn overloaded(retry_after_secs: u64, message: &str) -> Answer {
    let mut answer = error(StatusCode::SERVICE_UNAVAILABLE, message);
    if let Ok(value) = header::HeaderValue::from_str(&retry_after_secs.to_string()) {
        answer.headers_mut().insert(header::RETRY_AFTER, value);
    }
    answer
}

/// An error with its HTTP status, for handlers that use `?`.
#[derive(Debug)]
pub struct Failure(pub StatusCode, pub String);

impl Failure {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, message.into())
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self(StatusCode::NOT_FOUND, message.into())
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self(StatusCode::CONFLICT, message.into())
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self(StatusCode::UNAUTHORIZED, message.into())
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self(StatusCode::FORBIDDEN, message.into())
    }
    pub fn into_answer(self) -> Answer {
        error(self.0, &self.1)
    }
}

impl From<crate::store::StoreError> for Failure {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::NotFound(what) => {
                Failure::not_found(format!("{what} not found"))
            }
            crate::store::StoreError::Conflict(message) => Failure::conflict(message),
            crate::store::StoreError::Database(message) => {
                tracing::error!(%message, "database error");
                Failure(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("database: {message}"),
                )
            }
        }
    }
}

pub type Handled = Result<Answer, Failure>;

/// Reads the body (at most `limit` bytes, after gunzip too when `Content-Encoding: gzip`).
pub async fn body(request: Request<Incoming>, limit: usize) -> Result<Bytes, Failure> {
    let gzip = request
        .headers()
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    let collected = Limited::new(request.into_body(), limit)
        .collect()
        .await
        .map_err(|e| {
            Failure(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body: {e} (at most {limit} bytes)"),
            )
        })?
        .to_bytes();
    if !gzip {
        return Ok(collected);
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&collected[..])
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| Failure::bad_request(format!("request body: not gzip: {e}")))?;
    if out.len() > limit {
        return Err(Failure(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body: more than {limit} bytes once decompressed"),
        ));
    }
    Ok(Bytes::from(out))
}

pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, Failure> {
    serde_json::from_slice(bytes).map_err(|e| Failure::bad_request(format!("{what}: {e}")))
}

/// Query string pairs, percent-decoded.
pub fn query(request: &Request<Incoming>) -> Vec<(String, String)> {
    request
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let digit = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
                match (digit(bytes[i + 1]), digit(bytes[i + 2])) {
                    (Some(high), Some(low)) => {
                        out.push(high * 16 + low);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}
