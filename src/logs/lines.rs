//! Reads the complete lines of one open log file, at most a byte budget at a time, with a cap
//! on the length of a line: a multi-GB backlog is worked through over several polls in bounded
//! memory, and one runaway writer without newlines cannot eat memory.

use std::fs::File;
use std::io;
use std::time::Instant;

/// Longer lines are cut to this length (and counted); the rest of the line is skipped.
pub const MAX_LINE: usize = 64 * 1024;
const CHUNK: usize = 256 * 1024;

/// One open file being followed.
#[derive(Debug)]
pub struct Handle {
    pub file: File,
    pub dev: u64,
    pub ino: u64,
    /// Just after the last byte handed out: a partial line is read again (whole) next time,
    /// also after a restart.
    pub offset: u64,
    /// Start of a line whose bytes were cut from the file's head: the rest follows at 0.
    pub carry: Vec<u8>,
    /// Inside an over-long line whose start was handed out: skip up to its newline.
    pub discarding: bool,
    /// When this file last grew (renamed-away files are let go once they stay quiet).
    pub grew: Instant,
}

impl Handle {
    pub fn new(file: File, dev: u64, ino: u64, offset: u64) -> Self {
        Self {
            file,
            dev,
            ino,
            offset,
            carry: Vec::new(),
            discarding: false,
            grew: Instant::now(),
        }
    }
}

/// What one read did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadOutcome {
    pub bytes: u64,
    /// The budget ran out before the end of the file.
    pub more: bool,
    /// Lines cut to `MAX_LINE`.
    pub truncated: u64,
}

/// Reads complete lines from `handle.offset`, about `budget` bytes at most; at the end of a
/// file nobody will write to again (`last`), a final unterminated line counts too.
pub fn read_lines(
    handle: &mut Handle,
    budget: u64,
    last: bool,
    lines: &mut Vec<String>,
) -> io::Result<ReadOutcome> {
    let mut outcome = ReadOutcome::default();
    // Invariant: `offset + (pending.len() - carried) == position`; carried bytes are counted
    // in `offset` already.
    let mut pending: Vec<u8> = std::mem::take(&mut handle.carry);
    let mut carried = pending.len();
    let mut position = handle.offset;
    let mut chunk = vec![0u8; CHUNK];
    loop {
        if outcome.bytes >= budget {
            outcome.more = true;
            break;
        }
        let want = usize::try_from(budget - outcome.bytes).map_or(CHUNK, |left| left.min(CHUNK));
        let read = match rustix::io::pread(&handle.file, &mut chunk[..want], position) {
            Ok(0) => break,
            Ok(read) => read,
            Err(rustix::io::Errno::INTR) => continue,
            Err(errno) => {
                handle.carry = pending[..carried].to_vec();
                return Err(errno.into());
            }
        };
        position += read as u64;
        outcome.bytes += read as u64;
        handle.grew = Instant::now();
        let mut data = &chunk[..read];
        if handle.discarding {
            let Some(newline) = memchr::memchr(b'\n', data) else {
                handle.offset = position;
                continue;
            };
            handle.discarding = false;
            handle.offset = position - (data.len() - newline - 1) as u64;
            data = &data[newline + 1..];
        }
        pending.extend_from_slice(data);
        if let Some(newline) = memchr::memrchr(b'\n', &pending) {
            let complete = newline + 1;
            outcome.truncated += split_into(&pending[..complete], lines);
            handle.offset += (complete - carried.min(complete)) as u64;
            carried = carried.saturating_sub(complete);
            pending.drain(..complete);
        }
        if pending.len() > MAX_LINE {
            // No newline in sight: hand out the line's start now, skip the rest of it.
            outcome.truncated += split_into(&pending, lines);
            handle.offset += (pending.len() - carried) as u64;
            carried = 0;
            pending.clear();
            handle.discarding = true;
        }
    }
    if last && !pending.is_empty() {
        outcome.truncated += split_into(&pending, lines);
        handle.offset += (pending.len() - carried) as u64;
    } else if carried > 0 {
        handle.carry = pending[..carried].to_vec();
    }
    Ok(outcome)
}

/// Splits `bytes` into lines (cut to `MAX_LINE`); returns how many were cut.
fn split_into(bytes: &[u8], lines: &mut Vec<String>) -> u64 {
    let mut truncated = 0;
    for line in bytes.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let kept = if line.len() > MAX_LINE {
            truncated += 1;
            &line[..MAX_LINE]
        } else {
            line
        };
        lines.push(String::from_utf8_lossy(kept).into_owned());
    }
    // `split` yields an empty piece after a final newline: not a line.
    if bytes.last() == Some(&b'\n') {
        lines.pop();
    }
    truncated
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn handle(text: &[u8]) -> (tempfile::NamedTempFile, Handle) {
        let mut file = tempfile::NamedTempFile::new().expect("temp");
        file.write_all(text).expect("write");
        let open = File::open(file.path()).expect("open");
        (file, Handle::new(open, 0, 0, 0))
    }

    #[test]
    fn a_backlog_is_read_in_budgets_and_every_line_once() {
        let text: String = (0..100_000).map(|n| format!("line {n}\n")).collect();
        let (_file, mut handle) = handle(text.as_bytes());
        let mut all = Vec::new();
        let mut polls = 0;
        loop {
            let mut lines = Vec::new();
            let outcome = read_lines(&mut handle, 64 * 1024, false, &mut lines).expect("read");
            assert!(
                lines.iter().map(|l| l.len() + 1).sum::<usize>() <= 64 * 1024,
                "one poll hands out about a budget"
            );
            all.extend(lines);
            polls += 1;
            if !outcome.more {
                break;
            }
        }
        assert!(polls > 10, "{polls} polls");
        assert_eq!(all.len(), 100_000);
        assert!(
            all.iter()
                .enumerate()
                .all(|(n, l)| *l == format!("line {n}"))
        );
        assert_eq!(handle.offset, text.len() as u64);
    }

    #[test]
    fn over_long_lines_are_cut_and_counted() {
        let mut text = b"short\n".to_vec();
        text.extend(std::iter::repeat_n(b'x', 3 * MAX_LINE));
        text.extend_from_slice(b"\nafter\n");
        text.extend(std::iter::repeat_n(b'y', MAX_LINE + 10));
        text.extend_from_slice(b"\n");
        let (_file, mut handle) = handle(&text);
        let mut lines = Vec::new();
        let mut truncated = 0;
        loop {
            let outcome = read_lines(&mut handle, 100_000, false, &mut lines).expect("read");
            truncated += outcome.truncated;
            if !outcome.more {
                break;
            }
        }
        assert_eq!(
            lines.len(),
            4,
            "{:?}",
            lines.iter().map(String::len).collect::<Vec<_>>()
        );
        assert_eq!(lines[0], "short");
        assert_eq!(lines[1], "x".repeat(MAX_LINE));
        assert_eq!(lines[2], "after");
        assert_eq!(lines[3], "y".repeat(MAX_LINE));
        assert_eq!(truncated, 2);
        assert_eq!(handle.offset, text.len() as u64);
    }
}
