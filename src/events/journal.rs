//! The durable event journal: JSON lines in numbered segment files under
//! `var/lib/hostmanager/events/`. Each event is one `write` to an O_APPEND file, so a `kill -9`
//! can at worst leave a partial last line, which is cut off when the journal is reopened.
//! Retention drops whole segments, oldest first, once the total size passes the budget, and
//! segments whose newest event (the file's mtime) is older than the maximum age.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::model::{Event, EventQuery};

#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub segment_bytes: u64,
    pub total_bytes: u64,
    pub max_age: std::time::Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            segment_bytes: 4 << 20,
            total_bytes: 64 << 20,
            max_age: std::time::Duration::from_secs(30 * 24 * 3600),
        }
    }
}

#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    retention: Retention,
    segment: File,
    segment_len: u64,
    last_id: u64,
}

impl Journal {
    /// Opens (or creates) the journal, repairing a partial last line.
    pub fn open(dir: &Path, retention: Retention) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let segments = segments(dir)?;
        let mut last_id = 0;
        if let Some((_, path)) = segments.last() {
            let (valid_len, last) = scan_valid(path)?;
            if valid_len < fs::metadata(path)?.len() {
                OpenOptions::new()
                    .write(true)
                    .open(path)?
                    .set_len(valid_len)?;
            }
            last_id = last.unwrap_or(0);
        }
        if last_id == 0 {
            // An empty last segment says nothing; look back for the newest id.
            for (_, path) in segments.iter().rev() {
                if let Some(id) = scan_valid(path)?.1 {
                    last_id = id;
                    break;
                }
            }
        }
        let path = match segments.last() {
            Some((_, path)) => path.clone(),
            None => segment_path(dir, last_id + 1),
        };
        let segment = open_segment(&path)?;
        let segment_len = segment.metadata()?.len();
        Ok(Self {
            dir: dir.to_path_buf(),
            retention,
            segment,
            segment_len,
            last_id,
        })
    }

    pub fn last_id(&self) -> u64 {
        self.last_id
    }

    pub fn append(&mut self, event: &Event) -> io::Result<()> {
        if self.segment_len >= self.retention.segment_bytes {
            self.segment = open_segment(&segment_path(&self.dir, event.id))?;
            self.segment_len = 0;
            self.enforce_retention()?;
        }
        let mut line = serde_json::to_vec(event).map_err(io::Error::other)?;
        line.push(b'\n');
        self.segment.write_all(&line)?;
        self.segment_len += line.len() as u64;
        self.last_id = event.id;
        Ok(())
    }

    /// Events matching `query`, oldest first, at most `limit` (the newest ones).
    pub fn read(&self, query: &EventQuery, limit: usize) -> io::Result<Vec<Event>> {
        let mut found = std::collections::VecDeque::new();
        for (first_id, path) in segments(&self.dir)? {
            let _ = first_id;
            let reader = BufReader::new(File::open(&path)?);
            for line in reader.lines() {
                let Ok(event) = serde_json::from_str::<Event>(&line?) else {
                    continue;
                };
                if query.matches(&event) {
                    if found.len() == limit {
                        found.pop_front();
                    }
                    found.push_back(event);
                }
            }
        }
        Ok(found.into())
    }

    /// Drops the oldest segments while over the size budget or older than the maximum age.
    pub fn enforce_retention(&self) -> io::Result<()> {
        let segments = segments(&self.dir)?;
        let mut sizes: Vec<(PathBuf, u64, std::time::SystemTime)> =
            Vec::with_capacity(segments.len());
        for (_, path) in segments {
            let meta = fs::metadata(&path)?;
            sizes.push((path, meta.len(), meta.modified()?));
        }
        let mut total: u64 = sizes.iter().map(|(_, len, _)| len).sum();
        let oldest_kept = std::time::SystemTime::now()
            .checked_sub(self.retention.max_age)
            .unwrap_or(std::time::UNIX_EPOCH);
        // Never delete the segment being written (the last one).
        for (path, len, modified) in sizes.iter().take(sizes.len().saturating_sub(1)) {
            if total <= self.retention.total_bytes && *modified >= oldest_kept {
                break;
            }
            fs::remove_file(path)?;
            total -= len;
        }
        Ok(())
    }
}

