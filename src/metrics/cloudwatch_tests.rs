use super::*;
use crate::metrics::cpu::CpuPercent;
use crate::metrics::healthd::LogLine;

fn report(ended_ms: i64, statuses: &[u16], idle: f64) -> WindowReport {
    let mut requests = RequestWindow::new();
    for status in statuses {
        requests.record(&LogLine {
            time_ms: ended_ms,
            status: *status,
            request_time_us: 250_000,
        });
    }
    WindowReport {
        ended_ms,
        requests,
        host: HostSample {
            cpu: Some(CpuPercent {
                idle,
                user: 100.0 - idle,
                ..CpuPercent::default()
            }),
            ..HostSample::default()
        },
        worker: None,
    }
}

fn find<'a>(datums: &'a [Datum], name: &str) -> &'a DatumValue {
    &datums
        .iter()
        .find(|d| d.name == name)
        .unwrap_or_else(|| panic!("no datum {name} in {datums:#?}"))
        .value
}

#[test]
fn a_period_becomes_one_datum_per_metric() {
    let mut aggregator = PeriodAggregator::new(60_000);
    assert!(
        aggregator
            .add(&report(130_000, &[200, 200, 500], 90.0), 0)
            .is_empty()
    );
    assert!(
        aggregator
            .add(&report(140_000, &[404], 70.0), 20)
            .is_empty()
    );
    let datums = aggregator.add(&report(190_000, &[200], 50.0), 0);
    assert!(datums.iter().all(|d| d.timestamp_ms == 120_000));
    assert_eq!(
        find(&datums, "ApplicationRequestsTotal"),
        &DatumValue::Stats {
            count: 2.0,
            sum: 4.0,
            min: 1.0,
            max: 3.0
        }
    );
    assert_eq!(
        find(&datums, "ApplicationRequests5xx"),
        &DatumValue::Stats {
            count: 2.0,
            sum: 1.0,
            min: 0.0,
            max: 1.0
        }
    );
    assert_eq!(
        find(&datums, "ApplicationLatencyP99.9"),
        &DatumValue::Stats {
            count: 1.0,
            sum: 0.250111,
            min: 0.250111,
            max: 0.250111
        },
        "250 ms rounded up to its histogram bucket (within 0.1 %)"
    );
    assert_eq!(
        find(&datums, "CPUIdle"),
        &DatumValue::Stats {
            count: 2.0,
            sum: 160.0,
            min: 70.0,
            max: 90.0
        }
    );
    assert_eq!(
        find(&datums, "InstanceHealth"),
        &DatumValue::Values {
            values: vec![0.0, 20.0],
            counts: vec![1.0, 1.0]
        }
    );
    // No root filesystem in these samples: no RootFilesystemUtil.
    assert_eq!(datums.len(), 5 + 8 + 7 + 2 + 1);
    let last = aggregator.flush();
    assert!(last.iter().all(|d| d.timestamp_ms == 180_000));
    assert!(aggregator.flush().is_empty());
}

#[test]
fn no_requests_means_zero_counts_and_no_latency() {
    let mut aggregator = PeriodAggregator::new(60_000);
    aggregator.add(&report(10_000, &[], 99.0), 0);
    let datums = aggregator.flush();
    assert_eq!(
        find(&datums, "ApplicationRequestsTotal"),
        &DatumValue::Stats {
            count: 1.0,
            sum: 0.0,
            min: 0.0,
            max: 0.0
        }
    );
    assert!(
        !datums
            .iter()
            .any(|d| d.name.starts_with("ApplicationLatency"))
    );
}

#[test]
fn batches_respect_the_call_limits() {
    let datum = Datum {
        name: "CPUUser".into(),
        unit: Unit::Percent,
        timestamp_ms: 0,
        value: DatumValue::Stats {
            count: 1.0,
            sum: 1.0,
            min: 1.0,
            max: 1.0,
        },
    };
    let many = vec![datum.clone(); 2500];
    assert_eq!(next_batch_len(&many, 40), MAX_DATUMS_PER_CALL);
    assert_eq!(next_batch_len(&many[2000..], 40), 500);
    assert_eq!(next_batch_len(&[], 40), 0);
    // Huge dimensions: the byte limit binds first, but one datum always goes.
    assert_eq!(next_batch_len(&many, 100_000), 8);
    assert_eq!(next_batch_len(&many[..1], 2_000_000), 1);
}

#[test]
fn a_workers_messages_become_their_own_datums() {
    let mut aggregator = PeriodAggregator::new(60_000);
    for (ended, processed, failed) in [(10_000, 3, 1), (20_000, 5, 0)] {
        let mut window = report(ended, &[200], 90.0);
        let mut worker = crate::worker::WorkerWindow::default();
        for _ in 0..processed {
            worker.record(true, 40);
        }
        for _ in 0..failed {
            worker.record(false, 2_000);
        }
        window.worker = Some(worker);
        assert!(aggregator.add(&window, 0).is_empty());
    }
    let datums = aggregator.flush();
    assert_eq!(
        find(&datums, "WorkerMessagesProcessed"),
        &DatumValue::Stats {
            count: 2.0,
            sum: 8.0,
            min: 3.0,
            max: 5.0
        }
    );
    assert_eq!(
        find(&datums, "WorkerMessagesFailed"),
        &DatumValue::Stats {
            count: 2.0,
            sum: 1.0,
            min: 0.0,
            max: 1.0
        }
    );
    let DatumValue::Stats { sum: p50, .. } = find(&datums, "WorkerLatencyP50") else {
        panic!("stats")
    };
    assert!((p50 - 0.04).abs() < 0.001, "{p50}");
    // A web server has none.
    let mut web = PeriodAggregator::new(60_000);
    web.add(&report(10_000, &[200], 90.0), 0);
    assert!(web.flush().iter().all(|d| !d.name.starts_with("Worker")));
}
