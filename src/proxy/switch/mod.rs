//! The traffic switch: which app port nginx proxies to, changed at run time through a unix
//! socket that nginx's Lua module serves (`conf.rs`), so that a cutover does not reload nginx.
//! A reload closes every client keep-alive connection once its request in flight is answered,
//! and the client's next request on it fails; the switch keeps them open.
//!
//! Where the Lua module is missing (`detect.rs`), the agent falls back to writing the port in
//! the config and reloading, and says so.

pub mod conf;
mod detect;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde::{Deserialize, Serialize};
use tokio::net::UnixStream;

pub use conf::RuntimeSwitch;
pub use detect::detect;

/// How this host's nginx changes the app port at a cutover (`hostmanager status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum SwitchMode {
    /// In nginx's memory, no reload: keep-alive clients see nothing.
    Runtime,
    /// By reloading nginx: each keep-alive client connection fails one request.
    Reload { reason: String },
}

/// What the switch socket answers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SwitchState {
    pub port: Option<u16>,
    /// Requests proxied to each app port and not yet finished.
    pub in_flight: BTreeMap<u16, u64>,
}

impl SwitchState {
    /// `port 18501` then `inflight 18500 3` lines.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut state = SwitchState::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["port", "none"] => state.port = None,
                ["port", port] => state.port = Some(number(port, line)?),
                ["inflight", port, count] => {
                    // A worker can decrement past what this master counted after a restart.
                    let count: i64 = number(count, line)?;
                    state
                        .in_flight
                        .insert(number(port, line)?, count.max(0) as u64);
                }
                _ => return Err(format!("unexpected line from the switch: {line:?}")),
            }
        }
        Ok(state)
    }

    pub fn in_flight_on(&self, port: u16) -> u64 {
        self.in_flight.get(&port).copied().unwrap_or(0)
    }
}

fn number<T: std::str::FromStr>(word: &str, line: &str) -> Result<T, String> {
    word.parse()
        .map_err(|_| format!("unexpected line from the switch: {line:?}"))
}

/// Talks to nginx's switch socket.
#[derive(Debug, Clone)]
pub struct SwitchClient {
    socket: PathBuf,
}

const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

impl SwitchClient {
    pub fn new(socket: &Path) -> Self {
        Self {
            socket: socket.to_path_buf(),
        }
    }

    pub async fn read(&self) -> Result<SwitchState, String> {
        self.send(hyper::Method::GET, Vec::new()).await
    }

    /// Every request from now on goes to `port`; returns the state after the change.
    pub async fn set(&self, port: u16) -> Result<SwitchState, String> {
        let state = self
            .send(hyper::Method::PUT, port.to_string().into_bytes())
            .await?;
        match state.port {
            Some(now) if now == port => Ok(state),
            other => Err(format!(
                "nginx's switch answered port {other:?} after being set to {port}"
            )),
        }
    }

    async fn send(&self, method: hyper::Method, body: Vec<u8>) -> Result<SwitchState, String> {
        let socket = self.socket.display();
        let exchange = async {
            let stream = UnixStream::connect(&self.socket)
                .await
                .map_err(|e| format!("{socket}: {e}"))?;
            let io = hyper_util::rt::TokioIo::new(stream);
            let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|e| format!("{socket}: {e}"))?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            let request = hyper::Request::builder()
                .method(method)
                .uri(conf::SWITCH_URI)
                .header(hyper::header::HOST, "hostmanager")
                .body(Full::new(Bytes::from(body)))
                .map_err(|e| e.to_string())?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| format!("{socket}: {e}"))?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("{socket}: {e}"))?
                .to_bytes();
            let text = String::from_utf8_lossy(&bytes);
            if !status.is_success() {
                return Err(format!("{socket}: HTTP {status}: {}", text.trim()));
            }
            SwitchState::parse(&text)
        };
        tokio::time::timeout(ANSWER_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| Err(format!("{socket}: no answer within {ANSWER_TIMEOUT:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_switch_answer_reads_as_a_port_and_counts() {
        let state =
            SwitchState::parse("port 18501\ninflight 18500 3\ninflight 18501 0\n").expect("parse");
        assert_eq!(state.port, Some(18501));
        assert_eq!(state.in_flight_on(18500), 3);
        assert_eq!(state.in_flight_on(18501), 0);
        assert_eq!(state.in_flight_on(9), 0);
    }

    #[test]
    fn an_unset_port_and_a_negative_count_are_read_safely() {
        let state = SwitchState::parse("port none\ninflight 18500 -1\n").expect("parse");
        assert_eq!(state.port, None);
        assert_eq!(state.in_flight_on(18500), 0);
    }

    #[test]
    fn anything_else_is_an_error_that_quotes_the_line() {
        let error = SwitchState::parse("port 18501\n<html>").expect_err("html");
        assert!(error.contains("<html>"), "{error}");
        let error = SwitchState::parse("port 99999").expect_err("not a port");
        assert!(error.contains("99999"), "{error}");
    }
}
