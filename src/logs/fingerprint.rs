//! Fingerprints of severe errors: the same bug gives the same fingerprint whatever the numbers,
//! ids, addresses and release paths in it; counts, first exemplars, rate-limited events and the
//! recent-window summary the health cause shows. Pure: the caller passes the time.

use std::collections::{HashMap, VecDeque};
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::classify::{SevereBlock, TraceKind};

static UUID: LazyLock<Regex> = LazyLock::new(|| {
    regex(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")
});
static ADDRESS: LazyLock<Regex> = LazyLock::new(|| regex(r"\b0x[0-9a-fA-F]+\b"));
static LONG_HEX: LazyLock<Regex> = LazyLock::new(|| regex(r"\b[0-9a-fA-F]{12,}\b"));
// Directories of a path (the file name is kept: it says where the bug is).
static DIRECTORIES: LazyLock<Regex> = LazyLock::new(|| regex(r#"(?:/[^/\s"':,()\[\]<>]+)+/"#));
static NUMBER: LazyLock<Regex> = LazyLock::new(|| regex(r"\d+"));
static SPACES: LazyLock<Regex> = LazyLock::new(|| regex(r"\s+"));

// Constant patterns covered by the tests below: failing to compile is a bug.
fn regex(pattern: &str) -> Regex {
    Regex::new(pattern).expect("built-in pattern compiles")
}

/// The text with everything that varies between occurrences of one bug replaced.
pub fn normalise(text: &str) -> String {
    let text = UUID.replace_all(text, "<uuid>");
    let text = ADDRESS.replace_all(&text, "<addr>");
    let text = LONG_HEX.replace_all(&text, "<hex>");
    let text = DIRECTORIES.replace_all(&text, "<path>/");
    let text = NUMBER.replace_all(&text, "<n>");
    SPACES.replace_all(text.trim(), " ").into_owned()
}

/// The fingerprint (16 hex digits) and a one-line title of a block.
pub fn fingerprint(block: &SevereBlock) -> (String, String) {
    let normalised: Vec<String> = block
        .lines
        .iter()
        .map(|line| normalise(line))
        .filter(|line| !line.is_empty())
        .collect();
    let digest = sha2::Sha256::digest(normalised.join("\n").as_bytes());
    let id = crate::deploy::hex(&digest[..8]);
    (id, title(block))
}

fn title(block: &SevereBlock) -> String {
    let nonblank = || block.lines.iter().filter(|l| !l.trim().is_empty());
    let text = match block.kind {
        // Python names the exception last.
        TraceKind::Python => nonblank().next_back().cloned().unwrap_or_default(),
        TraceKind::RustPanic => nonblank().take(2).cloned().collect::<Vec<_>>().join(" "),
        _ => nonblank().next().cloned().unwrap_or_default(),
    };
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

/// One fingerprint as `hostmanager logs errors` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorEntry {
    pub fingerprint: String,
    pub title: String,
    pub count: u64,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    /// The file it was last seen in, relative to the root.
    pub file: String,
    /// The first occurrences, whole.
    pub exemplars: Vec<String>,
    #[serde(skip)]
    last_event_ms: Option<i64>,
    #[serde(skip)]
    unreported: u64,
}

/// What to tell the event journal about one occurrence or a due summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub fingerprint: String,
    pub title: String,
    pub file: String,
    /// Occurrences this report stands for (1 for a first sighting).
    pub occurrences: u64,
    pub total: u64,
    /// The whole trace, for a first sighting.
    pub text: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub event_interval_ms: i64,
    pub max_events_per_minute: u32,
    pub window_ms: i64,
    pub max_fingerprints: usize,
    pub exemplars: usize,
    pub exemplar_chars: usize,
}

/// The recent-window summary behind the health cause.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSummary {
    pub count: u64,
    pub top: Option<String>,
}

#[derive(Debug)]
pub struct ErrorTable {
    limits: Limits,
    entries: HashMap<String, ErrorEntry>,
    window: VecDeque<(i64, String)>,
    minute: (i64, u32),
    /// Events not sent because of the per-minute cap.
    pub suppressed: u64,
}

impl ErrorTable {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            entries: HashMap::new(),
            window: VecDeque::new(),
            minute: (0, 0),
            suppressed: 0,
        }
    }

    /// A live reconfiguration's limits; what was counted so far stays.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Counts one occurrence; returns a report when an event is due for it.
    pub fn record(&mut self, now_ms: i64, block: &SevereBlock, file: &str) -> Option<Report> {
        let (id, title) = fingerprint(block);
        if !self.entries.contains_key(&id) && self.entries.len() >= self.limits.max_fingerprints {
            self.evict_oldest();
        }
        let entry = self
            .entries
            .entry(id.clone())
            .or_insert_with(|| ErrorEntry {
                fingerprint: id.clone(),
                title,
                count: 0,
                first_seen_ms: now_ms,
                last_seen_ms: now_ms,
                file: file.to_string(),
                exemplars: Vec::new(),
                last_event_ms: None,
                unreported: 0,
            });
        entry.count += 1;
        entry.last_seen_ms = now_ms;
        entry.file = file.to_string();
        let text = block.text();
        self.window.push_back((now_ms, id.clone()));
        if entry.exemplars.len() < self.limits.exemplars {
            entry
                .exemplars
                .push(text.chars().take(self.limits.exemplar_chars).collect());
        }
        let first = entry.last_event_ms.is_none();
        let due = entry
            .last_event_ms
            .is_none_or(|last| now_ms - last >= self.limits.event_interval_ms);
        if !due {
            entry.unreported += 1;
            self.trim_window(now_ms);
            return None;
        }
        let occurrences = entry.unreported + 1;
        let report = Report {
            fingerprint: id.clone(),
            title: entry.title.clone(),
            file: entry.file.clone(),
            occurrences,
            total: entry.count,
            // The event carries the trace, bounded like an exemplar.
            text: first.then(|| text.chars().take(self.limits.exemplar_chars).collect()),
        };
        self.trim_window(now_ms);
        self.send(now_ms, &id, report, occurrences)
    }

    /// Summaries for fingerprints that kept occurring after their last event.
    pub fn due_summaries(&mut self, now_ms: i64) -> Vec<Report> {
        let due: Vec<String> = self
            .entries
            .values()
            .filter(|e| {
                e.unreported > 0
                    && e.last_event_ms
                        .is_none_or(|last| now_ms - last >= self.limits.event_interval_ms)
            })
            .map(|e| e.fingerprint.clone())
            .collect();
        let mut reports = Vec::new();
        for id in due {
            let Some(entry) = self.entries.get(&id) else {
                continue;
            };
            let report = Report {
                fingerprint: id.clone(),
                title: entry.title.clone(),
                file: entry.file.clone(),
                occurrences: entry.unreported,
                total: entry.count,
                text: None,
            };
            let occurrences = entry.unreported;
            reports.extend(self.send(now_ms, &id, report, occurrences));
        }
        reports
    }

    fn send(&mut self, now_ms: i64, id: &str, report: Report, occurrences: u64) -> Option<Report> {
        let minute = now_ms.div_euclid(60_000);
        if self.minute.0 != minute {
            self.minute = (minute, 0);
        }
        let entry = self.entries.get_mut(id)?;
        if self.minute.1 >= self.limits.max_events_per_minute {
            self.suppressed += 1;
            // Reported later, in a summary.
            entry.unreported = occurrences;
            return None;
        }
        self.minute.1 += 1;
        entry.last_event_ms = Some(now_ms);
        entry.unreported = 0;
        Some(report)
    }

    /// Severe errors in the window and the title of the most frequent one.
    pub fn window(&mut self, now_ms: i64) -> WindowSummary {
        self.trim_window(now_ms);
        let mut counts: HashMap<&str, u64> = HashMap::new();
        for (_, id) in &self.window {
            *counts.entry(id).or_default() += 1;
        }
        let top = counts
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
            .and_then(|(id, _)| self.entries.get(id))
            .map(|e| e.title.clone());
        WindowSummary {
            count: self.window.len() as u64,
            top,
        }
    }

    /// Every fingerprint, most frequent first.
    pub fn entries(&self) -> Vec<ErrorEntry> {
        let mut all: Vec<ErrorEntry> = self.entries.values().cloned().collect();
        all.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then(a.first_seen_ms.cmp(&b.first_seen_ms))
        });
        all
    }

    fn trim_window(&mut self, now_ms: i64) {
        while self
            .window
            .front()
            .is_some_and(|(at, _)| now_ms - at > self.limits.window_ms)
        {
            self.window.pop_front();
        }
        // Bounded memory under an error storm: the oldest sightings go first.
        while self.window.len() > 100_000 {
            self.window.pop_front();
        }
    }

    fn evict_oldest(&mut self) {
        let oldest = self
            .entries
            .values()
            .min_by_key(|e| e.last_seen_ms)
            .map(|e| e.fingerprint.clone());
        if let Some(id) = oldest {
            self.entries.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(lines: &[&str], kind: TraceKind) -> SevereBlock {
        SevereBlock {
            kind,
            lines: lines.iter().map(|l| l.to_string()).collect(),
            omitted: 0,
        }
    }

    fn limits() -> Limits {
        Limits {
            event_interval_ms: 60_000,
            max_events_per_minute: 3,
            window_ms: 300_000,
            max_fingerprints: 2,
            exemplars: 2,
            exemplar_chars: 100,
        }
    }

    #[test]
    fn variable_parts_are_normalised() {
        assert_eq!(
            normalise("  File \"/srv/app/releases/17/app.py\", line 42, in get_user"),
            "File \"<path>/app.py\", line <n>, in get_user"
        );
        assert_eq!(
            normalise("user 5f0c2b7e-1d2a-4c3b-9e8f-0a1b2c3d4e5f at 0x7ffd5e8c req deadbeefcafe01"),
            "user <uuid> at <addr> req <hex>"
        );
        let (a, _) = fingerprint(&block(
            &["KeyError: 'user_1'", "  at /a/b/c.py:10"],
            TraceKind::Line,
        ));
        let (b, _) = fingerprint(&block(
            &["KeyError: 'user_2'", "  at /x/y/c.py:99"],
            TraceKind::Line,
        ));
        let (c, _) = fingerprint(&block(
            &["KeyError: 'user_2'", "  at /x/y/d.py:99"],
            TraceKind::Line,
        ));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 16);
    }

    #[test]
    fn titles_name_the_error() {
        let python = block(
            &[
                "Traceback (most recent call last):",
                "  File \"x.py\", line 1",
                "ValueError: bad",
            ],
            TraceKind::Python,
        );
        assert_eq!(fingerprint(&python).1, "ValueError: bad");
        let rust = block(
            &["thread 'main' panicked at src/main.rs:2:5:", "boom"],
            TraceKind::RustPanic,
        );
        assert_eq!(
            fingerprint(&rust).1,
            "thread 'main' panicked at src/main.rs:2:5: boom"
        );
    }

    #[test]
    fn a_thousand_identical_errors_are_one_fingerprint_and_few_events() {
        let mut table = ErrorTable::new(limits());
        let error = block(&["FATAL cannot connect to db 10.0.0.1"], TraceKind::Line);
        let mut reports = Vec::new();
        for n in 0..1000 {
            reports.extend(table.record(1_000 + n, &error, "var/log/web.stderr.log"));
        }
        assert_eq!(reports.len(), 1, "only the first sighting is an event");
        assert_eq!(
            reports[0].text.as_deref(),
            Some("FATAL cannot connect to db 10.0.0.1")
        );
        let entries = table.entries();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].count, 1000);
        assert_eq!(entries[0].exemplars.len(), 2);
        assert!(
            table.due_summaries(30_000).is_empty(),
            "not before the interval"
        );
        let summaries = table.due_summaries(61_000);
        assert_eq!(summaries.len(), 1);
        assert_eq!(summaries[0].occurrences, 999);
        assert_eq!(summaries[0].total, 1000);
        let window = table.window(61_000);
        assert_eq!(window.count, 1000);
        assert_eq!(
            window.top.as_deref(),
            Some("FATAL cannot connect to db 10.0.0.1")
        );
        assert_eq!(table.window(1_000_000).count, 0, "the window forgets");
    }

    #[test]
    fn the_per_minute_cap_defers_events_to_summaries() {
        let mut table = ErrorTable::new(Limits {
            max_fingerprints: 10,
            ..limits()
        });
        let mut sent = 0;
        for n in 0..5 {
            let error = block(
                &[&format!("FATAL kind {}", "x".repeat(n + 1))],
                TraceKind::Line,
            );
            sent += table.record(0, &error, "f").into_iter().count();
        }
        assert_eq!(sent, 3);
        assert_eq!(table.suppressed, 2);
        assert_eq!(
            table.due_summaries(60_000).len(),
            2,
            "deferred ones are summarised"
        );
    }

    #[test]
    fn the_table_is_bounded() {
        let mut table = ErrorTable::new(limits());
        for (n, word) in ["alpha", "beta", "gamma"].iter().enumerate() {
            table.record(
                n as i64,
                &block(&[&format!("FATAL {word}")], TraceKind::Line),
                "f",
            );
        }
        let titles: Vec<String> = table.entries().into_iter().map(|e| e.title).collect();
        assert_eq!(titles.len(), 2);
        assert!(!titles.contains(&"FATAL alpha".to_string()));
    }
}
