//! Hosts' request-metrics windows merged into Elastic Beanstalk's `ApplicationMetrics`
//! (`API_ApplicationMetrics.html`, `docs/controller.md` ("Health")). Counts add; latency percentiles come
//! from one HDR histogram holding every host's recorded values, so they are real percentiles
//! of all requests, not averages of per-host percentiles.
//!
//! Semantics are the documented ones (AWS's own example disagrees): `RequestCount` is
//! requests per second over the window, `StatusCodes` are percentages of the window's
//! requests, latencies are seconds with millisecond resolution. EB types `RequestCount` and
//! `StatusCodes` as integers; ours are numbers with one decimal, so that a quiet environment's
//! 0.4 requests per second does not print as 0.

use hdrhistogram::Histogram;
use hostmanager_protocol::MetricsWindow;
use serde::{Deserialize, Serialize};

use crate::model::Millis;

/// The agent's histogram bounds (1 µs to an hour, 3 significant digits): the same buckets, so
/// adding recorded values is exact.
const MAX_LATENCY_US: u64 = 3_600_000_000;
const SIGNIFICANT_DIGITS: u8 = 3;

/// EB's `ApplicationMetrics`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ApplicationMetrics {
    /// Seconds the metrics cover ("usually 10 seconds").
    pub duration: u64,
    /// Requests per second over `duration`.
    pub request_count: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_codes: Option<StatusCodes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<Latency>,
}

/// Percentages of the window's requests per status class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusCodes {
    #[serde(rename = "Status2xx")]
    pub status_2xx: f64,
    #[serde(rename = "Status3xx")]
    pub status_3xx: f64,
    #[serde(rename = "Status4xx")]
    pub status_4xx: f64,
    #[serde(rename = "Status5xx")]
    pub status_5xx: f64,
}

/// Latency percentiles in seconds, millisecond resolution.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Latency {
    pub p999: f64,
    pub p99: f64,
    pub p95: f64,
    pub p90: f64,
    pub p85: f64,
    pub p75: f64,
    pub p50: f64,
    pub p10: f64,
}

/// Several windows added together: counts, the request rate and one latency histogram.
#[derive(Debug, Clone)]
pub struct MergedWindow {
    /// The longest window merged (hosts' windows cover the same period, side by side).
    pub duration_ms: u64,
    pub requests: u64,
    pub status_2xx: u64,
    pub status_3xx: u64,
    pub status_4xx: u64,
    pub status_5xx: u64,
    /// Sum of each window's requests per second.
    pub requests_per_second: f64,
    pub windows: usize,
    latency: Option<Histogram<u64>>,
}

impl Default for MergedWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl MergedWindow {
    pub fn new() -> Self {
        Self {
            duration_ms: 0,
            requests: 0,
            status_2xx: 0,
            status_3xx: 0,
            status_4xx: 0,
            status_5xx: 0,
            requests_per_second: 0.0,
            windows: 0,
            // Constant, valid bounds; `None` would only mean "no latencies" below.
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_US, SIGNIFICANT_DIGITS).ok(),
        }
    }

    pub fn add(&mut self, window: &MetricsWindow) {
        self.windows += 1;
        self.duration_ms = self.duration_ms.max(window.duration_ms);
        self.requests += window.requests;
        self.status_2xx += window.status_2xx;
        self.status_3xx += window.status_3xx;
        self.status_4xx += window.status_4xx;
        self.status_5xx += window.status_5xx;
        if window.duration_ms > 0 {
            self.requests_per_second += window.requests as f64 * 1000.0 / window.duration_ms as f64;
        }
        if let Some(histogram) = &mut self.latency {
            for [us, count] in &window.latency_us {
                // Clamped like the agent clamps: a value above an hour is an hour.
                histogram.saturating_record_n(*us, *count);
            }
        }
    }

    /// The latency at `quantile` (0..=1) in microseconds; `None` without latencies.
    pub fn percentile_us(&self, quantile: f64) -> Option<u64> {
        let histogram = self.latency.as_ref().filter(|h| !h.is_empty())?;
        Some(histogram.highest_equivalent(histogram.value_at_quantile(quantile)))
    }

    /// Percent of requests in the 5xx class (0 without requests).
    pub fn percent_5xx(&self) -> f64 {
        percent(self.status_5xx, self.requests)
    }

    pub fn percent_4xx(&self) -> f64 {
        percent(self.status_4xx, self.requests)
    }

    pub fn application_metrics(&self) -> ApplicationMetrics {
        let status_codes = (self.requests > 0).then(|| StatusCodes {
            status_2xx: round1(percent(self.status_2xx, self.requests)),
            status_3xx: round1(percent(self.status_3xx, self.requests)),
            status_4xx: round1(percent(self.status_4xx, self.requests)),
            status_5xx: round1(percent(self.status_5xx, self.requests)),
        });
        let seconds = |q: f64| self.percentile_us(q).map(us_to_seconds);
        let latency = (|| {
            Some(Latency {
                p999: seconds(0.999)?,
                p99: seconds(0.99)?,
                p95: seconds(0.95)?,
                p90: seconds(0.90)?,
                p85: seconds(0.85)?,
                p75: seconds(0.75)?,
                p50: seconds(0.50)?,
                p10: seconds(0.10)?,
            })
        })();
        ApplicationMetrics {
            duration: self.duration_ms.div_ceil(1000),
            request_count: round1(self.requests_per_second),
            status_codes,
            latency,
        }
    }
}

