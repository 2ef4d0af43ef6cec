//! Follows one log file: reads complete lines from a checkpointed offset, a byte budget per
//! poll (`lines.rs`), survives rename-and-create (the old file is read to its end) and
//! truncation, and knows the file by device + inode + a hash of its head, so a reused inode is
//! not mistaken for the old file. The file is opened without following links and checked
//! (`open.rs`): a log replaced by a link to another file is refused, not read.

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::lines::{Handle, read_lines};
use super::open::{OpenError, open_log};

const HEAD_BYTES: u64 = 1024;

/// What is persisted per file: which file it is and how far it was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub dev: u64,
    pub ino: u64,
    pub head_len: u64,
    pub head_sha256: String,
    /// Just after the last complete line handed out.
    pub offset: u64,
}

#[derive(Debug)]
pub struct Tailer {
    path: PathBuf,
    owners: Vec<u32>,
    current: Option<Handle>,
    /// Files renamed away whose writers may still append: read until released.
    old: Vec<Handle>,
    head: (u64, String),
    /// Why the file at `path` was not opened (a link, another owner...), for the event.
    refused: Option<String>,
    /// Lines cut to `lines::MAX_LINE` so far.
    pub truncated: u64,
}

impl Tailer {
    /// Opens `path`, resuming from `checkpoint` when it describes this very file.
    pub fn open(
        path: &Path,
        owners: Vec<u32>,
        checkpoint: Option<&Checkpoint>,
        start_at_end: bool,
    ) -> Self {
        let mut tailer = Self {
            path: path.to_path_buf(),
            owners,
            current: None,
            old: Vec::new(),
            head: (0, String::new()),
            refused: None,
            truncated: 0,
        };
        if let Some(file) = tailer.open_file()
            && let Ok(meta) = file.metadata()
        {
            let (dev, ino, size) = (meta.dev(), meta.ino(), meta.len());
            let resumed = checkpoint.filter(|c| {
                c.dev == dev
                    && c.ino == ino
                    && c.offset <= size
                    && head_hash(&file, c.head_len).ok().as_ref() == Some(&c.head_sha256)
            });
            let offset = match resumed {
                Some(c) => c.offset,
                None if start_at_end => size,
                None => 0,
            };
            tailer.current = Some(Handle::new(file, dev, ino, offset));
            tailer.refresh_head();
        }
        tailer
    }

