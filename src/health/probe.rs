//! One HTTP health check: GET a path on a loopback address, with a timeout. Any 2xx or 3xx
//! answer is healthy, as a load balancer's default matcher would accept.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};

/// Bytes of a health answer's body that are read (and dropped, never kept): a slow body still
/// counts against the timeout, an endless one does not hold the check or memory.
pub const MAX_BODY_BYTES: usize = 64 << 10;
use hyper::body::Bytes;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio::time::Instant;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeResult {
    pub ok: bool,
    pub status: Option<u16>,
    pub latency_ms: u64,
    /// Why the check failed, in words a person can act on.
    pub error: Option<String>,
}

/// The agent's own checks.
pub const AGENT_USER_AGENT: &str = "hostmanager-health/1";
/// Marks every check of the agent: nginx leaves them out of the healthd log (they are not
/// traffic), whatever their User-Agent.
pub const CHECK_HEADER: &str = "x-hostmanager-check";
/// What Elastic Beanstalk's load balancer sends: overrides that treat its health checker
/// differently (e.g. exempt it from an HTTPS redirect) see the check as on EB.
pub const ELB_USER_AGENT: &str = "ELB-HealthChecker/2.0";

/// GETs `path` from `addr` and waits at most `timeout` for the whole answer.
pub async fn probe(addr: SocketAddr, path: &str, timeout: Duration) -> ProbeResult {
    probe_as(addr, path, timeout, AGENT_USER_AGENT).await
}

/// `probe`, sending `user_agent`.
pub async fn probe_as(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
    user_agent: &str,
) -> ProbeResult {
    let started = Instant::now();
    let outcome = tokio::time::timeout(timeout, request(addr, path, user_agent)).await;
    let latency_ms = started.elapsed().as_millis() as u64;
    match outcome {
        Ok(Ok(status)) => {
            let ok = (200..400).contains(&status);
            let error = (!ok).then(|| format!("HTTP {status}"));
            ProbeResult {
                ok,
                status: Some(status),
                latency_ms,
                error,
            }
        }
        Ok(Err(error)) => ProbeResult {
            ok: false,
            status: None,
            latency_ms,
            error: Some(error),
        },
        Err(_) => ProbeResult {
            ok: false,
            status: None,
            latency_ms,
            error: Some(format!("timed out after {timeout:?}")),
        },
    }
}

async fn request(addr: SocketAddr, path: &str, user_agent: &str) -> Result<u16, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|error| describe_io(&error))?;
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, "localhost")
        .header(hyper::header::USER_AGENT, user_agent)
        // nginx leaves requests carrying it out of the healthd log (`healthd_logformat.conf`).
        .header(CHECK_HEADER, "1")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    // Read the body so a slow body counts against the timeout too, up to the cap.
    let mut body = response.into_body();
    let mut read = 0;
    while read < MAX_BODY_BYTES {
        match body.frame().await {
            Some(frame) => {
                let frame = frame.map_err(|e| e.to_string())?;
                read += frame.data_ref().map_or(0, |data| data.len());
            }
            None => break,
        }
    }
    Ok(status)
}

fn describe_io(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        std::io::ErrorKind::ConnectionReset => "connection reset".to_string(),
        _ => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_port_reads_as_connection_refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let result = probe(addr, "/", Duration::from_secs(2)).await;
        assert!(!result.ok);
        assert_eq!(result.error.as_deref(), Some("connection refused"));
    }

    /// A server that answers one request with `head`, then (`endless`) a body that never ends.
    async fn answer_once(head: &'static [u8], endless: bool) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut buffer = [0u8; 1024];
            let _ = socket.read(&mut buffer).await;
            let _ = socket.write_all(head).await;
            let chunk = vec![b'x'; 16 << 10];
            // Until the probe hangs up.
            while endless && socket.write_all(&chunk).await.is_ok() {}
        });
        addr
    }

    #[tokio::test]
    async fn an_endless_body_is_read_only_up_to_the_cap() {
        let addr = answer_once(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n", true).await;
        let result = probe(addr, "/health", Duration::from_secs(3)).await;
        assert_eq!((result.ok, result.status), (true, Some(200)), "{result:?}");
    }

    #[tokio::test]
    async fn a_status_is_read_from_a_real_server() {
        let addr = answer_once(
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
            false,
        )
        .await;
        let result = probe(addr, "/health", Duration::from_secs(2)).await;
        assert!(!result.ok);
        assert_eq!(result.status, Some(503));
        assert_eq!(result.error.as_deref(), Some("HTTP 503"));
    }
}
