//! Metrics: request statistics from nginx's healthd log and host metrics, per window (10 s by
//! default), published on a `watch` channel for the health task and the control API, and
//! handed to the CloudWatch sink.
//!
//! A request counts in the window during which the agent READ its line (at most a poll
//! interval after nginx wrote it), not by its `$msec`: nginx workers write slightly out of
//! order and clocks jump, while read positions are exact. That is what makes the checkpoint
//! exact: when a window closes, the position after its last line is saved before the window is
//! published, so a restart resumes with the first line no window counted yet.

mod aggregate;
mod cloudwatch;
mod cpu;
mod follow;
mod healthd;
mod host;
mod sink;
mod window;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

pub use aggregate::{Aggregated, aggregate_file};
pub use cloudwatch::{
    Datum, DatumValue, MAX_BYTES_PER_CALL, MAX_DATUMS_PER_CALL, PeriodAggregator, Unit,
    WindowReport, next_batch_len,
};
pub use cpu::{CpuPercent, CpuTimes, parse_proc_stat};
pub use follow::{Checkpoint, LogFollower, PollOutcome};
pub use healthd::{LineError, LogLine, PREFIX as HEALTHD_PREFIX, is_hour_file, parse_line};
pub use host::{Filesystem, HostSample, HostSampler, LoadAverage, Memory, ProcessUsage};
pub use sink::{CloudWatchSink, SinkStatus};
pub use window::{Latency, PERCENTILES, RequestStats, RequestWindow, StatusCounts, TimeWindows};

use crate::paths::Paths;
use crate::supervise::Supervisor;

/// Most bytes of log read per poll, so a large backlog cannot hold a window open.
const POLL_BUDGET: u64 = 64 << 20;

/// The last closed window, as `GET /v1/health` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsSnapshot {
    /// RFC 3339 end of the window.
    pub ended_at: String,
    pub window_secs: f64,
    pub requests: RequestStats,
    pub requests_per_second: f64,
    /// Since the agent started.
    pub totals: Totals,
    pub host: HostSample,
    /// The window's latencies as `[microseconds, count]`, for the controller (which merges
    /// them across hosts); not in `GET /v1/health`, whose percentiles say the same for people.
    #[serde(skip)]
    pub latency_us: Vec<[u64; 2]>,
    /// A worker host's SQS daemon in the window: messages processed, failed, latency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<crate::worker::WorkerWindowStats>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub requests: StatusCounts,
    /// Lines skipped because they are not healthd lines (or were never completed).
    pub malformed_lines: u64,
    pub windows: u64,
    /// Windows the CloudWatch sink could not take (its queue was full).
    pub windows_not_queued: u64,
}

/// The reading side of a window, moved into blocking threads for file and /proc I/O.
#[derive(Debug)]
struct Reader {
    follower: LogFollower,
    window: RequestWindow,
    sampler: HostSampler,
    checkpoint_file: PathBuf,
    checkpoint_errors: u64,
}

impl Reader {
    fn poll(&mut self) {
        let window = &mut self.window;
        let outcome = self.follower.poll(POLL_BUDGET, |line| match line {
            Ok(line) => window.record(&line),
            Err(_) => window.malformed += 1,
        });
        if let Err(error) = outcome {
            tracing::warn!(%error, "cannot read the healthd log");
        }
    }

    /// Reads the rest, saves the position, hands the window over and starts a new one.
    fn close(&mut self, processes: Vec<ProcessUsage>) -> (RequestWindow, HostSample) {
        self.poll();
        let host = self.sampler.sample(processes);
        let checkpoint = self.follower.checkpoint();
        if let Err(error) =
            crate::fsutil::write_json_atomic(&self.checkpoint_file, &checkpoint, 0o644)
        {
            // Counting beats exactness: the window is still published.
            self.checkpoint_errors += 1;
            if self.checkpoint_errors.is_power_of_two() {
                tracing::error!(%error, file = %self.checkpoint_file.display(), "cannot save the healthd log position");
            }
        }
        let mut closed = RequestWindow::new();
        std::mem::swap(&mut closed, &mut self.window);
        (closed, host)
    }
}

/// The metrics task.
#[derive(Debug)]
pub struct MetricsTask {
    window: Duration,
    supervisor: Supervisor,
    reader: Option<Reader>,
    totals: Totals,
    publish: watch::Sender<Option<Arc<MetricsSnapshot>>>,
    sink: Option<mpsc::Sender<WindowReport>>,
    /// The worker daemon's counts, taken at each window's end (a worker host's only).
    worker: Option<crate::worker::Meter>,
    /// The config a live reconfiguration (SIGHUP) publishes: `metrics.window`.
    updates: Option<watch::Receiver<Arc<crate::config::Config>>>,
}

