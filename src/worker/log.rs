//! `/var/log/aws-sqsd/default.log` (under the root prefix), in sqsd's line format
//! `<ISO-8601 UTC> <category>: <message>[ - <seconds.mmm>]`, e.g.
//! `http-err: 9621f014-… (1) HTTP 504 - 60.004`, so runbooks and log greps written for
//! Elastic Beanstalk keep working. The log service rotates, tails and bundles it with the
//! agent's own logs. Lines go through a bounded queue to one writer task that opens the file
//! for each batch (a rotation needs no signal); when the queue is full a line is dropped,
//! never waited for.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

const QUEUE: usize = 4096;

pub fn path(root: &Path) -> PathBuf {
    root.join("var/log/aws-sqsd/default.log")
}

#[derive(Debug, Clone)]
pub struct SqsdLog {
    lines: mpsc::Sender<String>,
    dropped: Arc<AtomicU64>,
}

impl SqsdLog {
    /// The log and its writer task (which ends when every `SqsdLog` is dropped).
    pub fn start(root: &Path) -> (Self, impl std::future::Future<Output = ()> + Send + 'static) {
        let (lines, rx) = mpsc::channel(QUEUE);
        let file = path(root);
        let log = Self {
            lines,
            dropped: Arc::new(AtomicU64::new(0)),
        };
        (log.clone(), write_lines(file, rx, log.dropped.clone()))
    }

    /// `category: message`, with the request's duration when there is one.
    pub fn line(&self, category: &str, message: &str, seconds: Option<f64>) {
        let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ");
        let mut line = format!("{now} {category}: {message}");
        if let Some(seconds) = seconds {
            line.push_str(&format!(" - {seconds:.3}"));
        }
        line.push('\n');
        if self.lines.try_send(line).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn write_lines(file: PathBuf, mut rx: mpsc::Receiver<String>, dropped: Arc<AtomicU64>) {
    let mut warned = false;
    while let Some(first) = rx.recv().await {
        let mut batch = first;
        while let Ok(more) = rx.try_recv() {
            batch.push_str(&more);
        }
        let lost = dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            batch.push_str(&format!(
                "{} log: {lost} lines dropped (the log could not keep up)\n",
                jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ")
            ));
        }
        let path = file.clone();
        let written = tokio::task::spawn_blocking(move || append(&path, batch.as_bytes())).await;
        match written {
            Ok(Ok(())) => warned = false,
            Ok(Err(error)) if !warned => {
                warned = true;
                tracing::warn!(%error, path = %file.display(), "cannot write the worker daemon's log");
            }
            _ => {}
        }
    }
}

fn append(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o644)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)?;
    file.write_all(bytes)
}
