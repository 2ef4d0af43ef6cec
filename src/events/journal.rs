//! The durable event journal: JSON lines in numbered segment files under
//! `var/lib/hostmanager/events/`. Each event is one `write` to an O_APPEND file, so a `kill -9`
//! can at worst leave a partial last line, which is cut off when the journal is reopened.
//! Retention drops whole segments, oldest first, once the total size passes the budget, and
//! segments whose newest event (the file's mtime) is older than the maximum age.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::index::{STRIDE, SparseIndex};
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
    /// First id of the segment being written (its file name).
    segment_first: u64,
    segment_len: u64,
    last_id: u64,
    index: SparseIndex,
    /// Bytes read from segment files by reads (not by `open`): shared with snapshots.
    bytes_read: Arc<AtomicU64>,
}

/// The segments as they were when taken, read without holding the store's lock: segments are
/// append-only, and only whole old segments are ever deleted.
#[derive(Debug)]
pub struct Snapshot {
    segments: Vec<(PathBuf, u64)>,
    /// Where events after the query's `after` begin (segment position, offset).
    start: (usize, u64),
    bytes_read: Arc<AtomicU64>,
}

#[derive(serde::Deserialize)]
struct IdOnly {
    id: u64,
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
        let mut index = SparseIndex::default();
        for (first, path) in &segments {
            index_segment(&mut index, *first, path)?;
        }
        let (segment_first, path) = match segments.last() {
            Some((first, path)) => (*first, path.clone()),
            None => (last_id + 1, segment_path(dir, last_id + 1)),
        };
        let segment = open_segment(&path)?;
        let segment_len = segment.metadata()?.len();
        Ok(Self {
            dir: dir.to_path_buf(),
            retention,
            segment,
            segment_first,
            segment_len,
            last_id,
            index,
            bytes_read: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Bytes read from the segments since the journal was opened (reads, not appends).
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read.load(Ordering::Relaxed)
    }

    /// The oldest `limit` events with an id above `cursor`. Seeks through the sparse index and
    /// stops after `limit` events: reads about one stride plus what it returns.
    pub fn read_after(&self, cursor: u64, limit: usize) -> io::Result<Vec<Event>> {
        let query = EventQuery {
            after: Some(cursor),
            ..Default::default()
        };
        let mut found = Vec::new();
        if limit == 0 {
            return Ok(found);
        }
        self.snapshot(Some(cursor))?.scan(&mut |event| {
            if query.matches(&event) {
                found.push(event);
            }
            found.len() < limit
        })?;
        Ok(found)
    }

    /// What a read needs, to read later without this journal (and its lock).
    pub fn snapshot(&self, after: Option<u64>) -> io::Result<Snapshot> {
        let listed = segments(&self.dir)?;
        let firsts: Vec<u64> = listed.iter().map(|(first, _)| *first).collect();
        let start = match after {
            Some(cursor) => self.index.start_after(&firsts, cursor).unwrap_or((0, 0)),
            None => (0, 0),
        };
        let mut segments = Vec::with_capacity(listed.len());
        for (first, path) in listed {
            // The segment being written may grow meanwhile: read only what exists now.
            let len = if first == self.segment_first {
                self.segment_len
            } else {
                fs::metadata(&path).map_or(0, |m| m.len())
            };
            segments.push((path, len));
        }
        Ok(Snapshot {
            segments,
            start,
            bytes_read: self.bytes_read.clone(),
        })
    }

    pub fn last_id(&self) -> u64 {
        self.last_id
    }

    pub fn append(&mut self, event: &Event) -> io::Result<()> {
        if self.segment_len >= self.retention.segment_bytes {
            self.segment = open_segment(&segment_path(&self.dir, event.id))?;
            self.segment_first = event.id;
            self.segment_len = 0;
            self.enforce_retention()?;
        }
        let mut line = serde_json::to_vec(event).map_err(io::Error::other)?;
        line.push(b'\n');
        // The id is taken even when the line cannot be written: the event lives on in memory
        // and with followers, and no later event may reuse its id.
        self.last_id = event.id;
        if let Err(error) = self.segment.write_all(&line) {
            // A full disk can take part of the line: cut it, so the segment keeps whole lines
            // and the next event (once there is room) does not land after a torn one.
            let _ = self.segment.set_len(self.segment_len);
            return Err(io::Error::new(
                error.kind(),
                format!(
                    "appending to {}: {error}",
                    segment_path(&self.dir, self.segment_first).display()
                ),
            ));
        }
        self.index
            .note(self.segment_first, event.id, self.segment_len);
        self.segment_len += line.len() as u64;
        Ok(())
    }

    /// Events matching `query`, oldest first, at most `limit` (the newest ones). Starts at
    /// the query's `after` through the index; scans from there on.
    #[cfg(test)]
    pub fn read(&self, query: &EventQuery, limit: usize) -> io::Result<Vec<Event>> {
        self.snapshot(query.after)?.read(query, limit)
    }

    /// Drops the oldest segments while over the size budget or older than the maximum age.
    pub fn enforce_retention(&mut self) -> io::Result<()> {
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
        let remaining: Vec<u64> = self::segments(&self.dir)?
            .iter()
            .map(|(first, _)| *first)
            .collect();
        self.index.retain(&remaining);
        Ok(())
    }
}

impl Snapshot {
    /// Events matching `query`, oldest first, at most `limit` (the newest ones).
    pub fn read(&self, query: &EventQuery, limit: usize) -> io::Result<Vec<Event>> {
        let mut found = std::collections::VecDeque::new();
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.scan(&mut |event| {
            if query.matches(&event) {
                if found.len() == limit {
                    found.pop_front();
                }
                found.push_back(event);
            }
            true
        })?;
        Ok(found.into())
    }

