//! Request statistics of one window: counts per status class and latency percentiles. Pure.
//!
//! Latencies go into an HDR histogram (crate `hdrhistogram`, 3 significant digits, in
//! microseconds). Error bound, tested in `tests` below: a reported percentile is the value of
//! the sample at rank ⌈q·n⌉ (nearest-rank definition), rounded UP to the top of its histogram
//! bucket, so `exact ≤ reported ≤ exact + exact/1024` — never below, at most 0.1 % above — and
//! exact below 2.048 ms. Memory is fixed (~90 KiB per window) whatever the request rate.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::healthd::LogLine;

/// Latencies above an hour are clamped to an hour (nginx's own timeouts are far lower).
const MAX_LATENCY_US: u64 = 3_600_000_000;
const SIGNIFICANT_DIGITS: u8 = 3;

/// The percentiles Elastic Beanstalk reports, with their CloudWatch suffixes.
pub const PERCENTILES: [(f64, &str); 8] = [
    (0.10, "P10"),
    (0.50, "P50"),
    (0.75, "P75"),
    (0.85, "P85"),
    (0.90, "P90"),
    (0.95, "P95"),
    (0.99, "P99"),
    (0.999, "P99.9"),
];

/// Requests of one window (or of several merged), with their latency distribution.
#[derive(Debug, Clone)]
pub struct RequestWindow {
    counts: StatusCounts,
    latency: Histogram<u32>,
    /// Lines that could not be parsed (skipped, counted).
    pub malformed: u64,
}

/// Requests by status class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCounts {
    pub total: u64,
    #[serde(rename = "1xx")]
    pub informational: u64,
    #[serde(rename = "2xx")]
    pub success: u64,
    #[serde(rename = "3xx")]
    pub redirect: u64,
    #[serde(rename = "4xx")]
    pub client_error: u64,
    #[serde(rename = "5xx")]
    pub server_error: u64,
}

impl StatusCounts {
    pub fn record(&mut self, status: u16) {
        self.total += 1;
        match status / 100 {
            1 => self.informational += 1,
            2 => self.success += 1,
            3 => self.redirect += 1,
            4 => self.client_error += 1,
            // The parser accepts 100-999; nginx never writes 6xx+, count them as failures.
            _ => self.server_error += 1,
        }
    }

    pub fn add(&mut self, other: &StatusCounts) {
        self.total += other.total;
        self.informational += other.informational;
        self.success += other.success;
        self.redirect += other.redirect;
        self.client_error += other.client_error;
        self.server_error += other.server_error;
    }

    /// Share of requests in a class, in percent (0 when there were none).
    pub fn percent(&self, count: u64) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            count as f64 * 100.0 / self.total as f64
        }
    }
}

/// Latency percentiles of a window, in seconds (Elastic Beanstalk's unit).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub p10: f64,
    pub p50: f64,
    pub p75: f64,
    pub p85: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    #[serde(rename = "p99.9")]
    pub p99_9: f64,
}

impl Latency {
    /// In the order of `PERCENTILES`.
    pub fn values(&self) -> [f64; 8] {
        [
            self.p10, self.p50, self.p75, self.p85, self.p90, self.p95, self.p99, self.p99_9,
        ]
    }
}

/// What a window says, ready for reports (`GET /v1/health`) and rules.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RequestStats {
    pub counts: StatusCounts,
    /// `None` when there was no request.
    pub latency: Option<Latency>,
    pub malformed_lines: u64,
}

