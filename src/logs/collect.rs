//! Tail and bundle logs on request, the way Elastic Beanstalk's "Request logs" does: a tail is
//! the last lines of each file of the tail set in one text object; a bundle is a zip of every
//! current and rotated log with its path. Both are kept locally and uploaded under
//! `resources/environments/logs/{tail,bundle}/<env-id>/<instance-id>/`.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::open::{OpenError, open_log};
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
    /// Files left out, with the reason (a log replaced by a link, another user's file...).
    #[serde(default)]
    pub skipped: Vec<String>,
}

/// The tail report's text: the last `lines` lines of every file of the tail set (each opened
/// without following links, its owner checked, like every log read).
pub fn tail_text(root: &Path, sources: &[Source], lines: usize) -> String {
    sources
        .iter()
        .filter(|s| s.tail)
        .filter_map(|s| {
            let mut file = open_log(&s.path, &s.owners, false).ok()?;
            let shown = format!("/{}", relative(root, &s.path));
            Some(tail_section(
                &shown,
                &crate::fsutil::tail_of(&mut file, lines),
            ))
        })
        .collect()
}

/// One file of a bundle: where it is, its name in the zip, who may own it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleFile {
    pub path: PathBuf,
    pub name: String,
    pub owners: Vec<u32>,
}

/// Every file a bundle holds: everything under `var/log` (current and rotated) and the
/// configured logs elsewhere, with their paths relative to the root. Files under `var/log`
/// that are no known log may be owned by the agent's user or the app user (`others`).
pub fn bundle_files(
    root: &Path,
    log_dir: &Path,
    sources: &[Source],
    others: &[u32],
) -> Vec<BundleFile> {
    let mut found = Vec::new();
    walk(log_dir, &mut found);
    let mut files: Vec<BundleFile> = found
        .into_iter()
        .map(|path| {
            let owners = sources
                .iter()
                .find(|s| s.path == path)
                .map_or_else(|| others.to_vec(), |s| s.owners.clone());
            BundleFile {
                name: relative(root, &path),
                path,
                owners,
            }
        })
        .collect();
    for source in sources {
        if !files.iter().any(|f| f.path == source.path) {
            files.push(BundleFile {
                path: source.path.clone(),
                name: relative(root, &source.path),
                owners: source.owners.clone(),
            });
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files
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
        } else if !hidden {
            // Links and other odd entries too: `write_bundle` refuses them by name.
            found.push(path);
        }
    }
}

/// Writes the zip (blocking), 0600 (it holds hooks' output and the apps' stderr), counting
/// bytes read into `done`. Each file is read up to the size it had when the bundle started,
/// so a growing log stays consistent. Files refused by `open_log` (a link, another owner...)
/// are left out and returned with the reason.
pub fn write_bundle(
    files: &[BundleFile],
    out: &Path,
    done: &AtomicU64,
) -> io::Result<Vec<(String, String)>> {
    use zip::write::SimpleFileOptions;
    let part = out.with_extension("zip.part");
    let mut writer = zip::ZipWriter::new(private_file(&part)?);
    let mut buffer = vec![0u8; 256 * 1024];
    let mut refused = Vec::new();
    for entry in files {
        let file = match open_log(&entry.path, &entry.owners, false) {
            Ok(file) => file,
            Err(OpenError::Refused(why)) => {
                refused.push((entry.name.clone(), why));
                continue;
            }
            Err(OpenError::Io(_)) => continue,
        };
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let options = SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .large_file(size >= u32::MAX as u64);
        writer
            .start_file(entry.name.as_str(), options)
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
    std::fs::rename(&part, out)?;
    Ok(refused)
}

/// A new file only root can read (a leftover of a killed run is replaced, never reused).
fn private_file(path: &Path) -> io::Result<File> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    // The mode given to open() is masked by the umask: make it exactly 0600.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

/// The requests directory, 0700: tail reports and bundles hold what the logs hold.
pub fn requests_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
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
        let me = vec![rustix::process::geteuid().as_raw()];
        std::os::unix::fs::symlink("/etc/hostname", log.join("evil.log")).expect("symlink");
        let files = bundle_files(root.path(), &log, &[], &me);
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "var/log/evil.log",
                "var/log/rotated/_var_log_web.stdout.log-1.gz",
                "var/log/web.stdout.log"
            ]
        );
        let out = root.path().join("b.zip");
        let done = AtomicU64::new(0);
        let refused = write_bundle(&files, &out, &done).expect("zip");
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].0, "var/log/evil.log");
        assert_eq!(done.load(Ordering::Relaxed), 8);
        let mode = std::fs::metadata(&out).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let mut archive = zip::ZipArchive::new(File::open(&out).expect("open")).expect("zip");
        assert_eq!(archive.len(), 2, "the link is not in the bundle");
        let mut text = String::new();
        archive
            .by_name("var/log/web.stdout.log")
            .expect("entry")
            .read_to_string(&mut text)
            .expect("read");
        assert_eq!(text, "hello\n");
    }
}
