//! Properties of reading a healthd log in chunks and in parts: however the reads cut the
//! lines, and wherever the file is cut for the threads, every line counts exactly once.

use std::io::{self, Read, Write};

use proptest::prelude::*;

use super::{Part, TimeWindows, aggregate, line_boundaries, record};

/// A reader that hands out its bytes in the given (cycling) read sizes, and is interrupted
/// now and then, as a pipe or a slow disk may be.
struct Trickle<'a> {
    data: &'a [u8],
    sizes: &'a [usize],
    reads: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let size = self.sizes[self.reads % self.sizes.len()];
        self.reads += 1;
        if size == 0 {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let n = size.min(buffer.len()).min(self.data.len());
        buffer[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// healthd lines (some with `\r`), garbage and empty lines, joined by `\n`; the last one may
/// lack its `\n`.
fn log_text() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        6 => (0..40_000u64, prop::sample::select(&[200u16, 404, 503][..]), 0..5_000u32, any::<bool>())
            .prop_map(|(ms, status, latency_ms, cr)| format!(
                "{}.{:03}\"/p\"{status}\"{}.{:03}\"-\"{}",
                1_700_000_000 + ms / 1000, ms % 1000, latency_ms / 1000, latency_ms % 1000,
                if cr { "\r" } else { "" },
            )),
        1 => "[ -~]{0,40}",
        1 => Just(String::new()),
    ];
    (prop::collection::vec(line, 0..120), any::<bool>()).prop_map(|(lines, final_newline)| {
        let mut text = lines.join("\n");
        if final_newline && !lines.is_empty() {
            text.push('\n');
        }
        text.into_bytes()
    })
}

/// What one pass over whole lines finds: (lines, windows).
fn line_by_line(text: &[u8], window_ms: i64) -> (u64, TimeWindows) {
    let mut windows = TimeWindows::new(window_ms);
    let mut pieces: Vec<&[u8]> = text.split(|b| *b == b'\n').collect();
    // After the last `\n` (or in an empty text) there is no line.
    if pieces.last().is_some_and(|p| p.is_empty()) {
        pieces.pop();
    }
    for piece in &pieces {
        record(&mut windows, piece);
    }
    (pieces.len() as u64, windows)
}

type Summary = Vec<(i64, super::super::RequestStats)>;

fn summary(windows: &mut TimeWindows) -> (Summary, u64) {
    let each = windows
        .windows()
        .map(|(start, w)| (start, w.stats()))
        .collect();
    (each, windows.malformed)
}

proptest! {
    #[test]
    fn reads_cut_anywhere_count_every_line_once(
        text in log_text(),
        sizes in prop::collection::vec(prop_oneof![1 => Just(0usize), 9 => 1..64usize], 1..8),
    ) {
        // At least one read size that moves on.
        prop_assume!(sizes.iter().any(|s| *s > 0));
        let reader = Trickle { data: &text, sizes: &sizes, reads: 0 };
        let mut read = aggregate(reader, 10_000).expect("no error but interruptions");
        let (lines, mut expected) = line_by_line(&text, 10_000);
        prop_assert_eq!((read.lines, read.bytes), (lines, text.len() as u64));
        prop_assert_eq!(summary(&mut read.windows), summary(&mut expected));
    }
}

proptest! {
    // Each case writes a file: fewer cases.
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_file_cut_for_threads_is_cut_between_lines_and_read_whole(
        text in log_text(),
        parts in 1..9u64,
    ) {
        let mut file = tempfile::tempfile().expect("a temporary file");
        file.write_all(&text).expect("write");
        let size = text.len() as u64;
        let cuts = line_boundaries(&file, size, parts).expect("cuts");
        prop_assert_eq!(cuts.len() as u64, parts + 1);
        prop_assert_eq!((cuts[0], cuts[cuts.len() - 1]), (0, size));
        prop_assert!(cuts.windows(2).all(|w| w[0] <= w[1]), "{:?}", cuts);
        for &cut in &cuts[1..cuts.len() - 1] {
            prop_assert!(cut == size || text[cut as usize - 1] == b'\n', "{} in {:?}", cut, cuts);
        }
        // The parts, read one after the other, are the file.
        let mut joined = Vec::new();
        for range in cuts.windows(2) {
            Part { file: &file, at: range[0], end: range[1] }
                .read_to_end(&mut joined)
                .expect("read");
        }
        prop_assert_eq!(joined, text);
    }
}