impl Default for RequestWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestWindow {
    pub fn new() -> Self {
        Self {
            counts: StatusCounts::default(),
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_US, SIGNIFICANT_DIGITS)
                .expect("constant histogram bounds are valid"),
            malformed: 0,
        }
    }

    pub fn record(&mut self, line: &LogLine) {
        self.counts.record(line.status);
        // Clamped here: the histogram clamps only past its last bucket (about 71 minutes),
        // not at the bound it was made with, and the doc promises an hour.
        self.latency
            .saturating_record(line.request_time_us.min(MAX_LATENCY_US));
    }

    pub fn counts(&self) -> &StatusCounts {
        &self.counts
    }

    /// Adds another window (same bounds, so the histograms add exactly).
    pub fn merge(&mut self, other: &RequestWindow) {
        self.counts.add(&other.counts);
        self.malformed += other.malformed;
        // Both histograms were made by `new` with the same bounds: adding cannot fail.
        let _ = self.latency.add(&other.latency);
    }

    /// The percentile `quantile` in microseconds (see the module doc for its error bound).
    pub fn percentile_us(&self, quantile: f64) -> Option<u64> {
        (!self.latency.is_empty()).then(|| self.latency.value_at_quantile(quantile))
    }

    pub fn stats(&self) -> RequestStats {
        let latency = (!self.latency.is_empty()).then(|| {
            let mut values = [0.0; 8];
            let quantiles = PERCENTILES.map(|(q, _)| q);
            for (slot, us) in values
                .iter_mut()
                .zip(self.latency.value_at_quantiles(quantiles))
            {
                *slot = us as f64 / 1e6;
            }
            let [p10, p50, p75, p85, p90, p95, p99, p99_9] = values;
            Latency {
                p10,
                p50,
                p75,
                p85,
                p90,
                p95,
                p99,
                p99_9,
            }
        });
        RequestStats {
            counts: self.counts,
            latency,
            malformed_lines: self.malformed,
        }
    }

    /// The histogram's recorded values as `[microseconds, count]`, ascending: each value is
    /// the top of its bucket (as percentiles are), so another histogram of the same precision
    /// that records them gets the same buckets, and merging windows of many hosts is adding.
    pub fn recorded_us(&self) -> Vec<[u64; 2]> {
        self.latency
            .iter_recorded()
            .map(|v| [v.value_iterated_to(), u64::from(v.count_at_value())])
            .collect()
    }

    /// Empties the window, keeping its memory.
    pub fn clear(&mut self) {
        self.counts = StatusCounts::default();
        self.latency.reset();
        self.malformed = 0;
    }
}

/// Groups lines into windows by their own time (`$msec`): for reading a finished log file
/// (`hostmanager metrics aggregate`), where no read time exists. The live agent windows by
/// read time instead (see `mod.rs`).
#[derive(Debug)]
pub struct TimeWindows {
    length_ms: i64,
    /// Lines come nearly in time order: the window being filled stays out of the map, so most
    /// lines cost no map lookup.
    current: Option<(i64, RequestWindow)>,
    windows: BTreeMap<i64, RequestWindow>,
    /// Malformed lines before the first parsed one have no window: counted here.
    pub malformed: u64,
}

impl TimeWindows {
    pub fn new(length_ms: i64) -> Self {
        Self {
            length_ms: length_ms.max(1),
            current: None,
            windows: BTreeMap::new(),
            malformed: 0,
        }
    }

    pub fn record(&mut self, line: &LogLine) {
        // A range check first: a division per line costs more than the rest of the line.
        if let Some((current, window)) = &mut self.current
            && (*current..*current + self.length_ms).contains(&line.time_ms)
        {
            window.record(line);
            return;
        }
        let start = line.time_ms.div_euclid(self.length_ms) * self.length_ms;
        self.park();
        let mut window = self.windows.remove(&start).unwrap_or_default();
        window.record(line);
        self.current = Some((start, window));
    }

    /// A malformed line counts in the window of the line before it.
    pub fn record_malformed(&mut self) {
        match &mut self.current {
            Some((_, window)) => window.malformed += 1,
            None => self.malformed += 1,
        }
    }

    /// (window start in ms, window), oldest first.
    pub fn windows(&mut self) -> impl Iterator<Item = (i64, &RequestWindow)> {
        self.park();
        self.windows.iter().map(|(start, window)| (*start, window))
    }

    /// Adds the windows of another reader of the same log (another part of the file).
    pub fn merge(&mut self, mut other: TimeWindows) {
        self.park();
        other.park();
        for (start, window) in other.windows {
            match self.windows.get_mut(&start) {
                Some(mine) => mine.merge(&window),
                None => {
                    self.windows.insert(start, window);
                }
            }
        }
        self.malformed += other.malformed;
    }

