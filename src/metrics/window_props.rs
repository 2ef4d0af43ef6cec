//! Properties of request windows: merging is adding (what `aggregate` and the controller rely
//! on), every line counts once in the window of its time, and percentiles stay within the
//! error the module doc states.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::{LogLine, MAX_LATENCY_US, PERCENTILES, RequestWindow, TimeWindows};

/// Log-uniform microseconds up to past the one-hour clamp: the exact range below 2.048 ms,
/// the bucketed range above, and clamped values all occur.
fn latency_us() -> impl Strategy<Value = u64> {
    (0..=33u32, any::<u64>()).prop_map(|(bits, random)| random % (1u64 << bits))
}

fn status() -> impl Strategy<Value = u16> {
    prop_oneof![
        4 => prop::sample::select(&[200u16, 204, 301, 304, 404, 499, 500, 503][..]),
        1 => 100..1000u16,
    ]
}

fn line(times_ms: std::ops::Range<i64>) -> impl Strategy<Value = LogLine> {
    (times_ms, status(), latency_us()).prop_map(|(time_ms, status, request_time_us)| LogLine {
        time_ms,
        status,
        request_time_us,
    })
}

fn window_of(lines: &[LogLine]) -> RequestWindow {
    let mut window = RequestWindow::new();
    for line in lines {
        window.record(line);
    }
    window
}

/// The sample at rank ⌈q·n⌉ (nearest rank) of `sorted`, in exact arithmetic: the quantiles are
/// whole thousandths, so the rank is computed in integers, not in floating point.
fn nearest_rank(sorted: &[u64], quantile: f64) -> u64 {
    let thousandths = (quantile * 1000.0).round() as usize;
    let rank = (thousandths * sorted.len()).div_ceil(1000).max(1);
    sorted[rank - 1]
}

/// A healthd log as a reader sees it: parsed lines and lines it could not parse.
#[derive(Debug, Clone)]
enum Item {
    Line(LogLine),
    Malformed,
}

fn items() -> impl Strategy<Value = Vec<Item>> {
    let item = prop_oneof![
        9 => line(-20_000..60_000).prop_map(Item::Line),
        1 => Just(Item::Malformed),
    ];
    prop::collection::vec(item, 0..300)
}

fn read(items: &[Item], length_ms: i64) -> TimeWindows {
    let mut windows = TimeWindows::new(length_ms);
    for item in items {
        match item {
            Item::Line(line) => windows.record(line),
            Item::Malformed => windows.record_malformed(),
        }
    }
    windows
}

/// Per window start: the window's statistics (without malformed lines) and its latencies.
type Summary = BTreeMap<i64, (super::StatusCounts, Option<super::Latency>, Vec<[u64; 2]>)>;

fn summary(windows: &mut TimeWindows) -> Summary {
    windows
        .windows()
        .map(|(start, w)| {
            let stats = w.stats();
            (start, (stats.counts, stats.latency, w.recorded_us()))
        })
        .collect()
}

fn malformed_total(windows: &mut TimeWindows) -> u64 {
    windows.malformed + windows.windows().map(|(_, w)| w.malformed).sum::<u64>()
}

