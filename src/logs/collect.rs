//! Tail and bundle logs on request, the way Elastic Beanstalk's "Request logs" does: a tail is
//! the last lines of each file of the tail set in one text object; a bundle is a zip of every
//! current and rotated log with its path. Both are kept locally and uploaded under
//! `resources/environments/logs/{tail,bundle}/<env-id>/<instance-id>/`.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::plan::tail_section;
use super::sources::{Source, relative};

/// The answer to `POST /v1/logs/tail`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TailReport {
    pub name: String,
    /// Where the report was written on this host.
    pub path: String,
    /// The object key, when uploaded.
    pub key: Option<String>,
    pub upload_error: Option<String>,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Zipping,
    Uploading,
    Done,
    Failed,
}

/// A bundle being made, as `GET /v1/logs/bundle/<id>` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleJob {
    pub id: u64,
    pub state: JobState,
    pub files: usize,
    pub total_bytes: u64,
    pub done_bytes: u64,
    pub name: String,
    pub path: String,
    pub key: Option<String>,
    pub error: Option<String>,
}

/// The tail report's text: the last `lines` lines of every file of the tail set.
pub fn tail_text(root: &Path, sources: &[Source], lines: usize) -> String {
    sources
        .iter()
        .filter(|s| s.tail)
        .map(|s| {
            let shown = format!("/{}", relative(root, &s.path));
            tail_section(&shown, &crate::fsutil::tail_lines(&s.path, lines))
        })
        .collect()
}

/// Every file a bundle holds: everything under `var/log` (current and rotated) and the
/// configured logs elsewhere, with their paths relative to the root.
pub fn bundle_files(root: &Path, log_dir: &Path, sources: &[Source]) -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    walk(log_dir, &mut files);
    for source in sources {
        if !files.contains(&source.path) {
            files.push(source.path.clone());
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let name = relative(root, &path);
            (path, name)
        })
        .collect()
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        // Staging files of a rotation in progress are not logs yet.
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if kind.is_dir() {
            walk(&path, found);
        } else if kind.is_file() && !hidden {
            found.push(path);
        }
    }
}

/// Writes the zip (blocking), counting bytes read into `done`. Each file is read up to the
/// size it had when the bundle started, so a growing log stays consistent.
pub fn write_bundle(files: &[(PathBuf, String)], out: &Path, done: &AtomicU64) -> io::Result<()> {
    use zip::write::SimpleFileOptions;
    let part = out.with_extension("zip.part");
    let mut writer = zip::ZipWriter::new(File::create(&part)?);
    let mut buffer = vec![0u8; 256 * 1024];
    for (path, name) in files {
        let Ok(file) = File::open(path) else { continue };
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let options = SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .large_file(size >= u32::MAX as u64);
        writer
            .start_file(name.as_str(), options)
            .map_err(io::Error::other)?;
        let mut reader = file.take(size);
        loop {
            let read = reader.read(&mut buffer)?;
            if read == 0 {
                break;
            }
            writer.write_all(&buffer[..read])?;
            done.fetch_add(read as u64, Ordering::Relaxed);
        }
    }
    writer.finish().map_err(io::Error::other)?.sync_all()?;
    std::fs::rename(&part, out)
}

/// Keeps the newest `keep` files of `dir` starting with `prefix`.
pub fn prune(dir: &Path, prefix: &str, keep: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    let excess = names.len().saturating_sub(keep);
    for name in &names[..excess] {
        let _ = std::fs::remove_file(dir.join(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_hold_every_log_with_its_path() {
        let root = tempfile::tempdir().expect("tempdir");
        let log = root.path().join("var/log");
        std::fs::create_dir_all(log.join("rotated")).expect("mkdir");
        std::fs::write(log.join("web.stdout.log"), "hello\n").expect("write");
        std::fs::write(log.join("rotated/_var_log_web.stdout.log-1.gz"), "gz").expect("write");
        std::fs::write(log.join("rotated/._x-2.gz.raw"), "staging").expect("write");
        let files = bundle_files(root.path(), &log, &[]);
        let names: Vec<&str> = files.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "var/log/rotated/_var_log_web.stdout.log-1.gz",
                "var/log/web.stdout.log"
            ]
        );
        let out = root.path().join("b.zip");
        let done = AtomicU64::new(0);
        write_bundle(&files, &out, &done).expect("zip");
        assert_eq!(done.load(Ordering::Relaxed), 8);
        let mut archive = zip::ZipArchive::new(File::open(&out).expect("open")).expect("zip");
        let mut text = String::new();
        archive
            .by_name("var/log/web.stdout.log")
            .expect("entry")
            .read_to_string(&mut text)
            .expect("read");
        assert_eq!(text, "hello\n");
    }
}
