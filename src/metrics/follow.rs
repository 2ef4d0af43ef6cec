//! Follows nginx's hourly healthd logs (`application.log.YYYY-MM-DD-HH`, UTC) and hands out
//! each complete line once.
//!
//! - Hour change: the file names sort by time, so when the current file is read to its end and
//!   a later file exists, the follower moves on. A last line still without its `\n` gets one
//!   more poll to be completed (nginx writes each line with one `write`), then counts as partial.
//! - Partial lines at the end of the newest file are kept back until their `\n` arrives.
//! - Checkpoint: the position of the first byte not yet handed out. The caller saves it when a
//!   window closes (`window_closed` in `mod.rs`), so a restart resumes exactly after the lines
//!   the last window counted: nothing lost, nothing counted twice.
//! - Without a checkpoint (first start) the lines already in the logs are skipped; files that
//!   appear later are read from their first byte.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::healthd::{LineError, LogLine, is_hour_file, parse_line};

/// Longer lines are not healthd lines: they are dropped and counted as malformed.
const MAX_LINE: usize = 16 * 1024;
const READ_CHUNK: usize = 256 * 1024;

/// Where reading resumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "at", rename_all = "snake_case")]
pub enum Checkpoint {
    /// In `file` (identified by its inode too: a replaced file is read from its start).
    InFile {
        file: String,
        inode: u64,
        offset: u64,
    },
    /// Every file whose name sorts after `file` ("" = every file), from its start.
    After { file: String },
}

/// What reading found besides lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PollOutcome {
    pub bytes: u64,
    /// True when the byte budget stopped the read before the end of the logs.
    pub more: bool,
}

#[derive(Debug)]
struct Current {
    name: String,
    file: File,
    inode: u64,
    /// Offset of the next byte to read.
    offset: u64,
}

#[derive(Debug)]
pub struct LogFollower {
    dir: PathBuf,
    current: Option<Current>,
    /// The file finished last (or "" before any): the next file sorts after it.
    finished: String,
    /// Bytes of a line whose `\n` has not arrived yet.
    carry: Vec<u8>,
    /// Length of `carry` when a later file was first seen: unchanged one poll later = partial.
    carry_when_superseded: Option<usize>,
    /// Inside an over-long line: drop bytes up to the next `\n`.
    discarding: bool,
    buffer: Vec<u8>,
}

impl LogFollower {
    /// Starts at `checkpoint`, or (none saved) after whatever the logs hold now.
    pub fn open(dir: &Path, checkpoint: Option<Checkpoint>) -> Self {
        let mut follower = Self {
            dir: dir.to_path_buf(),
            current: None,
            finished: String::new(),
            carry: Vec::new(),
            carry_when_superseded: None,
            discarding: false,
            buffer: vec![0; READ_CHUNK],
        };
        match checkpoint {
            Some(Checkpoint::InFile {
                file,
                inode,
                offset,
            }) => match follower.open_file(&file) {
                Ok(mut current) => {
                    let intact = current.inode == inode
                        && current.file.metadata().is_ok_and(|m| m.len() >= offset);
                    if intact && current.file.seek(SeekFrom::Start(offset)).is_ok() {
                        current.offset = offset;
                    }
                    follower.current = Some(current);
                }
                // Deleted meanwhile (hourly cleanup): resume with the files after it.
                Err(_) => follower.finished = file,
            },
            Some(Checkpoint::After { file }) => follower.finished = file,
            None => {
                let newest = follower
                    .names()
                    .ok()
                    .and_then(|names| names.last().cloned());
                if let Some(name) = newest
                    && let Ok(mut current) = follower.open_file(&name)
                    && let Ok(end) = current.file.seek(SeekFrom::End(0))
                {
                    current.offset = end;
                    follower.current = Some(current);
                }
            }
        }
        follower
    }

    /// The position of the first byte not yet handed out.
    pub fn checkpoint(&self) -> Checkpoint {
        match &self.current {
            Some(current) => Checkpoint::InFile {
                file: current.name.clone(),
                inode: current.inode,
                offset: current.offset - self.carry.len() as u64,
            },
            None => Checkpoint::After {
                file: self.finished.clone(),
            },
        }
    }