    /// Opens the file at `path` (no links followed, owner checked); notes a refusal.
    fn open_file(&mut self) -> Option<File> {
        match open_log(&self.path, &self.owners, false) {
            Ok(file) => {
                self.refused = None;
                Some(file)
            }
            Err(OpenError::Refused(why)) => {
                self.refused = Some(why);
                None
            }
            Err(OpenError::Io(_)) => {
                self.refused = None;
                None
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Why the file at the path is not followed, when it was refused.
    pub fn refused(&self) -> Option<&str> {
        self.refused.as_deref()
    }

    #[cfg(test)]
    pub fn offset(&self) -> u64 {
        self.current.as_ref().map_or(0, |h| h.offset)
    }

    pub fn checkpoint(&mut self) -> Option<Checkpoint> {
        self.refresh_head();
        let current = self.current.as_ref()?;
        Some(Checkpoint {
            dev: current.dev,
            ino: current.ino,
            head_len: self.head.0,
            head_sha256: self.head.1.clone(),
            offset: current.offset,
        })
    }

    /// Appends new complete lines (old files first), about `budget` bytes of them at most, to
    /// `lines`. True when the budget ran out before the end (poll again soon).
    pub fn poll(&mut self, budget: u64, lines: &mut Vec<String>) -> io::Result<bool> {
        let mut left = budget;
        let mut more = false;
        for old in &mut self.old {
            let outcome = read_lines(old, left, false, lines)?;
            self.truncated += outcome.truncated;
            left -= outcome.bytes.min(left);
            more |= outcome.more;
        }
        // lstat: a log replaced by a link is a different file (refused when opened).
        let now = std::fs::symlink_metadata(&self.path).ok();
        let same = match (&self.current, &now) {
            (Some(h), Some(m)) => h.dev == m.dev() && h.ino == m.ino(),
            (None, None) => true,
            _ => false,
        };
        if let Some(current) = self.current.as_mut() {
            // Checked on the descriptor right before reading: a size taken earlier could be
            // passed by a concurrent append and look like a truncation.
            if current.file.metadata()?.len() < current.offset {
                // Truncated in place by someone else: start over at the new beginning.
                current.offset = 0;
                current.discarding = false;
                self.head = (0, String::new());
            }
            // A renamed-away file may still get writes: it moves to `old`, read as it grows.
            let outcome = read_lines(current, left, false, lines)?;
            self.truncated += outcome.truncated;
            left -= outcome.bytes.min(left);
            more |= outcome.more;
        }
        if !same {
            if let Some(previous) = self.current.take() {
                self.old.push(previous);
            }
            self.head = (0, String::new());
            if let Some(file) = self.open_file() {
                let meta = file.metadata()?;
                let mut handle = Handle::new(file, meta.dev(), meta.ino(), 0);
                let outcome = read_lines(&mut handle, left, false, lines)?;
                self.truncated += outcome.truncated;
                more |= outcome.more;
                self.current = Some(handle);
            }
        }
        self.refresh_head();
        Ok(more)
    }

    /// Our copytruncate is about to remove the first `cut` bytes: read everything first, and
    /// keep the start of a line that straddles the cut, so no line is lost or split. The caller
    /// caught up first (`poll` until it returns false), so what is left is small.
    pub fn before_collapse(&mut self, cut: u64, lines: &mut Vec<String>) -> io::Result<()> {
        self.poll(u64::MAX, lines)?;
        if let Some(current) = self.current.as_mut()
            && current.offset < cut
        {
            let mut head = vec![0u8; (cut - current.offset) as usize];
            let read = rustix::io::pread(&current.file, &mut head, current.offset)
                .map_err(io::Error::from)?;
            head.truncate(read);
            current.offset += read as u64;
            current.carry.extend_from_slice(&head);
        }
        Ok(())
    }

    /// The first `removed` bytes were collapsed out of the file (our copytruncate).
    pub fn collapsed(&mut self, removed: u64) {
        if let Some(current) = self.current.as_mut() {
            current.offset = current.offset.saturating_sub(removed);
        }
        self.head = (0, String::new());
        self.refresh_head();
    }

    /// Stops following the renamed-away file `(dev, ino)` after a last read of its end.
    pub fn release(&mut self, dev: u64, ino: u64, lines: &mut Vec<String>) -> io::Result<()> {
        if let Some(index) = self.old.iter().position(|h| h.dev == dev && h.ino == ino) {
            let mut handle = self.old.remove(index);
            self.truncated += read_lines(&mut handle, u64::MAX, true, lines)?.truncated;
        }
        Ok(())
    }

    /// Lets go of renamed-away files that were deleted or stayed quiet for `quiet` (someone
    /// else's rotation: its writer has moved on), after a last read.
    pub fn forget_old(&mut self, quiet: std::time::Duration, lines: &mut Vec<String>) {
        let mut kept = Vec::new();
        for mut handle in self.old.drain(..) {
            let deleted = handle.file.metadata().is_ok_and(|m| m.nlink() == 0);
            if deleted || handle.grew.elapsed() >= quiet {
                if let Ok(outcome) = read_lines(&mut handle, u64::MAX, true, lines) {
                    self.truncated += outcome.truncated;
                }
            } else {
                kept.push(handle);
            }
        }
        self.old = kept;
    }

    fn refresh_head(&mut self) {
        if self.head.0 >= HEAD_BYTES {
            return;
        }
        if let Some(current) = &self.current
            && let Ok(meta) = current.file.metadata()
        {
            let len = meta.len().min(HEAD_BYTES);
            if (len != self.head.0 || self.head.1.is_empty())
                && let Ok(hash) = head_hash(&current.file, len)
            {
                self.head = (len, hash);
            }
        }
    }
}

fn head_hash(file: &File, len: u64) -> io::Result<String> {
    let mut buffer = vec![0u8; len as usize];
    let read = rustix::io::pread(file, &mut buffer, 0).map_err(io::Error::from)?;
    if (read as u64) < len {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank"));
    }
    Ok(crate::deploy::hex(&sha2::Sha256::digest(&buffer)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn append(path: &Path, text: &str) {
        let mut file = crate::fsutil::open_append(path).expect("open");
        file.write_all(text.as_bytes()).expect("write");
    }

    fn poll(tailer: &mut Tailer) -> Vec<String> {
        let mut lines = Vec::new();
        tailer.poll(u64::MAX, &mut lines).expect("poll");
        lines
    }

    fn me() -> Vec<u32> {
        vec![rustix::process::geteuid().as_raw()]
    }

    #[test]
    fn lines_are_read_once_across_rename_and_truncate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.log");
        append(&path, "one\ntw");
        let mut tailer = Tailer::open(&path, me(), None, false);
        assert_eq!(poll(&mut tailer), ["one"]);
        append(&path, "o\n");
        assert_eq!(poll(&mut tailer), ["two"]);
        // Rename-and-create while the old writer adds one more line.
        let mut old_writer = crate::fsutil::open_append(&path).expect("open");
        std::fs::rename(&path, dir.path().join("app.log.1")).expect("rename");
        append(&path, "three\n");
        old_writer.write_all(b"late\n").expect("late write");
        assert_eq!(poll(&mut tailer), ["late", "three"]);
        old_writer.write_all(b"later\n").expect("later write");
        assert_eq!(poll(&mut tailer), ["later"]);
        // Truncated in place by someone else.
        std::fs::write(&path, "").expect("truncate");
        append(&path, "four\n");
        assert_eq!(poll(&mut tailer), ["four"]);
    }

    #[test]
    fn a_line_straddling_a_collapse_is_read_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.log");
        append(&path, "first\nsecond line\n");
        let mut tailer = Tailer::open(&path, me(), None, false);
        let mut lines = Vec::new();
        // Cut in the middle of "second line", as a block-aligned collapse would.
        tailer.before_collapse(9, &mut lines).expect("before");
        assert_eq!(lines, ["first", "second line"]);
        let rest = std::fs::read(&path).expect("read")[9..].to_vec();
        std::fs::write(&path, &rest).expect("collapse stand-in");
        tailer.collapsed(9);
        append(&path, "third\n");
        assert_eq!(poll(&mut tailer), ["third"]);
        // A partial line at the cut is carried, then completed by what follows it.
        append(&path, "four");
        let len = std::fs::metadata(&path).expect("meta").len();
        let mut lines = Vec::new();
        tailer.before_collapse(len - 2, &mut lines).expect("before");
        assert!(lines.is_empty());
        let rest = std::fs::read(&path).expect("read")[(len - 2) as usize..].to_vec();
        std::fs::write(&path, &rest).expect("collapse stand-in");
        tailer.collapsed(len - 2);
        append(&path, "th\n");
        assert_eq!(poll(&mut tailer), ["fourth"]);
    }

    #[test]
    fn checkpoints_resume_only_the_same_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.log");
        append(&path, "a\nb\n");
        let mut tailer = Tailer::open(&path, me(), None, false);
        assert_eq!(poll(&mut tailer), ["a", "b"]);
        let checkpoint = tailer.checkpoint().expect("checkpoint");
        append(&path, "c\n");
        let mut resumed = Tailer::open(&path, me(), Some(&checkpoint), false);
        assert_eq!(poll(&mut resumed), ["c"]);
        // Same path, different content (a new file, maybe on a reused inode): from the start.
        std::fs::remove_file(&path).expect("rm");
        append(&path, "x\ny\nz\n");
        let mut fresh = Tailer::open(&path, me(), Some(&checkpoint), false);
        assert_eq!(poll(&mut fresh), ["x", "y", "z"]);
        let at_end = Tailer::open(&path, me(), None, true);
        assert_eq!(at_end.offset(), 6);
    }

    #[test]
    fn a_log_replaced_by_a_link_is_refused_not_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.log");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "root only\n").expect("secret");
        append(&path, "mine\n");
        let mut tailer = Tailer::open(&path, me(), None, false);
        assert_eq!(poll(&mut tailer), ["mine"]);
        std::fs::remove_file(&path).expect("rm");
        std::os::unix::fs::symlink(&secret, &path).expect("symlink");
        assert!(poll(&mut tailer).is_empty());
        let why = tailer.refused().expect("refused");
        assert!(why.contains("app.log is a symbolic link"), "{why}");
        let fresh = Tailer::open(&path, me(), None, false);
        assert!(fresh.refused().is_some());
        assert!(fresh.current.is_none());
    }
}
