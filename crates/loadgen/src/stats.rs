//! Report latencies and counts, kept twice: per printing period (a line every few seconds) and
//! per segment (a stretch the caller marks with SIGUSR1, e.g. "after warm-up until the
//! restart"), because percentiles of a stretch cannot be computed from the periods' lines.

use std::sync::Mutex;
use std::time::Instant;

use hdrhistogram::Histogram;

/// One stretch's numbers.
#[derive(Debug)]
pub struct Window {
    started: Instant,
    latency_us: Histogram<u64>,
    /// How late reports left against their schedule: shows whether the generator kept up.
    lag_us: Histogram<u64>,
    ok: u64,
    busy: u64,
    errors: u64,
}

impl Window {
    fn new(now: Instant) -> Self {
        let histogram = || {
            Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("constant histogram bounds are valid")
        };
        Self {
            started: now,
            latency_us: histogram(),
            lag_us: histogram(),
            ok: 0,
            busy: 0,
            errors: 0,
        }
    }

    /// `key=value` pairs, the unit in the key, so scripts can pick them with awk.
    pub fn describe(&self, now: Instant) -> String {
        let secs = now.duration_since(self.started).as_secs_f64().max(1e-3);
        let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        format!(
            "secs={secs:.1} ok={} rate={:.1} p50_ms={:.1} p99_ms={:.1} max_ms={:.1} busy={} errors={} lag_p99_ms={:.1}",
            self.ok,
            self.ok as f64 / secs,
            ms(&self.latency_us, 0.5),
            ms(&self.latency_us, 0.99),
            self.latency_us.max() as f64 / 1000.0,
            self.busy,
            self.errors,
            ms(&self.lag_us, 0.99),
        )
    }
}

#[derive(Debug)]
pub struct Stats {
    windows: Mutex<(Window, Window)>,
}

/// How a report ended, for the counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok { latency_us: u64, lag_us: u64 },
    Busy,
    Error,
}

impl Stats {
    pub fn new() -> Self {
        let now = Instant::now();
        Self {
            windows: Mutex::new((Window::new(now), Window::new(now))),
        }
    }

    pub fn record(&self, outcome: Outcome) {
        let mut guard = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let (period, segment) = &mut *guard;
        for window in [period, segment] {
            match outcome {
                Outcome::Ok { latency_us, lag_us } => {
                    window.ok += 1;
                    window.latency_us.saturating_record(latency_us.max(1));
                    window.lag_us.saturating_record(lag_us.max(1));
                }
                Outcome::Busy => window.busy += 1,
                Outcome::Error => window.errors += 1,
            }
        }
    }

    /// Ends the current period and returns its line.
    pub fn take_period(&self) -> String {
        let now = Instant::now();
        let mut guard = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let ended = std::mem::replace(&mut guard.0, Window::new(now));
        ended.describe(now)
    }

    /// Ends the current segment and returns its line.
    pub fn take_segment(&self) -> String {
        let now = Instant::now();
        let mut guard = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let ended = std::mem::replace(&mut guard.1, Window::new(now));
        ended.describe(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_and_segments_count_separately() {
        let stats = Stats::new();
        for ms in 1..=100 {
            let latency_us = ms * 1000;
            stats.record(Outcome::Ok {
                latency_us,
                lag_us: 10,
            });
        }
        stats.record(Outcome::Busy);
        let period = stats.take_period();
        assert!(period.contains("ok=100 "), "{period}");
        assert!(period.contains("p50_ms=50.0"), "{period}");
        assert!(period.contains("p99_ms=99.0"), "{period}");
        assert!(period.contains("busy=1 "), "{period}");
        stats.record(Outcome::Error);
        assert!(stats.take_period().contains("ok=0 "));
        let segment = stats.take_segment();
        assert!(
            segment.contains("ok=100 ") && segment.contains("errors=1 "),
            "{segment}"
        );
    }
}
