//! Rotation that loses nothing. A log is first staged as an uncompressed `.raw` file in
//! `var/log/rotated/`, then compressed to its final `<path_key>-<epoch>.gz` name (fsync, rename).
//!
//! - copytruncate (writers that keep an O_APPEND descriptor): copy whole blocks from the head
//!   to a `.head` file, then FALLOC_FL_COLLAPSE_RANGE them out of the log in one syscall, so
//!   bytes appended meanwhile stay, then rename `.head` to `.raw`. An intent record written
//!   before the collapse tells a restarted agent whether it happened; a `.head` without an
//!   intent is an interrupted copy and is dropped.
//! - rename (writers that reopen by path): rename to the `.raw`, create the new file, signal the
//!   writer (nginx: USR1) and compress once no process holds the old file any more.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::compress::Staged;
use super::copy::{append_rest, copy_head, hash_range};
use super::open::{open_log, open_staged};
use super::plan::{collapse_length, next_epoch, path_key, rotated_name};
use super::sources::{Reopen, RotateMode, Source};
use super::tailer::Tailer;
use crate::fsutil::{read_json, write_json_atomic};
use crate::proxy::NginxRunner;

#[derive(Debug, Default, Serialize, Deserialize)]
struct RotationState {
    logs: BTreeMap<String, LogRotation>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct LogRotation {
    last_ms: i64,
    last_epoch: Option<i64>,
}

/// Written before a collapse, removed after: tells a restarted agent whether the copied head
/// is still in the live file.
#[derive(Debug, Serialize, Deserialize)]
struct Intent {
    raw: PathBuf,
    source: PathBuf,
    dev: u64,
    ino: u64,
    cut: u64,
    size_before: u64,
    head_before: String,
    head_after: String,
}

#[derive(Debug)]
pub struct Rotator {
    dir: PathBuf,
    state_path: PathBuf,
    intent_path: PathBuf,
    state: RotationState,
    nginx: NginxRunner,
    /// Set when this filesystem refused FALLOC_FL_COLLAPSE_RANGE (plain truncate is used).
    pub collapse_unsupported: bool,
}

impl Rotator {
    pub fn open(dir: PathBuf, state_dir: &Path, nginx: NginxRunner) -> io::Result<Self> {
        fs::create_dir_all(&dir)?;
        fs::create_dir_all(state_dir)?;
        let state_path = state_dir.join("rotation.json");
        Ok(Self {
            state: read_json(&state_path)?.unwrap_or_default(),
            dir,
            state_path,
            intent_path: state_dir.join("rotation-intent.json"),
            nginx,
            collapse_unsupported: false,
        })
    }

    /// When `relative` was last rotated; a log seen for the first time starts its clock now.
    pub fn last_rotated_ms(&mut self, relative: &str, now_ms: i64) -> i64 {
        if let Some(known) = self.state.logs.get_mut(relative) {
            // The wall clock went back past the last rotation: count the interval from now,
            // not from a time that would not come round again until the clock caught up.
            known.last_ms = known.last_ms.min(now_ms);
            return known.last_ms;
        }
        let first = LogRotation {
            last_ms: now_ms,
            last_epoch: None,
        };
        self.state.logs.insert(relative.to_string(), first);
        // Persisted, so an agent restarted more often than the interval still rotates by age.
        if let Err(error) = write_json_atomic(&self.state_path, &self.state, 0o600) {
            tracing::warn!(%error, "cannot save {}", self.state_path.display());
        }
        now_ms
    }