/// Merges the windows that ended after `newer_than_ms` (older ones describe a past the
/// environment is no longer in, e.g. a host that stopped reporting).
pub fn merge<'a>(
    windows: impl IntoIterator<Item = &'a MetricsWindow>,
    newer_than_ms: Millis,
) -> MergedWindow {
    let mut merged = MergedWindow::new();
    for window in windows {
        if window.ended_ms > newer_than_ms {
            merged.add(window);
        }
    }
    merged
}

/// The environment's `ApplicationMetrics` from its hosts' windows newer than the cut-off.
pub fn environment_metrics<'a>(
    windows: impl IntoIterator<Item = &'a MetricsWindow>,
    newer_than_ms: Millis,
) -> ApplicationMetrics {
    merge(windows, newer_than_ms).application_metrics()
}

/// One instance's `ApplicationMetrics` from its last window.
pub fn instance_metrics(window: &MetricsWindow) -> ApplicationMetrics {
    let mut merged = MergedWindow::new();
    merged.add(window);
    merged.application_metrics()
}

fn percent(part: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        part as f64 * 100.0 / total as f64
    }
}

fn round1(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

/// Seconds with EB's millisecond resolution.
fn us_to_seconds(us: u64) -> f64 {
    (us as f64 / 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(ended_ms: i64, latencies_ms: &[(u64, u64)], classes: [u64; 4]) -> MetricsWindow {
        let requests = classes.iter().sum();
        MetricsWindow {
            ended_ms,
            duration_ms: 10_000,
            requests,
            status_2xx: classes[0],
            status_3xx: classes[1],
            status_4xx: classes[2],
            status_5xx: classes[3],
            latency_us: latencies_ms.iter().map(|&(ms, n)| [ms * 1000, n]).collect(),
            ..MetricsWindow::default()
        }
    }

    #[test]
    fn two_hosts_merge_like_one_host_with_all_the_values() {
        let a = window(1_000, &[(5, 50), (20, 10), (900, 1)], [60, 0, 1, 0]);
        let b = window(1_000, &[(5, 30), (40, 8), (2_000, 2)], [30, 5, 0, 5]);
        let all = window(
            1_000,
            &[(5, 80), (20, 10), (40, 8), (900, 1), (2_000, 2)],
            [90, 5, 1, 5],
        );
        let merged = environment_metrics([&a, &b], 0);
        let single = instance_metrics(&all);
        assert_eq!(merged.latency, single.latency);
        assert_eq!(merged.status_codes, single.status_codes);
        // Two hosts' 10 s windows side by side: their rates add.
        assert_eq!(merged.request_count, 10.1);
        assert_eq!(single.request_count, 10.1);
        assert_eq!(merged.duration, 10);
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        // 1 ms, 2 ms, …, 1000 ms, once each: the q-th percentile is q·1000 ms.
        let values: Vec<(u64, u64)> = (1..=1000).map(|ms| (ms, 1)).collect();
        let metrics = instance_metrics(&window(0, &values, [1000, 0, 0, 0]));
        let latency = metrics.latency.expect("the test sets it up");
        // HDR's 3 significant digits: within 0.1 % of the exact value, never below it.
        let close = |got: f64, want: f64| got >= want && got <= want * 1.001 + 0.001;
        assert!(close(latency.p10, 0.1), "{latency:?}");
        assert!(close(latency.p50, 0.5), "{latency:?}");
        assert!(close(latency.p75, 0.75), "{latency:?}");
        assert!(close(latency.p90, 0.9), "{latency:?}");
        assert!(close(latency.p99, 0.99), "{latency:?}");
        assert!(close(latency.p999, 0.999), "{latency:?}");
    }

    #[test]
    fn merged_percentiles_are_not_averages() {
        // One fast host and one slow host: the merged median is the slow one's, where an
        // average of per-host medians would be half-way.
        let fast = window(0, &[(1, 40)], [40, 0, 0, 0]);
        let slow = window(0, &[(1_000, 60)], [60, 0, 0, 0]);
        let latency = environment_metrics([&fast, &slow], -1)
            .latency
            .expect("the test sets it up");
        assert!((latency.p50 - 1.0).abs() < 0.002, "{latency:?}");
        assert_eq!(latency.p10, 0.001);
    }

    #[test]
    fn only_windows_newer_than_the_cut_off_count() {
        let old = window(5_000, &[(1, 100)], [0, 0, 0, 100]);
        let new = window(15_000, &[(2, 10)], [10, 0, 0, 0]);
        let merged = merge([&old, &new], 10_000);
        assert_eq!(merged.windows, 1);
        assert_eq!(merged.requests, 10);
        assert_eq!(merged.percent_5xx(), 0.0);
    }

    #[test]
    fn status_codes_are_percentages_and_shape_is_ebs() {
        let w = window(0, &[(12, 1000)], [801, 0, 0, 199]);
        let metrics = instance_metrics(&w);
        let json = serde_json::to_value(&metrics).expect("the test sets it up");
        assert_eq!(json["Duration"], 10);
        assert_eq!(json["RequestCount"], 100.0);
        assert_eq!(json["StatusCodes"]["Status5xx"], 19.9);
        assert_eq!(json["StatusCodes"]["Status2xx"], 80.1);
        assert_eq!(json["Latency"]["P999"], 0.012);
        for key in ["P999", "P99", "P95", "P90", "P85", "P75", "P50", "P10"] {
            assert!(json["Latency"].get(key).is_some(), "{key}");
        }
    }

    #[test]
    fn no_requests_no_codes_no_latency() {
        let metrics = instance_metrics(&MetricsWindow::default());
        assert_eq!(metrics.status_codes, None);
        assert_eq!(metrics.latency, None);
        let json = serde_json::to_value(&metrics).expect("the test sets it up");
        assert!(json.get("Latency").is_none());
        assert_eq!(json["RequestCount"], 0.0);
    }
}