    fn park(&mut self) {
        if let Some((start, window)) = self.current.take() {
            self.windows.insert(start, window);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(status: u16, request_time_us: u64) -> LogLine {
        LogLine {
            time_ms: 0,
            status,
            request_time_us,
        }
    }

    /// The nearest-rank percentile the module doc promises to approximate.
    fn exact(sorted: &[u64], quantile: f64) -> u64 {
        let rank = ((quantile * sorted.len() as f64).ceil() as usize).max(1);
        sorted[rank - 1]
    }

    fn check_distribution(name: &str, samples: Vec<u64>) {
        let mut window = RequestWindow::new();
        for &us in &samples {
            window.record(&line(200, us));
        }
        let mut sorted = samples;
        sorted.sort_unstable();
        let stats = window.stats();
        let reported = stats.latency.expect("latency").values();
        for ((quantile, label), seconds) in PERCENTILES.iter().zip(reported) {
            let truth = exact(&sorted, *quantile);
            let got = window.percentile_us(*quantile).expect("value");
            assert!(
                truth <= got && got <= truth + truth / 1024,
                "{name} {label}: reported {got} µs, exact {truth} µs"
            );
            assert!((seconds - got as f64 / 1e6).abs() < 1e-9);
        }
    }

    #[test]
    fn percentiles_stay_within_the_documented_error() {
        let mut rng = fastrand::Rng::with_seed(7);
        // Uniform 0-2 s at nginx's 1 ms resolution.
        check_distribution(
            "uniform",
            (0..50_000).map(|_| rng.u64(0..2_000) * 1_000).collect(),
        );
        // Log-normal-ish: most fast, a long tail up to minutes (what real apps look like).
        check_distribution(
            "long tail",
            (0..100_000)
                .map(|_| ((rng.f64() * 12.0).exp() * 50.0) as u64)
                .collect(),
        );
        // Bimodal: cache hits at ~2 ms, misses at ~800 ms.
        check_distribution(
            "bimodal",
            (0..20_000)
                .map(|i| {
                    if i % 5 == 0 {
                        800_000 + rng.u64(0..50_000)
                    } else {
                        2_000 + rng.u64(0..500)
                    }
                })
                .collect(),
        );
        // Tiny windows: one and three requests.
        check_distribution("single", vec![83_000]);
        check_distribution("three", vec![1_000, 500_000, 2_000_000]);
    }

    #[test]
    fn statuses_fall_into_their_classes() {
        let mut window = RequestWindow::new();
        for status in [101, 200, 204, 301, 404, 499, 500, 503] {
            window.record(&line(status, 1_000));
        }
        let counts = window.stats().counts;
        assert_eq!(
            (
                counts.total,
                counts.informational,
                counts.success,
                counts.redirect,
                counts.client_error,
                counts.server_error
            ),
            (8, 1, 2, 1, 2, 2)
        );
        assert_eq!(counts.percent(counts.server_error), 25.0);
    }

    #[test]
    fn merged_windows_equal_one_window_of_everything() {
        let (mut a, mut b, mut all) = (
            RequestWindow::new(),
            RequestWindow::new(),
            RequestWindow::new(),
        );
        for i in 0..1_000u64 {
            let l = line(if i % 3 == 0 { 500 } else { 200 }, i * 997);
            if i % 2 == 0 {
                a.record(&l)
            } else {
                b.record(&l)
            }
            all.record(&l);
        }
        a.merge(&b);
        assert_eq!(a.stats(), all.stats());
        a.clear();
        assert_eq!(a.stats().counts, StatusCounts::default());
        assert_eq!(a.stats().latency, None);
    }

    #[test]
    fn time_windows_group_by_the_lines_own_time() {
        let mut windows = TimeWindows::new(10_000);
        windows.record_malformed();
        for (time_ms, status) in [(1_000, 200), (9_999, 500), (10_000, 200), (25_000, 404)] {
            windows.record(&LogLine {
                time_ms,
                status,
                request_time_us: 1,
            });
        }
        windows.record_malformed();
        let summary: Vec<_> = windows
            .windows()
            .map(|(start, w)| (start, w.counts().total, w.malformed))
            .collect();
        assert_eq!(summary, [(0, 2, 0), (10_000, 1, 0), (20_000, 1, 1)]);
        assert_eq!(windows.malformed, 1);
    }
}

#[cfg(test)]
#[path = "window_props.rs"]
mod props;