    /// Reads what was appended since the last poll (at most about `budget` bytes) and calls
    /// `on_line` for every complete line.
    pub fn poll<F>(&mut self, budget: u64, mut on_line: F) -> io::Result<PollOutcome>
    where
        F: FnMut(Result<LogLine, LineError>),
    {
        let mut outcome = PollOutcome::default();
        loop {
            if self.current.is_none() {
                let next = self.names()?.into_iter().find(|n| *n > self.finished);
                match next {
                    Some(name) => self.current = Some(self.open_file(&name)?),
                    None => return Ok(outcome),
                }
            }
            let read = self.read_to_end(budget - outcome.bytes.min(budget), &mut on_line)?;
            outcome.bytes += read.bytes;
            if read.more {
                outcome.more = true;
                return Ok(outcome);
            }
            let Some(current) = &self.current else {
                return Ok(outcome);
            };
            let superseded = self.names()?.iter().any(|n| *n > current.name);
            if !superseded {
                return Ok(outcome);
            }
            if !self.carry.is_empty() {
                if self.carry_when_superseded != Some(self.carry.len()) {
                    // Give nginx's write one more poll to complete the line.
                    self.carry_when_superseded = Some(self.carry.len());
                    return Ok(outcome);
                }
                self.carry.clear();
                on_line(Err(LineError::Partial));
            }
            self.finished = current.name.clone();
            self.current = None;
            self.carry_when_superseded = None;
            self.discarding = false;
        }
    }

    fn read_to_end<F>(&mut self, budget: u64, on_line: &mut F) -> io::Result<PollOutcome>
    where
        F: FnMut(Result<LogLine, LineError>),
    {
        let mut outcome = PollOutcome::default();
        let Some(mut current) = self.current.take() else {
            return Ok(outcome);
        };
        // Truncated in place (copytruncate): start over.
        if current.file.metadata()?.len() < current.offset {
            current.file.seek(SeekFrom::Start(0))?;
            current.offset = 0;
            self.carry.clear();
        }
        let mut buffer = std::mem::take(&mut self.buffer);
        let result = loop {
            if outcome.bytes >= budget {
                outcome.more = true;
                break Ok(());
            }
            match current.file.read(&mut buffer) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    current.offset += n as u64;
                    outcome.bytes += n as u64;
                    self.consume(&buffer[..n], on_line);
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => break Err(error),
            }
        };
        self.buffer = buffer;
        self.current = Some(current);
        result.map(|()| outcome)
    }

    /// Splits `chunk` into lines, completing the carried one first.
    fn consume<F>(&mut self, chunk: &[u8], on_line: &mut F)
    where
        F: FnMut(Result<LogLine, LineError>),
    {
        let mut rest = chunk;
        if !self.carry.is_empty() || self.discarding {
            let Some(end) = memchr::memchr(b'\n', rest) else {
                self.keep(rest, on_line);
                return;
            };
            if self.discarding {
                self.discarding = false;
            } else {
                self.carry.extend_from_slice(&rest[..end]);
                emit(&self.carry, on_line);
                self.carry.clear();
            }
            self.carry_when_superseded = None;
            rest = &rest[end + 1..];
        }
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', rest) {
            emit(&rest[start..end], on_line);
            start = end + 1;
        }
        self.keep(&rest[start..], on_line);
    }

    /// Keeps an incomplete line for the next read, unless it grew too long to be a log line.
    fn keep<F>(&mut self, tail: &[u8], on_line: &mut F)
    where
        F: FnMut(Result<LogLine, LineError>),
    {
        if self.discarding || tail.is_empty() {
            return;
        }
        self.carry.extend_from_slice(tail);
        self.carry_when_superseded = None;
        if self.carry.len() > MAX_LINE {
            self.carry.clear();
            self.discarding = true;
            on_line(Err(LineError::TooLong));
        }
    }

    fn open_file(&self, name: &str) -> io::Result<Current> {
        let file = File::open(self.dir.join(name))?;
        let inode = file.metadata()?.ino();
        Ok(Current {
            name: name.to_string(),
            file,
            inode,
            offset: 0,
        })
    }

    /// healthd log names in the directory, oldest first (the names sort by their UTC hour).
    fn names(&self) -> io::Result<Vec<String>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(error),
        };
        let mut names: Vec<String> = entries
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| is_hour_file(name))
            .collect();
        names.sort_unstable();
        Ok(names)
    }
}

fn emit<F>(line: &[u8], on_line: &mut F)
where
    F: FnMut(Result<LogLine, LineError>),
{
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if !line.is_empty() {
        on_line(parse_line(line));
    }
}

#[cfg(test)]
#[path = "follow_props.rs"]
mod props;
