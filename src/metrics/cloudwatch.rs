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
    /// A worker host's daemon in the window.
    pub worker: Option<crate::worker::WorkerWindow>,
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
const WORKER_METRICS: [&str; 2] = ["WorkerMessagesProcessed", "WorkerMessagesFailed"];
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
    /// Per window: processed, failed; and the period's merged latencies.
    worker_counts: [Stat; 2],
    worker: Option<crate::worker::WorkerWindow>,
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
            worker_counts: [Stat::default(); 2],
            worker: None,
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
        if let Some(worker) = &report.worker {
            period.worker_counts[0].add(worker.processed as f64);
            period.worker_counts[1].add(worker.failed as f64);
            period
                .worker
                .get_or_insert_with(Default::default)
                .merge(worker);
        }
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
    // The worker daemon's (Elastic Beanstalk has no per-instance worker metrics; sqsd's own
    // `ElasticBeanstalk/SQSD Health` is the agent's health here).
    if let Some(worker) = &period.worker {
        for (name, stat) in WORKER_METRICS.iter().zip(&period.worker_counts) {
            push(name, Unit::Count, stat.value());
        }
        for (quantile, suffix) in [(0.5, "P50"), (0.9, "P90"), (0.99, "P99")] {
            let value = worker.percentile_ms(quantile).map(|ms| {
                let seconds = ms as f64 / 1e3;
                DatumValue::Stats {
                    count: 1.0,
                    sum: seconds,
                    min: seconds,
                    max: seconds,
                }
            });
            push(&format!("WorkerLatency{suffix}"), Unit::Seconds, value);
        }
    }
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
#[path = "cloudwatch_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "cloudwatch_props.rs"]
mod props;
