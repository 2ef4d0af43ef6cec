//! CloudWatch datums from the 10-second windows. Pure: the sink task (`sink.rs`) turns them into
//! SDK calls.
//!
//! Cost: one datum per metric per period (60 s by default), each a statistic set (sample count,
//! sum, min, max over the period's windows) or, for `InstanceHealth`, value/count arrays: about
//! 25 datums a minute, one `PutMetricData` call. Latency percentiles are computed over the
//! whole period's merged histogram (exact to 0.1 %), not averaged from the windows' ones.

use std::collections::BTreeMap;

use super::host::HostSample;
use super::window::{PERCENTILES, RequestWindow};

/// `PutMetricData` limits: 1000 datums and 1 MB of request per call (CBOR is smaller than the
/// estimate below, which leaves a margin).
pub const MAX_DATUMS_PER_CALL: usize = 1000;
pub const MAX_BYTES_PER_CALL: usize = 900_000;

/// One closed window as the metrics task hands it to the sink.
#[derive(Debug, Clone)]
pub struct WindowReport {
    pub ended_ms: i64,
    pub requests: RequestWindow,
    pub host: HostSample,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Seconds,
    Percent,
    None,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DatumValue {
    Stats {
        count: f64,
        sum: f64,
        min: f64,
        max: f64,
    },
    /// Distinct values and how often each was seen.
    Values { values: Vec<f64>, counts: Vec<f64> },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Datum {
    pub name: String,
    pub unit: Unit,
    /// Start of the period, milliseconds since the epoch.
    pub timestamp_ms: i64,
    pub value: DatumValue,
}

#[derive(Debug, Clone, Copy, Default)]
struct Stat {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl Stat {
    fn add(&mut self, value: f64) {
        if self.count == 0 {
            self.min = value;
            self.max = value;
        } else {
            self.min = self.min.min(value);
            self.max = self.max.max(value);
        }
        self.count += 1;
        self.sum += value;
    }

    fn value(&self) -> Option<DatumValue> {
        (self.count > 0).then_some(DatumValue::Stats {
            count: self.count as f64,
            sum: self.sum,
            min: self.min,
            max: self.max,
        })
    }
}

const REQUEST_METRICS: [&str; 5] = [
    "ApplicationRequestsTotal",
    "ApplicationRequests2xx",
    "ApplicationRequests3xx",
    "ApplicationRequests4xx",
    "ApplicationRequests5xx",
];
const CPU_METRICS: [&str; 7] = [
    "CPUUser",
    "CPUNice",
    "CPUSystem",
    "CPUIdle",
    "CPUIowait",
    "CPUIrq",
    "CPUSoftirq",
];

#[derive(Debug)]
struct Period {
    start_ms: i64,
    requests: RequestWindow,
    request_counts: [Stat; 5],
    cpu: [Stat; 7],
    load1: Stat,
    load5: Stat,
    root_fs: Stat,
    health: BTreeMap<u32, u32>,
}

/// Folds windows into periods; a period's datums come out when a window of a later period
/// arrives (or on `flush`).
#[derive(Debug)]
pub struct PeriodAggregator {
    period_ms: i64,
    current: Option<Period>,
}

impl PeriodAggregator {
    pub fn new(period_ms: i64) -> Self {
        Self {
            period_ms: period_ms.max(1),
            current: None,
        }
    }

    /// Adds a window and the instance's health code at its end; returns the datums of the
    /// period this window closed, if any.
    pub fn add(&mut self, report: &WindowReport, health_code: u32) -> Vec<Datum> {
        // A window ending exactly on a boundary belongs to the period it covered.
        let start = (report.ended_ms - 1).div_euclid(self.period_ms) * self.period_ms;
        let finished = match &self.current {
            Some(period) if period.start_ms != start => self.flush(),
            _ => Vec::new(),
        };
        let period = self.current.get_or_insert_with(|| Period {
            start_ms: start,
            requests: RequestWindow::new(),
            request_counts: [Stat::default(); 5],
            cpu: [Stat::default(); 7],
            load1: Stat::default(),
            load5: Stat::default(),
            root_fs: Stat::default(),
            health: BTreeMap::new(),
        });
        period.requests.merge(&report.requests);
        let counts = report.requests.counts();
        let per_class = [
            counts.total,
            counts.success,
            counts.redirect,
            counts.client_error,
            counts.server_error,
        ];
        for (stat, count) in period.request_counts.iter_mut().zip(per_class) {
            stat.add(count as f64);
        }
        let host = &report.host;
        if let Some(cpu) = &host.cpu {
            let modes = [
                cpu.user,
                cpu.nice,
                cpu.system,
                cpu.idle,
                cpu.iowait,
                cpu.irq,
                cpu.softirq,
            ];
            for (stat, value) in period.cpu.iter_mut().zip(modes) {
                stat.add(value);
            }
        }
        period.load1.add(host.load_average.one);
        period.load5.add(host.load_average.five);
        if let Some(fs) = &host.root_filesystem {
            period.root_fs.add(fs.used_percent);
        }
        *period.health.entry(health_code).or_default() += 1;
        finished
    }

    /// The datums of the period in progress (on shutdown).
    pub fn flush(&mut self) -> Vec<Datum> {
        self.current.take().map(datums).unwrap_or_default()
    }
}

fn datums(period: Period) -> Vec<Datum> {
    let mut out = Vec::with_capacity(32);
    let mut push = |name: &str, unit: Unit, value: Option<DatumValue>| {
        if let Some(value) = value {
            out.push(Datum {
                name: name.to_string(),
                unit,
                timestamp_ms: period.start_ms,
                value,
            });
        }
    };
    for (name, stat) in REQUEST_METRICS.iter().zip(&period.request_counts) {
        push(name, Unit::Count, stat.value());
    }
    for (quantile, suffix) in PERCENTILES {
        let value = period.requests.percentile_us(quantile).map(|us| {
            let seconds = us as f64 / 1e6;
            DatumValue::Stats {
                count: 1.0,
                sum: seconds,
                min: seconds,
                max: seconds,
            }
        });
        push(&format!("ApplicationLatency{suffix}"), Unit::Seconds, value);
    }
    for (name, stat) in CPU_METRICS.iter().zip(&period.cpu) {
        push(name, Unit::Percent, stat.value());
    }
    push("LoadAverage1min", Unit::None, period.load1.value());
    push("LoadAverage5min", Unit::None, period.load5.value());
    push("RootFilesystemUtil", Unit::Percent, period.root_fs.value());
    let (values, counts) = period
        .health
        .iter()
        .map(|(code, n)| (f64::from(*code), f64::from(*n)))
        .unzip();
    push(
        "InstanceHealth",
        Unit::None,
        Some(DatumValue::Values { values, counts }),
    );
    out
}

/// A generous estimate of a datum's size in a request, dimensions included.
pub fn estimated_size(datum: &Datum, dimensions_bytes: usize) -> usize {
    let value = match &datum.value {
        DatumValue::Stats { .. } => 4 * 12,
        DatumValue::Values { values, .. } => values.len() * 2 * 12,
    };
    64 + datum.name.len() + dimensions_bytes + value
}

/// How many datums from the front of `datums` fit in one call.
pub fn next_batch_len(datums: &[Datum], dimensions_bytes: usize) -> usize {
    let mut bytes = 256;
    let mut count = 0;
    for datum in datums.iter().take(MAX_DATUMS_PER_CALL) {
        bytes += estimated_size(datum, dimensions_bytes);
        if bytes > MAX_BYTES_PER_CALL && count > 0 {
            break;
        }
        count += 1;
    }
    count
}

#[cfg(test)]
mod tests {
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
}
