//! A small controller speaking the agent's protocol (docs/controller-link.md) on loopback: reports
//! (gzip bodies decoded), enrollment and credential rotation. It records what it receives and
//! answers from what a test sets.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{Value, json};

/// What the test controller holds and what it has received.
#[derive(Debug, Default)]
pub struct Controller {
    pub reports: Vec<Value>,
    /// When each stored report arrived.
    pub received: Vec<Instant>,
    /// Whether each stored report came gzip-encoded.
    pub gzipped: Vec<bool>,
    /// The raw (decoded) bodies of the stored reports.
    pub bodies: Vec<Vec<u8>>,
    pub desired: Option<Value>,
    pub commands: Vec<Value>,
    /// While set, every report is answered 503 and not stored.
    pub down: bool,
    /// Reports still to refuse with `503` and `Retry-After: 1`.
    pub throttle: usize,
    pub throttled_at: Vec<Instant>,
    /// The bearers a report is accepted with; empty: any.
    pub tokens: Vec<String>,
    pub unauthorized: usize,
    /// Acknowledge desired results (else they are resent).
    pub ack_desired: bool,
    pub report_after_ms: Option<u64>,
    /// Ask for one rotation in the next reply.
    pub rotate: bool,
    /// The enrollment token `POST /v1/enroll` accepts.
    pub enrollment_token: Option<String>,
    pub enrollments: Vec<Value>,
    pub rotations: usize,
    /// Secrets issued so far (`secret-1`, `secret-2`, …).
    pub issued: usize,
}

pub type Shared = Arc<Mutex<Controller>>;

pub fn start(tokens: &[&str]) -> (u16, Shared) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let state = Arc::new(Mutex::new(Controller {
        tokens: tokens.iter().map(|t| t.to_string()).collect(),
        ack_desired: true,
        ..Default::default()
    }));
    let shared = state.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let (mut length, mut authorization, mut gzip) = (0usize, None, false);
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                    break;
                }
                let (name, value) = header.split_once(':').unwrap_or(("", ""));
                match name.to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    "authorization" => authorization = Some(value.trim().to_string()),
                    "content-encoding" => gzip = value.trim() == "gzip",
                    _ => {}
                }
            }
            let mut body = vec![0u8; length];
            let _ = reader.read_exact(&mut body);
            if gzip {
                let mut plain = Vec::new();
                flate2::read::GzDecoder::new(body.as_slice())
                    .read_to_end(&mut plain)
                    .expect("a gzip body");
                body = plain;
            }
            let bearer = authorization
                .as_deref()
                .and_then(|a| a.strip_prefix("Bearer "))
                .map(str::to_string);
            let mut state = shared.lock().expect("state");
            let (status, extra, reply) = if path == "/v1/enroll" {
                enroll(&mut state, &body, bearer)
            } else if path.ends_with("/credential") {
                rotate(&mut state, bearer)
            } else {
                report(&mut state, body, bearer, gzip)
            };
            drop(state);
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra}connection: close\r\n\r\n{reply}",
                reply.len()
            );
        }
    });
    (port, state)
}

fn authorized(state: &Controller, bearer: &Option<String>) -> bool {
    state.tokens.is_empty() || bearer.as_ref().is_some_and(|b| state.tokens.contains(b))
}

fn issue(state: &mut Controller) -> String {
    state.issued += 1;
    let secret = format!("secret-{}", state.issued);
    // The old secret stays valid a little while (a report may be in flight).
    state.tokens.push(secret.clone());
    json!({ "instance_id": "i-test", "environment": "test-env", "secret": secret,
            "expires_ms": 4_102_444_800_000i64, "interval_ms": 150 })
    .to_string()
}

fn enroll(
    state: &mut Controller,
    body: &[u8],
    bearer: Option<String>,
) -> (&'static str, &'static str, String) {
    if bearer.is_none() || bearer != state.enrollment_token {
        state.unauthorized += 1;
        return ("401 Unauthorized", "", r#"{"error":"bad token"}"#.into());
    }
    state
        .enrollments
        .push(serde_json::from_slice(body).expect("enroll JSON"));
    ("200 OK", "", issue(state))
}

fn rotate(state: &mut Controller, bearer: Option<String>) -> (&'static str, &'static str, String) {
    if !authorized(state, &bearer) {
        state.unauthorized += 1;
        return ("401 Unauthorized", "", r#"{"error":"revoked"}"#.into());
    }
    state.rotations += 1;
    ("200 OK", "", issue(state))
}

fn report(
    state: &mut Controller,
    body: Vec<u8>,
    bearer: Option<String>,
    gzip: bool,
) -> (&'static str, &'static str, String) {
    if !authorized(state, &bearer) {
        state.unauthorized += 1;
        return (
            "401 Unauthorized",
            "",
            r#"{"error":"unknown credential"}"#.into(),
        );
    }
    if state.down {
        return ("503 Service Unavailable", "", "{}".into());
    }
    if state.throttle > 0 {
        state.throttle -= 1;
        state.throttled_at.push(Instant::now());
        return ("503 Service Unavailable", "retry-after: 1\r\n", "{}".into());
    }
    let report: Value = serde_json::from_slice(&body).expect("report is JSON");
    let events_ack = report["events"]
        .as_array()
        .and_then(|e| e.last())
        .map(|e| e["id"].clone());
    let ids = |key: &str, field: &str| -> Vec<Value> {
        report[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| r[field].clone())
            .collect()
    };
    let commands_ack = ids("command_results", "id");
    let desired_ack = if state.ack_desired {
        ids("desired_results", "serial")
    } else {
        Vec::new()
    };
    state.reports.push(report);
    state.received.push(Instant::now());
    state.gzipped.push(gzip);
    state.bodies.push(body);
    let reply = json!({
        "events_ack": events_ack,
        "commands_ack": commands_ack,
        "desired_results_ack": desired_ack,
        "desired": state.desired,
        "commands": state.commands,
        "report_after_ms": state.report_after_ms,
        "rotate_credential": std::mem::take(&mut state.rotate),
    });
    ("200 OK", "", reply.to_string())
}
