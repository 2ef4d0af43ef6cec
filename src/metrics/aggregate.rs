//! `hostmanager metrics aggregate FILE`: one finished healthd log, windowed by each line's own
//! time. The same parser and windows as the agent; used by `benches/access_log.sh`.
//!
//! A large file is cut at line boundaries into one part per core; each part is read and
//! windowed by its own thread, and the windows are merged (histograms add exactly).

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::healthd::parse_line;
use super::window::TimeWindows;

/// What reading the file found.
#[derive(Debug)]
pub struct Aggregated {
    pub windows: TimeWindows,
    pub lines: u64,
    pub bytes: u64,
}

/// Below this a file is read by one thread.
const PARALLEL_FROM: u64 = 32 << 20;

/// Reads `path` (`-` = standard input) in large chunks and windows every line.
pub fn aggregate_file(path: &Path, window_ms: i64) -> io::Result<Aggregated> {
    if path == Path::new("-") {
        return aggregate(io::stdin().lock(), window_ms);
    }
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8)) as u64;
    if size < PARALLEL_FROM || threads < 2 {
        return aggregate(file, window_ms);
    }
    let cuts = line_boundaries(&file, size, threads)?;
    let parts: Vec<io::Result<Aggregated>> = std::thread::scope(|scope| {
        let handles: Vec<_> = cuts
            .windows(2)
            .map(|range| {
                let (from, to) = (range[0], range[1]);
                let file = &file;
                scope.spawn(move || {
                    aggregate(
                        Part {
                            file,
                            at: from,
                            end: to,
                        },
                        window_ms,
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(io::Error::other("a reader thread panicked")))
            })
            .collect()
    });
    let mut total = Aggregated {
        windows: TimeWindows::new(window_ms),
        lines: 0,
        bytes: 0,
    };
    for part in parts {
        let part = part?;
        total.windows.merge(part.windows);
        total.lines += part.lines;
        total.bytes += part.bytes;
    }
    Ok(total)
}

/// `parts + 1` offsets from 0 to `size`, each inner one just after a `\n`.
fn line_boundaries(file: &File, size: u64, parts: u64) -> io::Result<Vec<u64>> {
    let mut cuts = vec![0];
    let mut probe = vec![0u8; 64 * 1024];
    for k in 1..parts {
        let mut at = (size * k / parts).max(*cuts.last().unwrap_or(&0));
        loop {
            let n = file.read_at(&mut probe, at)?;
            if n == 0 {
                at = size;
                break;
            }
            if let Some(newline) = memchr::memchr(b'\n', &probe[..n]) {
                at += newline as u64 + 1;
                break;
            }
            at += n as u64;
        }
        cuts.push(at.min(size));
    }
    cuts.push(size);
    Ok(cuts)
}

/// A byte range of a file, read with positioned reads so threads share the descriptor.
struct Part<'a> {
    file: &'a File,
    at: u64,
    end: u64,
}

impl Read for Part<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let left = usize::try_from(self.end - self.at).unwrap_or(usize::MAX);
        let want = buffer.len().min(left);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buffer[..want], self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

fn aggregate(mut input: impl Read, window_ms: i64) -> io::Result<Aggregated> {
    let mut windows = TimeWindows::new(window_ms);
    let mut buffer = vec![0u8; 1 << 20];
    // Bytes of a line cut by the end of the previous chunk, moved to the buffer's front.
    let mut kept = 0;
    let (mut lines, mut bytes) = (0u64, 0u64);
    loop {
        let read = match input.read(&mut buffer[kept..]) {
            Ok(n) => n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        bytes += read as u64;
        let filled = kept + read;
        if read == 0 {
            if kept > 0 {
                lines += 1;
                record(&mut windows, &buffer[..kept]);
            }
            break;
        }
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', &buffer[..filled]) {
            lines += 1;
            record(&mut windows, &buffer[start..end]);
            start = end + 1;
        }
        buffer.copy_within(start..filled, 0);
        kept = filled - start;
        if kept == buffer.len() {
            // A "line" as long as the buffer is no healthd line.
            windows.record_malformed();
            lines += 1;
            kept = 0;
        }
    }
    Ok(Aggregated {
        windows,
        lines,
        bytes,
    })
}

fn record(windows: &mut TimeWindows, line: &[u8]) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    match parse_line(line) {
        Ok(parsed) => windows.record(&parsed),
        Err(_) => windows.record_malformed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_windowed_by_line_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("application.log.2026-01-01-00");
        let text = "1700000000.100\"/\"200\"0.010\"0.010\"\ngarbage\n1700000009.999\"/\"503\"0.020\"0.020\"\n1700000010.000\"/x\"404\"0.001\"-\"";
        std::fs::write(&path, text).expect("write");
        let mut result = aggregate_file(&path, 10_000).expect("read");
        assert_eq!((result.lines, result.bytes), (4, text.len() as u64));
        let windows: Vec<_> = result
            .windows
            .windows()
            .map(|(start, w)| {
                (
                    start,
                    w.counts().total,
                    w.counts().server_error,
                    w.malformed,
                )
            })
            .collect();
        assert_eq!(
            windows,
            [(1_700_000_000_000, 2, 1, 1), (1_700_000_010_000, 1, 0, 0)]
        );
    }

    #[test]
    fn parts_read_in_parallel_add_up_to_the_whole_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("big.log");
        let mut text = String::new();
        let mut id = 0u64;
        while text.len() < (PARALLEL_FROM as usize) + 1_000_000 {
            let status = [200, 404, 503][(id % 3) as usize];
            text.push_str(&format!(
                "{}.{:03}\"/p/{id}\"{status}\"0.{:03}\"-\"\n",
                1_700_000_000 + id / 500,
                id % 1000,
                id % 997
            ));
            id += 1;
        }
        std::fs::write(&path, &text).expect("write");
        let mut parallel = aggregate_file(&path, 10_000).expect("parallel");
        let mut single = aggregate(File::open(&path).expect("open"), 10_000).expect("single");
        assert_eq!((parallel.lines, parallel.bytes), (id, text.len() as u64));
        assert_eq!(
            (single.lines, single.bytes),
            (parallel.lines, parallel.bytes)
        );
        let a: Vec<_> = parallel
            .windows
            .windows()
            .map(|(s, w)| (s, w.stats()))
            .collect();
        let b: Vec<_> = single
            .windows
            .windows()
            .map(|(s, w)| (s, w.stats()))
            .collect();
        assert_eq!(a, b);
    }
}

#[cfg(test)]
#[path = "aggregate_props.rs"]
mod props;
