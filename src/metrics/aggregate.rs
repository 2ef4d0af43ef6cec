//! `hostmanager metrics aggregate FILE`: one finished healthd log, windowed by each line's own
//! time. The same parser and windows as the agent; used by `benches/access_log.sh`.

use std::io::{self, Read};
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

/// Reads `path` (`-` = standard input) in large chunks and windows every line.
pub fn aggregate_file(path: &Path, window_ms: i64) -> io::Result<Aggregated> {
    let mut input: Box<dyn Read> = if path == Path::new("-") {
        Box::new(io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(path)?)
    };
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
}