fn open_segment(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

fn segment_path(dir: &Path, first_id: u64) -> PathBuf {
    dir.join(format!("{first_id:020}.jsonl"))
}

fn segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let first_id = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.strip_suffix(".jsonl"))
            .and_then(|stem| stem.parse::<u64>().ok());
        if let Some(first_id) = first_id {
            found.push((first_id, path));
        }
    }
    found.sort();
    Ok(found)
}

/// Length of the prefix made of complete, parseable lines, and the last id in it.
fn scan_valid(path: &Path) -> io::Result<(u64, Option<u64>)> {
    let bytes = fs::read(path)?;
    let mut valid = 0;
    let mut last = None;
    for line in bytes.split_inclusive(|b| *b == b'\n') {
        if !line.ends_with(b"\n") {
            break;
        }
        match serde_json::from_slice::<Event>(line) {
            Ok(event) => last = Some(event.id),
            Err(_) => break,
        }
        valid += line.len() as u64;
    }
    Ok((valid, last))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::model::Severity;

    fn event(id: u64) -> Event {
        Event {
            id,
            time: "2026-01-01T00:00:00Z".into(),
            time_ms: 0,
            severity: Severity::Info,
            source: "test".into(),
            message: format!("event {id}"),
            deployment_id: None,
            details: serde_json::Value::Null,
        }
    }

    #[test]
    fn a_partial_last_line_is_cut_and_ids_continue() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut journal = Journal::open(dir.path(), Retention::default()).expect("open");
            journal.append(&event(1)).expect("append");
            journal.append(&event(2)).expect("append");
        }
        let segment = segments(dir.path())
            .expect("ls")
            .pop()
            .expect("a segment")
            .1;
        let mut file = OpenOptions::new()
            .append(true)
            .open(&segment)
            .expect("open");
        file.write_all(b"{\"id\":3,\"ti").expect("torn write");
        let mut journal = Journal::open(dir.path(), Retention::default()).expect("reopen");
        assert_eq!(journal.last_id(), 2);
        journal.append(&event(3)).expect("append after repair");
        let all = journal.read(&EventQuery::default(), 100).expect("read");
        assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), [1, 2, 3]);
    }

    #[test]
    fn retention_drops_segments_past_the_maximum_age() {
        let dir = tempfile::tempdir().expect("tempdir");
        let retention = Retention {
            segment_bytes: 100,
            max_age: std::time::Duration::from_secs(3600),
            ..Retention::default()
        };
        let mut journal = Journal::open(dir.path(), retention).expect("open");
        for id in 1..=10 {
            journal.append(&event(id)).expect("append");
        }
        let before = segments(dir.path()).expect("ls");
        assert!(before.len() > 2);
        // Age every segment but the newest by two hours.
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        for (_, path) in &before[..before.len() - 1] {
            File::options()
                .append(true)
                .open(path)
                .and_then(|f| f.set_modified(old))
                .expect("age");
        }
        journal.enforce_retention().expect("retention");
        let after = segments(dir.path()).expect("ls");
        assert_eq!(after.len(), 1, "only the segment being written is left");
        assert_eq!(
            journal
                .read(&EventQuery::default(), 100)
                .expect("read")
                .last()
                .map(|e| e.id),
            Some(10)
        );
    }

    #[test]
    fn retention_drops_the_oldest_segments() {
        let dir = tempfile::tempdir().expect("tempdir");
        let retention = Retention {
            segment_bytes: 300,
            total_bytes: 900,
            ..Retention::default()
        };
        let mut journal = Journal::open(dir.path(), retention).expect("open");
        for id in 1..=100 {
            journal.append(&event(id)).expect("append");
        }
        let total: u64 = segments(dir.path())
            .expect("ls")
            .iter()
            .map(|(_, p)| fs::metadata(p).expect("meta").len())
            .sum();
        assert!(
            total <= 900 + 300,
            "journal stays near its budget, got {total}"
        );
        let kept = journal.read(&EventQuery::default(), 1000).expect("read");
        assert_eq!(
            kept.last().map(|e| e.id),
            Some(100),
            "the newest events survive"
        );
        assert!(
            kept.first().map(|e| e.id) > Some(1),
            "the oldest were dropped"
        );
    }
}