    /// Finishes what a killed agent left: resolves a collapse intent, drops partial `.gz`
    /// files, and returns the staged files still to compress.
    pub fn recover(&mut self, reopen_timeout: Duration) -> io::Result<Vec<Staged>> {
        if let Some(intent) = read_json::<Intent>(&self.intent_path)? {
            let head = head_path(&intent.raw);
            if collapsed(&intent) {
                if head.exists() {
                    fs::rename(&head, &intent.raw)?;
                }
            } else {
                // The head is still in the live file: the copy would duplicate it.
                let _ = fs::remove_file(&head);
            }
            fs::remove_file(&self.intent_path)?;
        }
        let mut staged = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            let path = self.dir.join(&name);
            if name.starts_with('.') && (name.ends_with(".part") || name.ends_with(".head")) {
                // A compression or a copy that was cut short; redone from the source.
                fs::remove_file(&path)?;
            } else if let Some(final_name) =
                name.strip_prefix('.').and_then(|n| n.strip_suffix(".raw"))
            {
                let final_path = self.dir.join(final_name);
                if final_path.exists() {
                    fs::remove_file(&path)?;
                    continue;
                }
                let meta = fs::metadata(&path)?;
                let wait_for = Some((meta.dev(), meta.ino(), Instant::now() + reopen_timeout));
                staged.push(Staged::new(&path, &final_path, Path::new(""), wait_for));
            }
        }
        Ok(staged)
    }

    /// Rotates `source` now. `tailer` (when watched) is read to the end first and adjusted.
    /// `None` when there is nothing to cut yet (less than one filesystem block).
    pub fn rotate(
        &mut self,
        source: &Source,
        mode: RotateMode,
        tailer: Option<&mut Tailer>,
        lines: &mut Vec<String>,
        reopen_timeout: Duration,
    ) -> io::Result<Option<Staged>> {
        let mut tailer = tailer;
        if let Some(tailer) = tailer.as_deref_mut() {
            // The caller caught the tailer up: this reads what was written since.
            tailer.poll(u64::MAX, lines)?;
        }
        let now = jiff::Timestamp::now();
        let (raw, final_path) = self.allocate(&source.relative, now.as_second())?;
        let staged = match mode {
            RotateMode::CopyTruncate => {
                self.copytruncate(source, tailer, &raw, &final_path, lines)?
            }
            RotateMode::Rename(reopen) => {
                match self.rename(source, reopen, &raw, &final_path, reopen_timeout) {
                    // Another filesystem: rename cannot move it, copy it instead.
                    Err(error) if error.raw_os_error() == Some(nix::libc::EXDEV) => {
                        self.copytruncate(source, tailer, &raw, &final_path, lines)?
                    }
                    other => other?,
                }
            }
        };
        if staged.is_some() {
            let entry = self.state.logs.entry(source.relative.clone()).or_default();
            entry.last_ms = now.as_millisecond();
            write_json_atomic(&self.state_path, &self.state, 0o600)?;
        }
        Ok(staged)
    }

    /// Reserves the next name of `relative` (persisted first, so a crash never reuses it).
    fn allocate(&mut self, relative: &str, now_secs: i64) -> io::Result<(PathBuf, PathBuf)> {
        let key = path_key(relative);
        let entry = self.state.logs.entry(relative.to_string()).or_default();
        let mut epoch = next_epoch(now_secs, entry.last_epoch);
        loop {
            let name = rotated_name(&key, epoch);
            let final_path = self.dir.join(&name);
            let raw = self.dir.join(format!(".{name}.raw"));
            if !final_path.exists() && !raw.exists() {
                entry.last_epoch = Some(epoch);
                write_json_atomic(&self.state_path, &self.state, 0o600)?;
                return Ok((raw, final_path));
            }
            epoch += 1;
        }
    }