    /// Feeds every event from the start position on to `visit` until it returns false.
    fn scan(&self, visit: &mut dyn FnMut(Event) -> bool) -> io::Result<()> {
        let (first, offset) = self.start;
        for (position, (path, len)) in self.segments.iter().enumerate().skip(first) {
            let offset = if position == first { offset } else { 0 };
            let mut file = match File::open(path) {
                Ok(file) => file,
                // Deleted by retention since the snapshot: its events are gone.
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => return Err(error),
            };
            file.seek(SeekFrom::Start(offset))?;
            let mut reader = BufReader::new(file.take(len.saturating_sub(offset)));
            let mut line = Vec::new();
            loop {
                line.clear();
                let read = reader.read_until(b'\n', &mut line)?;
                if read == 0 {
                    break;
                }
                self.bytes_read.fetch_add(read as u64, Ordering::Relaxed);
                let Ok(event) = serde_json::from_slice::<Event>(&line) else {
                    continue;
                };
                if !visit(event) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

/// Indexes one segment by probing a line start after every stride (a few KiB read per
/// stride, not the segment).
fn index_segment(index: &mut SparseIndex, first: u64, path: &Path) -> io::Result<()> {
    let len = fs::metadata(path)?.len();
    let mut reader = BufReader::new(File::open(path)?);
    let mut line = Vec::new();
    let mut probe = STRIDE;
    while probe < len {
        reader.seek(SeekFrom::Start(probe - 1))?;
        // From the byte before the stride: the rest of the line it is in, then a whole line.
        line.clear();
        let skipped = reader.read_until(b'\n', &mut line)? as u64;
        let start = probe - 1 + skipped;
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        if let Ok(IdOnly { id }) = serde_json::from_slice(&line) {
            index.note(first, id, start);
        }
        probe = (start / STRIDE + 1) * STRIDE;
    }
    Ok(())
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

    fn journal_of(dir: &Path, events: u64) -> Journal {
        let retention = Retention {
            segment_bytes: 1 << 20,
            ..Retention::default()
        };
        let mut journal = Journal::open(dir, retention).expect("open");
        for id in 1..=events {
            journal.append(&event(id)).expect("append");
        }
        journal
    }

    fn journal_bytes(dir: &Path) -> u64 {
        segments(dir)
            .expect("ls")
            .iter()
            .map(|(_, p)| fs::metadata(p).expect("meta").len())
            .sum()
    }

    #[test]
    fn reads_after_a_cursor_touch_about_one_stride_not_the_journal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = journal_of(dir.path(), 60_000);
        let total = journal_bytes(dir.path());
        assert!(
            segments(dir.path()).expect("ls").len() > 3,
            "several segments"
        );
        for cursor in [0, 1, 12_345, 30_000, 59_990] {
            let before = journal.bytes_read();
            let events = journal.read_after(cursor, 10).expect("read");
            let ids: Vec<u64> = events.iter().map(|e| e.id).collect();
            let expected: Vec<u64> = (cursor + 1..=(cursor + 10).min(60_000)).collect();
            assert_eq!(ids, expected, "after {cursor}");
            let read = journal.bytes_read() - before;
            assert!(
                read <= 2 * STRIDE,
                "after {cursor}: read {read} of {total} bytes"
            );
        }
        assert!(journal.read_after(60_000, 10).expect("read").is_empty());
    }

    #[test]
    fn the_index_is_rebuilt_at_open_and_still_bounds_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(journal_of(dir.path(), 30_000));
        let journal = Journal::open(
            dir.path(),
            Retention {
                segment_bytes: 1 << 20,
                ..Retention::default()
            },
        )
        .expect("reopen");
        assert_eq!(journal.last_id(), 30_000);
        let events = journal.read_after(25_000, 3).expect("read");
        assert_eq!(
            events.iter().map(|e| e.id).collect::<Vec<_>>(),
            [25_001, 25_002, 25_003]
        );
        assert!(
            journal.bytes_read() <= 2 * STRIDE,
            "read {}",
            journal.bytes_read()
        );
    }
}
