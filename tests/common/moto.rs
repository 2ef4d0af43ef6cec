//! A real `moto_server` (PyPI `moto[server]`) on a free loopback port: S3 and friends for the
//! real aws-sdk-* crates. `scripts/deps.sh test` installs it into `.venv/`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_ports, wait_for};

#[derive(Debug)]
pub struct Moto {
    child: Option<Child>,
    pub port: u16,
}

/// `MOTO_SERVER`, else the repository's `.venv/bin/moto_server`, else `moto_server` on PATH.
pub fn moto_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("MOTO_SERVER") {
        return PathBuf::from(path);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("moto_server")
}

impl Moto {
    pub fn start() -> Self {
        let port = free_ports(1)[0];
        let mut moto = Self { child: None, port };
        moto.launch();
        moto
    }

    fn launch(&mut self) {
        let child = Command::new(moto_binary())
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}); run scripts/deps.sh test",
                    moto_binary().display()
                )
            });
        self.child = Some(child);
        let port = self.port;
        wait_for("moto_server to answer", Duration::from_secs(30), || {
            super::http::get(port, "/").ok().map(|_| ())
        });
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops the server (an outage). Its in-memory state is lost.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (empty).
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// An S3 client for assertions, talking to this server.
    pub fn s3(&self) -> aws_sdk_s3::Client {
        let credentials = aws_sdk_s3::config::Credentials::new("test", "test", None, None, "tests");
        let config = aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url(self.endpoint())
            .credentials_provider(credentials)
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    pub fn create_bucket(&self, bucket: &str) {
        block_on(async {
            self.s3()
                .create_bucket()
                .bucket(bucket)
                .send()
                .await
                .expect("create bucket")
        });
    }

    pub fn put(&self, bucket: &str, key: &str, bytes: Vec<u8>) {
        block_on(async {
            self.s3()
                .put_object()
                .bucket(bucket)
                .key(key)
                .body(bytes.into())
                .send()
                .await
                .expect("put object")
        });
    }

    pub fn get(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        block_on(async {
            let output = self
                .s3()
                .get_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .ok()?;
            Some(
                output
                    .body
                    .collect()
                    .await
                    .expect("body")
                    .into_bytes()
                    .to_vec(),
            )
        })
    }

    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        block_on(async {
            let output = self
                .s3()
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .send()
                .await
                .expect("list");
            output
                .contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string))
                .collect()
        })
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs a future on a small runtime of its own (tests are synchronous).
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}
