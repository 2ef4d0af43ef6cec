//! The agent-check responder: HAProxy connects to it for each server every `agent_interval`,
//! sends `environment/instance\n` (the server's `agent-send`) and reads one line back:
//! `ready`, `drain` or `maint` (HAProxy's agent protocol). So draining a batch takes no
//! reload, and HAProxy keeps its last answer while the controller is down or has not built
//! its model yet (a failed or empty agent check changes nothing; the active health checks
//! still run).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::LoadBalancer;

/// At most this many connections are answered at once; more wait in the kernel's backlog.
const MAX_OPEN: usize = 256;

pub async fn serve(listener: TcpListener, lb: Arc<LoadBalancer>, stop: CancellationToken) {
    let open = Arc::new(tokio::sync::Semaphore::new(MAX_OPEN));
    loop {
        let permit = tokio::select! {
            _ = stop.cancelled() => return,
            permit = open.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let (mut stream, _) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "agent-check responder: accept");
                    continue;
                }
            },
        };
        let lb = lb.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut request = Vec::with_capacity(128);
            let read = async {
                let mut buf = [0u8; 256];
                while !request.contains(&b'\n') && request.len() < 256 {
                    let n = stream.read(&mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    request.extend_from_slice(&buf[..n]);
                }
                Ok::<_, std::io::Error>(())
            };
            if !matches!(
                tokio::time::timeout(Duration::from_secs(2), read).await,
                Ok(Ok(()))
            ) {
                return;
            }
            let key = String::from_utf8_lossy(&request);
            // No answer at all keeps HAProxy's state for the server as it is.
            if let Some(answer) = lb.answer(key.trim()) {
                let _ = stream.write_all(format!("{answer}\n").as_bytes()).await;
            }
            let _ = stream.shutdown().await;
        });
    }
}