impl MetricsTask {
    pub fn new(
        window: Duration,
        paths: &Paths,
        supervisor: Supervisor,
    ) -> (Self, watch::Receiver<Option<Arc<MetricsSnapshot>>>) {
        let checkpoint_file = paths.healthd_checkpoint();
        let saved: Option<Checkpoint> = crate::fsutil::read_json(&checkpoint_file)
            .inspect_err(|error| tracing::warn!(%error, "ignoring the healthd log position"))
            .ok()
            .flatten();
        let first_start = saved.is_none();
        let follower = LogFollower::open(&paths.healthd_log_dir(), saved);
        if first_start {
            // Saved at once: a restart before the first window must not skip what came since.
            let _ =
                crate::fsutil::write_json_atomic(&checkpoint_file, &follower.checkpoint(), 0o644);
        }
        let reader = Reader {
            follower,
            window: RequestWindow::new(),
            sampler: HostSampler::new(paths.root().to_path_buf()),
            checkpoint_file,
            checkpoint_errors: 0,
        };
        let (publish, snapshots) = watch::channel(None);
        let task = Self {
            window,
            supervisor,
            reader: Some(reader),
            totals: Totals::default(),
            publish,
            sink: None,
            worker: None,
            updates: None,
        };
        (task, snapshots)
    }

    /// Every closed window also goes to the returned receiver (the CloudWatch sink). The
    /// queue is bounded: when it is full the window is not queued and counted, never waited on.
    pub fn feed_sink(&mut self) -> mpsc::Receiver<WindowReport> {
        let (tx, rx) = mpsc::channel(64);
        self.sink = Some(tx);
        rx
    }

    /// Each window also counts the worker daemon's messages.
    pub fn with_worker_meter(&mut self, meter: crate::worker::Meter) {
        self.worker = Some(meter);
    }

    /// Takes `metrics.window` from each config a live reconfiguration publishes. The window
    /// open at the change closes at its planned end: every window is as long as it says.
    pub fn with_config_updates(&mut self, updates: watch::Receiver<Arc<crate::config::Config>>) {
        self.updates = Some(updates);
    }

    fn timers(&self) -> (tokio::time::Interval, tokio::time::Interval) {
        let poll_every = (self.window / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        let mut poll = tokio::time::interval(poll_every);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let start = tokio::time::Instant::now() + self.window;
        let mut close = tokio::time::interval_at(start, self.window);
        close.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        (poll, close)
    }

    pub async fn run(mut self, cancel: CancellationToken) {
        let (mut poll, mut close) = self.timers();
        let mut updates = self.updates.take();
        let mut next_window: Option<Duration> = None;
        loop {
            let update = async {
                match updates.as_mut() {
                    Some(updates) => updates.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            // The saved position always belongs to the last published window: nothing is
            // saved on the way out, and the next agent re-reads the lines read since.
            let closing = tokio::select! {
                () = cancel.cancelled() => return,
                _ = poll.tick() => false,
                _ = close.tick() => true,
                live = update => {
                    match updates.as_mut().filter(|_| live) {
                        Some(receiver) => {
                            let window = receiver.borrow_and_update().metrics.window;
                            next_window = (window != self.window).then_some(window);
                        }
                        None => updates = None,
                    }
                    continue;
                }
            };
            let Some(mut reader) = self.reader.take() else {
                return;
            };
            let processes = if closing { self.watched() } else { Vec::new() };
            let done = tokio::task::spawn_blocking(move || {
                let closed = closing.then(|| reader.close(processes));
                if !closing {
                    reader.poll();
                }
                (reader, closed)
            })
            .await;
            let Ok((reader, closed)) = done else {
                tracing::error!("the metrics reader panicked; request statistics stop");
                return;
            };
            self.reader = Some(reader);
            if let Some((requests, host)) = closed {
                self.publish_window(requests, host);
                if let Some(window) = next_window.take() {
                    self.window = window;
                    (poll, close) = self.timers();
                }
            }
        }
    }

    /// The supervised processes with the CPU and memory the supervisor sampled.
    fn watched(&self) -> Vec<ProcessUsage> {
        self.supervisor
            .statuses()
            .into_iter()
            .filter_map(|p| {
                let stats = p.stats?;
                Some(ProcessUsage {
                    name: p.name,
                    release: p.release,
                    pid: p.pid?,
                    cpu_percent: stats.cpu_percent,
                    rss_bytes: stats.rss_bytes,
                    members: stats.processes,
                })
            })
            .collect()
    }

    fn publish_window(&mut self, requests: RequestWindow, host: HostSample) {
        let now = jiff::Timestamp::now();
        let stats = requests.stats();
        let latency_us = requests.recorded_us();
        self.totals.requests.add(&stats.counts);
        self.totals.malformed_lines += stats.malformed_lines;
        self.totals.windows += 1;
        let worker = self.worker.as_ref().map(crate::worker::Meter::take);
        let seconds = self.window.as_secs_f64();
        let worker_stats = worker.as_ref().map(|w| w.stats(seconds));
        if let Some(sink) = &self.sink {
            let report = WindowReport {
                ended_ms: now.as_millisecond(),
                requests,
                host: host.clone(),
                worker,
            };
            if sink.try_send(report).is_err() {
                self.totals.windows_not_queued += 1;
            }
        }
        let snapshot = MetricsSnapshot {
            ended_at: now
                .round(jiff::Unit::Millisecond)
                .unwrap_or(now)
                .to_string(),
            window_secs: seconds,
            requests: stats,
            requests_per_second: stats.counts.total as f64 / seconds,
            totals: self.totals,
            host,
            latency_us,
            worker: worker_stats,
        };
        self.publish.send_replace(Some(Arc::new(snapshot)));
    }
}
