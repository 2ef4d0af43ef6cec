//! The worker's share of the metrics windows: messages processed and failed and the latency
//! of their requests, counted by the daemon and taken by the metrics task at each window's
//! end (then by the CloudWatch sink, which merges windows into periods).

use std::sync::{Arc, Mutex};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Requests longer than this (the longest inactivity timeout, 10 h) count as this long.
const MAX_LATENCY_MS: u64 = 36_000_000;

/// One window of the daemon's requests.
#[derive(Debug, Clone)]
pub struct WorkerWindow {
    pub processed: u64,
    pub failed: u64,
    latency_ms: Histogram<u32>,
}

impl Default for WorkerWindow {
    fn default() -> Self {
        Self {
            processed: 0,
            failed: 0,
            latency_ms: Histogram::new_with_bounds(1, MAX_LATENCY_MS, 2)
                .expect("valid histogram bounds"),
        }
    }
}

impl WorkerWindow {
    pub fn record(&mut self, ok: bool, latency_ms: u64) {
        if ok {
            self.processed += 1;
        } else {
            self.failed += 1;
        }
        let _ = self.latency_ms.record(latency_ms.clamp(1, MAX_LATENCY_MS));
    }

    pub fn merge(&mut self, other: &WorkerWindow) {
        self.processed += other.processed;
        self.failed += other.failed;
        let _ = self.latency_ms.add(&other.latency_ms);
    }

    pub fn percentile_ms(&self, quantile: f64) -> Option<u64> {
        (!self.latency_ms.is_empty()).then(|| self.latency_ms.value_at_quantile(quantile))
    }

    pub fn stats(&self, window_secs: f64) -> WorkerWindowStats {
        WorkerWindowStats {
            processed: self.processed,
            failed: self.failed,
            messages_per_second: (self.processed + self.failed) as f64 / window_secs.max(0.001),
            latency_p50_ms: self.percentile_ms(0.5),
            latency_p90_ms: self.percentile_ms(0.9),
            latency_p99_ms: self.percentile_ms(0.99),
        }
    }
}

/// What `health` shows of the worker in the metrics window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerWindowStats {
    pub processed: u64,
    pub failed: u64,
    pub messages_per_second: f64,
    pub latency_p50_ms: Option<u64>,
    pub latency_p90_ms: Option<u64>,
    pub latency_p99_ms: Option<u64>,
}

/// Shared by the daemon (records) and the metrics task (takes each window).
#[derive(Debug, Clone, Default)]
pub struct Meter {
    window: Arc<Mutex<WorkerWindow>>,
}

impl Meter {
    pub fn record(&self, ok: bool, latency_ms: u64) {
        self.window
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(ok, latency_ms);
    }

    /// The window so far; the next one starts empty.
    pub fn take(&self) -> WorkerWindow {
        std::mem::take(&mut *self.window.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_counts_merges_and_starts_again_empty() {
        let meter = Meter::default();
        meter.record(true, 10);
        meter.record(true, 30);
        meter.record(false, 2_000);
        let mut window = meter.take();
        assert_eq!((window.processed, window.failed), (2, 1));
        assert_eq!(window.percentile_ms(0.5), Some(30));
        assert!(
            window
                .percentile_ms(0.99)
                .is_some_and(|p| (1_990..=2_010).contains(&p))
        );
        assert_eq!(meter.take().processed, 0);
        let mut other = WorkerWindow::default();
        other.record(false, 5);
        window.merge(&other);
        let stats = window.stats(2.0);
        assert_eq!((stats.processed, stats.failed), (2, 2));
        assert_eq!(stats.messages_per_second, 2.0);
    }
}