    fn copytruncate(
        &mut self,
        source: &Source,
        mut tailer: Option<&mut Tailer>,
        raw: &Path,
        final_path: &Path,
        lines: &mut Vec<String>,
    ) -> io::Result<Option<Staged>> {
        // Never through a link, never a file the log's writer does not own: the collapse below
        // cuts the file's head.
        let file = open_log(&source.path, &source.owners, true)?;
        let meta = file.metadata()?;
        let size = meta.len();
        let cut = collapse_length(size, meta.blksize());
        if cut == 0 {
            return Ok(None);
        }
        let head = head_path(raw);
        copy_head(&file, cut, &head)?;
        let intent = Intent {
            raw: raw.to_path_buf(),
            source: source.path.clone(),
            dev: meta.dev(),
            ino: meta.ino(),
            cut,
            size_before: size,
            head_before: hash_range(&file, 0, size.min(4096))?,
            head_after: hash_range(&file, cut, (size - cut).min(4096))?,
        };
        write_json_atomic(&self.intent_path, &intent, 0o600)?;
        if let Some(tailer) = tailer.as_deref_mut() {
            tailer.before_collapse(cut, lines)?;
        }
        let removed = match rustix::fs::fallocate(
            &file,
            rustix::fs::FallocateFlags::COLLAPSE_RANGE,
            0,
            cut,
        ) {
            Ok(()) => cut,
            Err(errno) if errno == rustix::io::Errno::OPNOTSUPP => {
                // Classic copytruncate: whatever is written between the copy and the truncate
                // is lost. Only on filesystems without collapse (tmpfs, nfs); reported once.
                self.collapse_unsupported = true;
                append_rest(&file, cut, &head)?;
                file.set_len(0)?;
                u64::MAX
            }
            Err(errno) => {
                let _ = fs::remove_file(&head);
                let _ = fs::remove_file(&self.intent_path);
                return Err(errno.into());
            }
        };
        if let Some(tailer) = tailer {
            tailer.collapsed(removed);
        }
        fs::rename(&head, raw)?;
        fs::remove_file(&self.intent_path)?;
        Ok(Some(Staged::new(raw, final_path, &source.path, None)))
    }

    fn rename(
        &mut self,
        source: &Source,
        reopen: Reopen,
        raw: &Path,
        final_path: &Path,
        reopen_timeout: Duration,
    ) -> io::Result<Option<Staged>> {
        let meta = open_log(&source.path, &source.owners, false)?.metadata()?;
        if meta.len() == 0 {
            return Ok(None);
        }
        fs::rename(&source.path, raw)?;
        let moved = fs::symlink_metadata(raw)?;
        if (moved.dev(), moved.ino()) != (meta.dev(), meta.ino()) {
            // Replaced between the check and the rename (only possible in a directory someone
            // else can write): drop what was moved, without reading it.
            fs::remove_file(raw)?;
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} was replaced while it was being rotated",
                    source.path.display()
                ),
            ));
        }
        // The new file keeps the old one's owner and mode, so the writer can open it.
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(meta.mode() & 0o7777)
            .open(&source.path)
        {
            Ok(file) => {
                let _ = std::os::unix::fs::fchown(&file, Some(meta.uid()), Some(meta.gid()));
            }
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(error),
        }
        if reopen == Reopen::NginxUsr1
            && let Some(master) = self.nginx.master()
        {
            let _ = self.nginx.signal(master, nix::sys::signal::Signal::SIGUSR1);
        }
        let wait_for = Some((meta.dev(), meta.ino(), Instant::now() + reopen_timeout));
        Ok(Some(Staged::new(raw, final_path, &source.path, wait_for)))
    }
}

/// Whether the collapse recorded in `intent` happened. When the evidence is ambiguous (a log
/// repeating itself), assume it did: a duplicated head is better than a lost one.
fn collapsed(intent: &Intent) -> bool {
    let Ok(file) = open_staged(&intent.source) else {
        return true;
    };
    let Ok(meta) = file.metadata() else {
        return true;
    };
    if meta.dev() != intent.dev || meta.ino() != intent.ino || meta.len() < intent.size_before {
        return true;
    }
    let before_len = intent.size_before.min(4096);
    let now = hash_range(&file, 0, before_len).unwrap_or_default();
    now != intent.head_before || now == intent.head_after
}