proptest! {
    // A window holds a ~90 KiB histogram, and these cases make hundreds: fewer cases.
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn merging_two_windows_equals_aggregating_all_lines(
        lines in prop::collection::vec(line(0..1), 0..400),
        in_first in prop::collection::vec(any::<bool>(), 400),
        malformed in (0..5u64, 0..5u64),
    ) {
        let (mut first, mut second) = (RequestWindow::new(), RequestWindow::new());
        for (line, first_one) in lines.iter().zip(&in_first) {
            if *first_one { first.record(line) } else { second.record(line) }
        }
        (first.malformed, second.malformed) = malformed;
        let mut all = window_of(&lines);
        all.malformed = malformed.0 + malformed.1;
        let mut other_way = second.clone();
        other_way.merge(&first);
        first.merge(&second);
        prop_assert_eq!(first.stats(), all.stats());
        prop_assert_eq!(first.recorded_us(), all.recorded_us());
        prop_assert_eq!(other_way.stats(), all.stats());
        prop_assert_eq!(all.counts().total, lines.len() as u64);
    }

    #[test]
    fn every_request_falls_in_exactly_one_status_class(statuses in prop::collection::vec(status(), 0..200)) {
        let mut window = RequestWindow::new();
        for &status in &statuses {
            window.record(&LogLine { time_ms: 0, status, request_time_us: 1 });
        }
        let c = window.stats().counts;
        prop_assert_eq!(c.total, statuses.len() as u64);
        prop_assert_eq!(
            c.informational + c.success + c.redirect + c.client_error + c.server_error,
            c.total
        );
        let class = |low: u16| statuses.iter().filter(|s| **s / 100 == low / 100).count() as u64;
        prop_assert_eq!(
            (c.informational, c.success, c.redirect, c.client_error),
            (class(100), class(200), class(300), class(400))
        );
    }

    #[test]
    fn percentiles_stay_within_the_documented_error(
        samples in prop::collection::vec(latency_us(), 1..500),
    ) {
        let window = window_of(&samples.iter().map(|&us| LogLine {
            time_ms: 0, status: 200, request_time_us: us,
        }).collect::<Vec<_>>());
        // Above an hour, a latency counts as an hour.
        let mut sorted: Vec<u64> = samples.iter().map(|&us| us.min(MAX_LATENCY_US)).collect();
        sorted.sort_unstable();
        let latency = window.stats().latency.expect("one request at least");
        for ((quantile, label), seconds) in PERCENTILES.iter().zip(latency.values()) {
            let exact = nearest_rank(&sorted, *quantile);
            let reported = window.percentile_us(*quantile).expect("one request at least");
            prop_assert!(
                exact <= reported && reported <= exact + exact / 1024,
                "{}: reported {} µs, exact {} µs", label, reported, exact
            );
            if exact < 2_048 {
                prop_assert_eq!(reported, exact, "{} is exact below 2.048 ms", label);
            }
            prop_assert!((seconds - reported as f64 / 1e6).abs() < 1e-9, "{}", label);
        }
    }

    #[test]
    fn every_line_counts_once_in_the_window_of_its_own_time(
        items in items(),
        length_ms in prop_oneof![Just(10_000i64), 1_000..50_000i64],
    ) {
        let mut windows = read(&items, length_ms);
        let mut expected: BTreeMap<i64, u64> = BTreeMap::new();
        for item in &items {
            if let Item::Line(line) = item {
                *expected.entry(line.time_ms.div_euclid(length_ms) * length_ms).or_default() += 1;
            }
        }
        let counted: BTreeMap<i64, u64> =
            windows.windows().map(|(start, w)| (start, w.counts().total)).collect();
        prop_assert_eq!(counted, expected);
        let malformed = items.iter().filter(|i| matches!(i, Item::Malformed)).count() as u64;
        prop_assert_eq!(malformed_total(&mut windows), malformed);
    }

    #[test]
    fn merging_the_windows_of_two_parts_equals_reading_the_whole(
        items in items(),
        cut in any::<prop::sample::Index>(),
        length_ms in prop_oneof![Just(10_000i64), 1_000..50_000i64],
    ) {
        // As `aggregate_file` does: the log cut in two, each part read by its own reader.
        let cut = cut.index(items.len() + 1);
        let mut whole = read(&items, length_ms);
        let mut merged = read(&items[..cut], length_ms);
        merged.merge(read(&items[cut..], length_ms));
        prop_assert_eq!(summary(&mut merged), summary(&mut whole));
        // A malformed line may count in another window (the second reader has no line before
        // its first), but it counts once.
        prop_assert_eq!(malformed_total(&mut merged), malformed_total(&mut whole));
    }
}
