//! The CLI's side of the control socket.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

use super::api::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the hostmanager agent is not running (no control socket answers at {0})")]
    NotRunning(PathBuf),
    #[error("permission denied on {0}: the control socket is for root and the agent's user")]
    Denied(PathBuf),
    #[error("control socket {path}: {message}")]
    Transport { path: PathBuf, message: String },
    #[error("{0}")]
    Api(String),
}

#[derive(Debug, Clone)]
pub struct ControlClient {
    socket: PathBuf,
}

impl ControlClient {
    pub fn new(socket: &Path) -> Self {
        Self {
            socket: socket.to_path_buf(),
        }
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(hyper::Method::GET, path, None).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let bytes = serde_json::to_vec(body).map_err(|e| ClientError::Api(e.to_string()))?;
        self.send(hyper::Method::POST, path, Some(bytes)).await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        method: hyper::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        let transport = |message: String| ClientError::Transport {
            path: self.socket.clone(),
            message,
        };
        let stream =
            UnixStream::connect(&self.socket)
                .await
                .map_err(|error| match error.kind() {
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                        ClientError::NotRunning(self.socket.clone())
                    }
                    std::io::ErrorKind::PermissionDenied => {
                        ClientError::Denied(self.socket.clone())
                    }
                    _ => transport(error.to_string()),
                })?;
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| transport(e.to_string()))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "hostmanager")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| transport(e.to_string()))?;
        let response = sender.send_request(request).await.map_err(|error| {
            if error.is_incomplete_message() || error.is_closed() {
                ClientError::Denied(self.socket.clone())
            } else {
                transport(error.to_string())
            }
        })?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| transport(e.to_string()))?
            .to_bytes();
        if !status.is_success() {
            let message = serde_json::from_slice::<ApiError>(&bytes)
                .map(|e| e.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
            return Err(ClientError::Api(message));
        }
        serde_json::from_slice(&bytes).map_err(|e| transport(format!("unexpected answer: {e}")))
    }
}