fn head_path(raw: &Path) -> PathBuf {
    raw.with_extension("head")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::io::Read;

    /// A rotator over `dir`, and a 3-block log whose first two blocks are being rotated.
    fn interrupted(dir: &Path) -> (Rotator, PathBuf, Intent) {
        let rotated = dir.join("rotated");
        let nginx = NginxRunner::new("/usr/sbin/nginx".into(), dir.join("nginx"));
        let rotator = Rotator::open(rotated.clone(), &dir.join("state"), nginx).expect("open");
        let log = dir.join("app.log");
        let text: String = (0..1000).map(|n| format!("line {n:05}\n")).collect();
        fs::write(&log, &text).expect("write log");
        let file = File::open(&log).expect("open log");
        let meta = file.metadata().expect("meta");
        let cut = collapse_length(meta.len(), meta.blksize());
        let raw = rotated.join("._app.log-1.gz.raw");
        fs::write(head_path(&raw), &text.as_bytes()[..cut as usize]).expect("head");
        let intent = Intent {
            raw,
            source: log,
            dev: meta.dev(),
            ino: meta.ino(),
            cut,
            size_before: meta.len(),
            head_before: hash_range(&file, 0, meta.len().min(4096)).expect("hash"),
            head_after: hash_range(&file, cut, (meta.len() - cut).min(4096)).expect("hash"),
        };
        write_json_atomic(&rotator.intent_path, &intent, 0o600).expect("intent");
        (rotator, dir.join("rotated/_app.log-1.gz"), intent)
    }

    #[test]
    fn a_clock_set_back_restarts_the_interval_from_now() {
        let dir = tempfile::tempdir().expect("tempdir");
        let nginx = NginxRunner::new("/usr/sbin/nginx".into(), dir.path().join("nginx"));
        let mut rotator =
            Rotator::open(dir.path().join("rotated"), &dir.path().join("state"), nginx)
                .expect("open");
        let day = 86_400_000;
        assert_eq!(rotator.last_rotated_ms("app.log", 10 * day), 10 * day);
        // Two days back: the last rotation is not in the future.
        assert_eq!(rotator.last_rotated_ms("app.log", 8 * day), 8 * day);
        // Forwards again: the interval counts from the earlier time, so the log is due.
        assert_eq!(rotator.last_rotated_ms("app.log", 9 * day), 8 * day);
    }

    #[test]
    fn a_kill_before_the_collapse_drops_the_copy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut rotator, _, intent) = interrupted(dir.path());
        let staged = rotator.recover(Duration::ZERO).expect("recover");
        assert!(
            staged.is_empty(),
            "the head is still in the log: nothing to publish"
        );
        assert!(!head_path(&intent.raw).exists());
        assert!(!rotator.intent_path.exists());
    }

    #[test]
    fn a_kill_after_the_collapse_keeps_the_copy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut rotator, final_path, intent) = interrupted(dir.path());
        let file = OpenOptions::new()
            .write(true)
            .open(&intent.source)
            .expect("open");
        rustix::fs::fallocate(
            &file,
            rustix::fs::FallocateFlags::COLLAPSE_RANGE,
            0,
            intent.cut,
        )
        .expect("collapse (ext4/xfs)");
        let staged = rotator.recover(Duration::ZERO).expect("recover");
        assert_eq!(staged.len(), 1);
        assert_eq!(staged[0].raw, intent.raw);
        assert_eq!(staged[0].final_path, final_path);
        crate::logs::compress::compress(&staged[0]).expect("compress");
        let mut text = String::new();
        flate2::read::GzDecoder::new(File::open(&final_path).expect("gz"))
            .read_to_string(&mut text)
            .expect("gunzip");
        text.push_str(&fs::read_to_string(&intent.source).expect("log"));
        let expected: String = (0..1000).map(|n| format!("line {n:05}\n")).collect();
        assert_eq!(text, expected, "rotated + live = the whole log, once");
    }
}
