//! Counters for `/metrics` (Prometheus text format): reports, their latency, group commits.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug)]
pub struct Counters {
    pub reports: AtomicU64,
    pub reports_rejected: AtomicU64,
    pub enrollments: AtomicU64,
    pub events_stored: AtomicU64,
    /// Report handling time, microseconds.
    latency: Mutex<hdrhistogram::Histogram<u64>>,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            reports: AtomicU64::new(0),
            reports_rejected: AtomicU64::new(0),
            enrollments: AtomicU64::new(0),
            events_stored: AtomicU64::new(0),
            latency: Mutex::new(
                hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 2)
                    .expect("static histogram bounds are valid"),
            ),
        }
    }
}

impl Counters {
    pub fn report_took(&self, micros: u64) {
        self.reports.fetch_add(1, Ordering::Relaxed);
        let mut latency = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        let _ = latency.record(micros.clamp(1, 60_000_000));
    }

    /// The Prometheus exposition of every counter, plus the gauges the caller adds.
    pub fn render(&self, gauges: &[(&str, &str, f64)]) -> String {
        let latency = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, value: u64| {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"
            ));
        };
        counter(
            "hostmanager_controller_reports_total",
            "Host reports answered.",
            self.reports.load(Ordering::Relaxed),
        );
        counter(
            "hostmanager_controller_reports_rejected_total",
            "Host reports refused (auth, overload, bad body).",
            self.reports_rejected.load(Ordering::Relaxed),
        );
        counter(
            "hostmanager_controller_enrollments_total",
            "Hosts enrolled.",
            self.enrollments.load(Ordering::Relaxed),
        );
        counter(
            "hostmanager_controller_events_stored_total",
            "Host events stored.",
            self.events_stored.load(Ordering::Relaxed),
        );
        out.push_str("# HELP hostmanager_controller_report_seconds Report handling time.\n# TYPE hostmanager_controller_report_seconds summary\n");
        for quantile in [0.5, 0.9, 0.99] {
            out.push_str(&format!(
                "hostmanager_controller_report_seconds{{quantile=\"{quantile}\"}} {}\n",
                latency.value_at_quantile(quantile) as f64 / 1e6
            ));
        }
        out.push_str(&format!(
            "hostmanager_controller_report_seconds_count {}\n",
            latency.len()
        ));
        for (name, help, value) in gauges {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
            ));
        }
        out
    }
}
