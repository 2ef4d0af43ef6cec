//! The operator commands' HTTP client: the admin token from its file (never on argv), JSON in
//! and out, the controller's `{"error": …}` turned into the message.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::Remote;

#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    url: String,
    token: String,
}

#[derive(Debug)]
pub enum ClientError {
    /// The controller answered with an error.
    Api { status: u16, message: String },
    /// It could not be reached, or the setup is wrong.
    Unavailable(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Api { status, message } => write!(f, "{message} (HTTP {status})"),
            ClientError::Unavailable(message) => f.write_str(message),
        }
    }
}

impl Client {
    pub fn new(remote: &Remote, data_dir: &Path) -> Result<Self, ClientError> {
        let token_file = remote
            .token_file
            .clone()
            .unwrap_or_else(|| data_dir.join("admin.token"));
        let token = std::fs::read_to_string(&token_file)
            .map_err(|e| {
                ClientError::Unavailable(format!(
                    "admin token {}: {e} (pass --token-file, or --data for the controller's data directory)",
                    token_file.display()
                ))
            })?
            .trim()
            .to_string();
        let mut builder = reqwest::Client::builder().timeout(std::time::Duration::from_secs(300));
        if let Some(ca) = &remote.ca_file {
            let pem = std::fs::read(ca).map_err(|e| {
                ClientError::Unavailable(format!("--ca-file {}: {e}", ca.display()))
            })?;
            let certificate = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                ClientError::Unavailable(format!("--ca-file {}: {e}", ca.display()))
            })?;
            builder = builder.add_root_certificate(certificate);
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::Unavailable(format!("HTTP client: {e}")))?;
        Ok(Self {
            http,
            url: remote.url.trim_end_matches('/').to_string(),
            token,
        })
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(self.http.get(self.at(path))).await
    }

    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<T, ClientError> {
        self.send(self.http.post(self.at(path)).json(body)).await
    }

    pub async fn put<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<T, ClientError> {
        self.send(self.http.put(self.at(path)).json(body)).await
    }

    pub async fn put_zip<T: DeserializeOwned>(
        &self,
        path: &str,
        zip: Vec<u8>,
    ) -> Result<T, ClientError> {
        self.send(
            self.http
                .put(self.at(path))
                .header(reqwest::header::CONTENT_TYPE, "application/zip")
                .body(zip),
        )
        .await
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(self.http.delete(self.at(path))).await
    }

    /// Fetches a signed URL the controller handed out (no bearer: the signature is the
    /// credential, and the URL may point at the controller's public address).
    pub async fn download(&self, url: &str) -> Result<Vec<u8>, ClientError> {
        let unavailable = |e: reqwest::Error| ClientError::Unavailable(format!("{url}: {e}"));
        let response = self.http.get(url).send().await.map_err(unavailable)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(unavailable)?;
        if !status.is_success() {
            return Err(ClientError::Api {
                status: status.as_u16(),
                message: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
            });
        }
        Ok(bytes.to_vec())
    }

    fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| ClientError::Unavailable(format!("{}: {e}", self.url)))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| {
            ClientError::Unavailable(format!("{}: reading the answer: {e}", self.url))
        })?;
        if !status.is_success() {
            let message = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(200).collect());
            return Err(ClientError::Api {
                status: status.as_u16(),
                message,
            });
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Unavailable(format!("{}: unexpected answer: {e}", self.url)))
    }
}

/// A directory packed as a zip (in memory), as `eb deploy` packs the project.
pub fn zip_directory(dir: &Path) -> Result<Vec<u8>, String> {
    use std::io::Write;
    let mut buffer = std::io::Cursor::new(Vec::new());
    let mut writer = zip::ZipWriter::new(&mut buffer);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&current)
            .map_err(|e| format!("{}: {e}", current.display()))?
            .filter_map(Result::ok)
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let relative = path
                .strip_prefix(dir)
                .map_err(|e| e.to_string())?
                .to_string_lossy()
                .replace('\\', "/");
            let kind = entry
                .file_type()
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if kind.is_dir() {
                writer
                    .add_directory(format!("{relative}/"), options)
                    .map_err(|e| e.to_string())?;
                stack.push(path);
            } else if kind.is_file() {
                let mode = std::os::unix::fs::PermissionsExt::mode(
                    &entry.metadata().map_err(|e| e.to_string())?.permissions(),
                );
                writer
                    .start_file(relative, options.unix_permissions(mode & 0o777))
                    .map_err(|e| e.to_string())?;
                let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                writer.write_all(&bytes).map_err(|e| e.to_string())?;
            } else {
                return Err(format!(
                    "{}: a symlink or special file; the CLI packs directories and regular files \
                     only (zip the bundle yourself to keep links)",
                    path.display()
                ));
            }
        }
    }
    writer.finish().map_err(|e| e.to_string())?;
    Ok(buffer.into_inner())
}
