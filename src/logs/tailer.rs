//! Follows one log file: reads complete lines from a checkpointed offset, survives
//! rename-and-create (the old file is read to its end) and truncation, and knows the file by
//! device + inode + a hash of its head, so a reused inode is not mistaken for the old file.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::Digest;

const HEAD_BYTES: u64 = 1024;
const CHUNK: usize = 256 * 1024;
/// A "line" this long without a newline is cut, so one runaway writer cannot eat memory.
const MAX_PARTIAL: usize = 64 * 1024;

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
struct Handle {
    file: File,
    dev: u64,
    ino: u64,
    offset: u64,
    /// Start of a line whose bytes were cut from the file's head: the rest follows at 0.
    carry: Vec<u8>,
    /// When this file last grew (renamed-away files are let go once they stay quiet).
    grew: std::time::Instant,
}

#[derive(Debug)]
pub struct Tailer {
    path: PathBuf,
    current: Option<Handle>,
    /// Files renamed away whose writers may still append: read until released.
    old: Vec<Handle>,
    head: (u64, String),
}

impl Tailer {
    /// Opens `path`, resuming from `checkpoint` when it describes this very file.
    pub fn open(path: &Path, checkpoint: Option<&Checkpoint>, start_at_end: bool) -> Self {
        let mut tailer = Self {
            path: path.to_path_buf(),
            current: None,
            old: Vec::new(),
            head: (0, String::new()),
        };
        if let Ok(file) = File::open(path)
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
            tailer.head = (0, String::new());
            tailer.current = Some(Handle {
                file,
                dev,
                ino,
                offset,
                carry: Vec::new(),
                grew: std::time::Instant::now(),
            });
            tailer.refresh_head();
        }
        tailer
    }

    pub fn path(&self) -> &Path {
        &self.path
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

    /// Appends every new complete line (old files first) to `lines`.
    pub fn poll(&mut self, lines: &mut Vec<String>) -> io::Result<()> {
        for old in &mut self.old {
            read_lines(old, lines, false)?;
        }
        let now = std::fs::metadata(&self.path).ok();
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
                self.head = (0, String::new());
            }
            // A renamed-away file may still get writes: it moves to `old`, read as it grows.
            read_lines(current, lines, false)?;
        }
        if !same {
            if let Some(previous) = self.current.take() {
                self.old.push(previous);
            }
            if let Ok(file) = File::open(&self.path) {
                let meta = file.metadata()?;
                self.current = Some(Handle {
                    file,
                    dev: meta.dev(),
                    ino: meta.ino(),
                    offset: 0,
                    carry: Vec::new(),
                    grew: std::time::Instant::now(),
                });
                self.head = (0, String::new());
                if let Some(current) = self.current.as_mut() {
                    read_lines(current, lines, false)?;
                }
            }
        }
        self.refresh_head();
        Ok(())
    }

    /// Our copytruncate is about to remove the first `cut` bytes: read everything first, and
    /// keep the start of a line that straddles the cut, so no line is lost or split.
    pub fn before_collapse(&mut self, cut: u64, lines: &mut Vec<String>) -> io::Result<()> {
        self.poll(lines)?;
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
            read_lines(&mut handle, lines, true)?;
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
                let _ = read_lines(&mut handle, lines, true);
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

/// Reads complete lines from `handle.offset`; at the end of a file nobody will write to again
/// (`last`), a final unterminated line counts too. The offset only ever covers complete lines,
/// so a partial line is read again (whole) next time, also after a restart.
fn read_lines(handle: &mut Handle, lines: &mut Vec<String>, last: bool) -> io::Result<()> {
    handle.file.seek(SeekFrom::Start(handle.offset))?;
    // `pending` starts with carried bytes, which `offset` already counts.
    let mut pending: Vec<u8> = std::mem::take(&mut handle.carry);
    let mut carried = pending.len();
    let mut chunk = vec![0u8; CHUNK];
    loop {
        let read = handle.file.read(&mut chunk)?;
        if read == 0 {
            break;
        }
        pending.extend_from_slice(&chunk[..read]);
        let complete = match pending.iter().rposition(|b| *b == b'\n') {
            Some(newline) => newline + 1,
            None if pending.len() > MAX_PARTIAL => pending.len(),
            None => 0,
        };
        handle.grew = std::time::Instant::now();
        if complete > 0 {
            split_into(&pending[..complete], lines);
            handle.offset += complete.saturating_sub(carried) as u64;
            carried = carried.saturating_sub(complete);
            pending.drain(..complete);
        }
    }
    if last && !pending.is_empty() {
        split_into(&pending, lines);
        handle.offset += pending.len().saturating_sub(carried) as u64;
    } else if carried > 0 {
        handle.carry = pending[..carried].to_vec();
    }
    Ok(())
}

fn split_into(bytes: &[u8], lines: &mut Vec<String>) {
    let text = String::from_utf8_lossy(bytes);
    lines.extend(text.lines().map(str::to_string));
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
        tailer.poll(&mut lines).expect("poll");
        lines
    }

    #[test]
    fn lines_are_read_once_across_rename_and_truncate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.log");
        append(&path, "one\ntw");
        let mut tailer = Tailer::open(&path, None, false);
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
        let mut tailer = Tailer::open(&path, None, false);
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
        let mut tailer = Tailer::open(&path, None, false);
        assert_eq!(poll(&mut tailer), ["a", "b"]);
        let checkpoint = tailer.checkpoint().expect("checkpoint");
        append(&path, "c\n");
        let mut resumed = Tailer::open(&path, Some(&checkpoint), false);
        assert_eq!(poll(&mut resumed), ["c"]);
        // Same path, different content (a new file, maybe on a reused inode): from the start.
        std::fs::remove_file(&path).expect("rm");
        append(&path, "x\ny\nz\n");
        let mut fresh = Tailer::open(&path, Some(&checkpoint), false);
        assert_eq!(poll(&mut fresh), ["x", "y", "z"]);
        let at_end = Tailer::open(&path, None, true);
        assert_eq!(at_end.offset(), 6);
    }
}
