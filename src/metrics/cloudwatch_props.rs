//! The period aggregator's law: each window counts in exactly one period, the one it covered
//! (a window ending on a boundary belongs to the period before it), and a period's datums say
//! what its windows say: request counts summed per window, latency percentiles of all the
//! period's requests merged.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::super::healthd::LogLine;
use super::super::host::HostSample;
use super::{DatumValue, PERCENTILES, PeriodAggregator, RequestWindow, WindowReport};

const PERIOD_MS: i64 = 60_000;

/// Closed windows in time order: each ends `gap` after the previous one, with these latencies
/// (ms) and statuses.
fn windows() -> impl Strategy<Value = Vec<(i64, Vec<(u16, u64)>)>> {
    let requests = prop::collection::vec(
        (
            prop::sample::select(&[200u16, 302, 404, 503][..]),
            0..3_000u64,
        ),
        0..6,
    );
    let gap = prop_oneof![Just(10_000i64), 1..40_000i64, Just(PERIOD_MS)];
    prop::collection::vec((gap, requests), 1..25)
}

fn report(ended_ms: i64, requests: &[(u16, u64)]) -> WindowReport {
    let mut window = RequestWindow::new();
    for &(status, ms) in requests {
        window.record(&LogLine {
            time_ms: ended_ms,
            status,
            request_time_us: ms * 1000,
        });
    }
    WindowReport {
        ended_ms,
        requests: window,
        host: HostSample::default(),
        worker: None,
    }
}

proptest! {
    // A window holds a ~90 KiB histogram: fewer cases.
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn each_window_counts_once_in_the_period_it_covered(
        // Often on a 10 s boundary, as the agent's windows are, so windows end on period ones.
        start_ms in prop_oneof![
            (170_000_000..170_000_060i64).prop_map(|k| k * 10_000),
            1_700_000_000_000..1_700_000_600_000i64,
        ],
        windows in windows(),
    ) {
        let mut aggregator = PeriodAggregator::new(PERIOD_MS);
        let mut datums = Vec::new();
        // Per period start: (windows, requests, all of its requests in one window).
        let mut expected: BTreeMap<i64, (u64, u64, RequestWindow)> = BTreeMap::new();
        let mut ended_ms = start_ms;
        for (gap, requests) in &windows {
            ended_ms += gap;
            let report = report(ended_ms, requests);
            // The period of the window's last millisecond, `ended_ms - 1`.
            let period = (ended_ms - 1).div_euclid(PERIOD_MS) * PERIOD_MS;
            let entry = expected.entry(period).or_insert_with(|| (0, 0, RequestWindow::new()));
            entry.0 += 1;
            entry.1 += requests.len() as u64;
            entry.2.merge(&report.requests);
            datums.extend(aggregator.add(&report, 0));
        }
        datums.extend(aggregator.flush());
        let totals: BTreeMap<i64, (f64, f64)> = datums
            .iter()
            .filter(|d| d.name == "ApplicationRequestsTotal")
            .map(|d| match d.value {
                DatumValue::Stats { count, sum, .. } => Ok((d.timestamp_ms, (count, sum))),
                _ => Err(TestCaseError::fail("not a statistic set")),
            })
            .collect::<Result<_, _>>()?;
        let emitted = datums.iter().filter(|d| d.name == "ApplicationRequestsTotal").count();
        prop_assert_eq!(emitted, expected.len(), "a period emitted twice");
        let wanted: BTreeMap<i64, (f64, f64)> = expected
            .iter()
            .map(|(start, (n, requests, _))| (*start, (*n as f64, *requests as f64)))
            .collect();
        prop_assert_eq!(totals, wanted);
        for (start, (_, _, merged)) in &expected {
            for (quantile, suffix) in PERCENTILES {
                let name = format!("ApplicationLatency{suffix}");
                let got = datums.iter().find(|d| d.name == name && d.timestamp_ms == *start);
                let want = merged.percentile_us(quantile).map(|us| us as f64 / 1e6);
                let got = got.map(|d| match d.value {
                    DatumValue::Stats { sum, .. } => sum,
                    _ => f64::NAN,
                });
                prop_assert_eq!(got, want, "{} of the period at {}", name, start);
            }
        }
    }
}
