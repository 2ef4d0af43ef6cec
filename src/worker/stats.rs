//! The daemon's state as `status` and `health` show it, its rolling last minute, and the
//! digest that turns a burst of failures into one event instead of thousands. Pure.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

/// Samples kept for the last minute, at most (a minute at over 3 000 messages a second).
const MAX_SAMPLES: usize = 200_000;
const MINUTE_MS: i64 = 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    Starting,
    Running,
    /// A deployment's cutover: no new receives; requests in flight finish.
    Paused,
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueDepth {
    /// `ApproximateNumberOfMessages`: waiting to be received.
    pub visible: u64,
    /// `ApproximateNumberOfMessagesNotVisible`: received by some host, not deleted yet.
    pub not_visible: u64,
    pub delayed: u64,
    pub read_at: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub received: u64,
    /// Answered 200 and deleted.
    pub processed: u64,
    /// Any other answer, a timeout or a refused connection: the message comes back.
    pub failed: u64,
    /// Past the retention period: deleted without a request.
    pub expired: u64,
    /// Body not matching its MD5: not posted.
    pub corrupt: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MinuteSummary {
    pub processed: u64,
    pub failed: u64,
    pub failure_percent: f64,
    pub latency_p50_ms: Option<u64>,
    pub latency_p99_ms: Option<u64>,
    /// The longest a message received in the last minute had waited in the queue.
    pub oldest_message_age_secs: Option<u64>,
    /// The last failure's reason (`HTTP 500`, `timeout after 299 s`, `connection refused`).
    pub last_failure: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStatus {
    pub name: String,
    pub url: String,
    pub schedule: String,
    pub next_at: Option<String>,
    pub last_sent_at: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeriodicStatus {
    /// Only the leader sends the periodic tasks' messages.
    pub leader: bool,
    pub tasks: Vec<TaskStatus>,
    pub error: Option<String>,
}

/// The receiving side's state, kept by the daemon and shown as it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonState {
    pub state: WorkerState,
    pub in_flight: u64,
    pub last_poll_at: Option<String>,
    /// The last receive's error, while receives fail.
    pub poll_error: Option<String>,
    pub poll_failures: u32,
    pub queue_depth: Option<QueueDepth>,
    /// The queue's redrive policy, as SQS reports it (absent: no dead-letter queue).
    pub dead_letter: Option<String>,
}

impl Default for DaemonState {
    fn default() -> Self {
        Self {
            state: WorkerState::Starting,
            in_flight: 0,
            last_poll_at: None,
            poll_error: None,
            poll_failures: 0,
            queue_depth: None,
            dead_letter: None,
        }
    }
}

/// What `status` and `health` show of the worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerStatus {
    pub queue_url: String,
    pub queue: String,
    pub http_connections: u64,
    #[serde(flatten)]
    pub daemon: DaemonState,
    pub last_minute: MinuteSummary,
    pub totals: Totals,
    pub periodic: PeriodicStatus,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    at_ms: i64,
    ok: bool,
    latency_ms: u64,
}

/// The last minute's requests, and the longest wait of the messages received in it.
#[derive(Debug, Default)]
pub struct MinuteWindow {
    samples: VecDeque<Sample>,
    ages: VecDeque<(i64, u64)>,
    last_failure: Option<(i64, String)>,
}

impl MinuteWindow {
    pub fn record(&mut self, now_ms: i64, ok: bool, latency_ms: u64, failure: Option<String>) {
        self.prune(now_ms);
        if self.samples.len() == MAX_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back(Sample {
            at_ms: now_ms,
            ok,
            latency_ms,
        });
        if let Some(reason) = failure {
            self.last_failure = Some((now_ms, reason));
        }
    }

    pub fn received(&mut self, now_ms: i64, age_ms: u64) {
        self.prune(now_ms);
        if self.ages.len() == MAX_SAMPLES {
            self.ages.pop_front();
        }
        self.ages.push_back((now_ms, age_ms));
    }

    fn prune(&mut self, now_ms: i64) {
        let since = now_ms - MINUTE_MS;
        while self.samples.front().is_some_and(|s| s.at_ms < since) {
            self.samples.pop_front();
        }
        while self.ages.front().is_some_and(|(at, _)| *at < since) {
            self.ages.pop_front();
        }
        if self
            .last_failure
            .as_ref()
            .is_some_and(|(at, _)| *at < since)
        {
            self.last_failure = None;
        }
    }

    pub fn summary(&mut self, now_ms: i64) -> MinuteSummary {
        self.prune(now_ms);
        let failed = self.samples.iter().filter(|s| !s.ok).count() as u64;
        let total = self.samples.len() as u64;
        let mut latencies: Vec<u64> = self.samples.iter().map(|s| s.latency_ms).collect();
        latencies.sort_unstable();
        let percentile = |p: f64| {
            (!latencies.is_empty()).then(|| {
                let rank = ((p * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len());
                latencies[rank - 1]
            })
        };
        MinuteSummary {
            processed: total - failed,
            failed,
            failure_percent: if total == 0 {
                0.0
            } else {
                (failed as f64 * 1000.0 / total as f64).round() / 10.0
            },
            latency_p50_ms: percentile(0.5),
            latency_p99_ms: percentile(0.99),
            oldest_message_age_secs: self.ages.iter().map(|(_, age)| age / 1000).max(),
            last_failure: self.last_failure.as_ref().map(|(_, r)| r.clone()),
        }
    }
}

/// Failures become events without flooding the journal: the first one of a quiet period is an
/// event at once; the ones after it are counted by reason and told in one event per period.
#[derive(Debug)]
pub struct FailureDigest {
    period_ms: i64,
    opened_ms: Option<i64>,
    counts: BTreeMap<String, u64>,
    last_message: Option<String>,
}

impl FailureDigest {
    pub fn new(period_ms: i64) -> Self {
        Self {
            period_ms,
            opened_ms: None,
            counts: BTreeMap::new(),
            last_message: None,
        }
    }

    /// A failure; `Some(text)` when it is to be an event now.
    pub fn failure(&mut self, now_ms: i64, reason: &str, message_id: &str) -> Option<String> {
        match self.opened_ms {
            Some(opened) if now_ms - opened < self.period_ms => {
                *self.counts.entry(reason.to_string()).or_default() += 1;
                self.last_message = Some(message_id.to_string());
                None
            }
            _ => {
                self.opened_ms = Some(now_ms);
                self.counts.clear();
                Some(reason.to_string())
            }
        }
    }

    /// The summary of the failures held back, once their period is over.
    pub fn flush(&mut self, now_ms: i64) -> Option<String> {
        let opened = self.opened_ms?;
        if now_ms - opened < self.period_ms {
            return None;
        }
        if self.counts.is_empty() {
            self.opened_ms = None;
            return None;
        }
        let total: u64 = self.counts.values().sum();
        let reasons = self
            .counts
            .iter()
            .map(|(reason, n)| format!("{reason} ×{n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let text = format!(
            "{total} more messages failed in {} s: {reasons} (last: message {})",
            self.period_ms / 1000,
            self.last_message.as_deref().unwrap_or("?")
        );
        self.counts.clear();
        self.opened_ms = Some(now_ms);
        Some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_keeps_one_minute() {
        let mut window = MinuteWindow::default();
        window.record(0, true, 10, None);
        window.record(1_000, false, 30, Some("HTTP 500".into()));
        window.record(2_000, true, 20, None);
        window.received(2_000, 125_000);
        let summary = window.summary(3_000);
        assert_eq!((summary.processed, summary.failed), (2, 1));
        assert_eq!(summary.failure_percent, 33.3);
        assert_eq!(summary.latency_p50_ms, Some(20));
        assert_eq!(summary.latency_p99_ms, Some(30));
        assert_eq!(summary.oldest_message_age_secs, Some(125));
        assert_eq!(summary.last_failure.as_deref(), Some("HTTP 500"));
        let later = window.summary(61_500);
        assert_eq!((later.processed, later.failed), (1, 0));
        assert_eq!(later.last_failure, None);
        assert_eq!(window.summary(200_000), MinuteSummary::default());
    }

    #[test]
    fn a_burst_of_failures_is_one_event_then_one_summary() {
        let mut digest = FailureDigest::new(10_000);
        assert_eq!(digest.failure(0, "HTTP 500", "a"), Some("HTTP 500".into()));
        assert_eq!(digest.failure(1_000, "HTTP 500", "b"), None);
        assert_eq!(digest.failure(2_000, "timeout", "c"), None);
        assert_eq!(digest.flush(5_000), None);
        let summary = digest.flush(10_000).expect("summary");
        assert!(
            summary.starts_with("2 more messages failed in 10 s: HTTP 500 ×1, timeout ×1"),
            "{summary}"
        );
        assert!(summary.contains("message c"), "{summary}");
        // Quiet for a period: the next failure is an event at once again.
        assert_eq!(digest.flush(20_000), None);
        assert_eq!(
            digest.failure(30_000, "HTTP 502", "d"),
            Some("HTTP 502".into())
        );
    }
}
