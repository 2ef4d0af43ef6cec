//! The severe-error classifier and fingerprinter (`logs/classify.rs`, `logs/fingerprint.rs`):
//! log lines in, severe blocks out, each fingerprinted and counted in the error table.
//!
//! Properties: blocks keep the caps (200 lines of 4096 bytes), fingerprints are 16 hex
//! digits that do not change when the numbers in the log do (the same bug, another request
//! id: ASCII digits 1–9 are rotated, 0 is kept so `0x…` stays an address), and the table
//! keeps its bounds.
#![no_main]

use std::sync::LazyLock;

use hostmanager::logs::classify::{Grouper, Patterns, SevereBlock};
use hostmanager::logs::fingerprint::{ErrorTable, Limits, fingerprint};
use libfuzzer_sys::fuzz_target;

const LIMITS: Limits = Limits {
    event_interval_ms: 60_000,
    max_events_per_minute: 10,
    window_ms: 300_000,
    max_fingerprints: 8,
    exemplars: 2,
    exemplar_chars: 256,
};

/// Compiled once, as the agent does per log source (compiling them is most of an input's time).
static PATTERNS: LazyLock<Patterns> = LazyLock::new(|| Patterns::new(true, &[]));

fn blocks(text: &str) -> Vec<SevereBlock> {
    let mut grouper = Grouper::new(PATTERNS.clone());
    let mut closed = Vec::new();
    for line in text.split('\n') {
        grouper.push(line, &mut closed);
    }
    closed.extend(grouper.flush());
    closed
}

fn rotate_digits(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '1'..='8' => char::from(c as u8 + 1),
            '9' => '1',
            other => other,
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let found = blocks(&text);
    let mut table = ErrorTable::new(LIMITS);
    let mut now_ms = 1_700_000_000_000_i64;
    for block in &found {
        assert!(!block.lines.is_empty());
        assert!(block.lines.len() <= 200, "{} lines", block.lines.len());
        assert!(block.lines.iter().all(|l| l.len() <= 4096));
        let (id, _title) = fingerprint(block);
        assert_eq!(id.len(), 16);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        now_ms += 7_919;
        if let Some(report) = table.record(now_ms, block, "app.log") {
            assert!(report.occurrences >= 1 && report.occurrences <= report.total);
            if let Some(text) = &report.text {
                assert!(text.chars().count() <= LIMITS.exemplar_chars);
            }
        }
    }
    let _ = table.due_summaries(now_ms + LIMITS.event_interval_ms);
    let window = table.window(now_ms);
    assert!(window.count as usize <= found.len());
    let entries = table.entries();
    assert!(entries.len() <= LIMITS.max_fingerprints);
    for entry in &entries {
        assert!(entry.exemplars.len() <= LIMITS.exemplars);
        assert!(
            entry
                .exemplars
                .iter()
                .all(|e| e.chars().count() <= LIMITS.exemplar_chars)
        );
    }
    // Other numbers, same bugs: the same blocks with the same fingerprints.
    let rotated = blocks(&rotate_digits(&text));
    assert_eq!(rotated.len(), found.len());
    for (a, b) in found.iter().zip(&rotated) {
        assert_eq!(a.kind, b.kind);
        assert_eq!(
            fingerprint(a).0,
            fingerprint(b).0,
            "{:?} vs {:?}",
            a.lines,
            b.lines
        );
    }
});
