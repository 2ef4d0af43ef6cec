//! When an agent's next report goes: the controller paces its fleet (`report_after_ms`,
//! `Retry-After`), and every delay the agent picks itself is jittered so that a fleet restarted
//! or partitioned together does not report in step. Part of the protocol: the agent's link and
//! the benchmark's simulated agents (`crates/loadgen`) follow the same rules. Pure: `unit` is a
//! random number in [0, 1) from the caller.

use std::time::Duration;

/// Longest error backoff.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Longest `Retry-After` honoured: a confused controller must not silence a host for a day.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// ±10 % on the normal interval.
const INTERVAL_JITTER: f64 = 0.1;
/// ±20 % on error backoff.
const BACKOFF_JITTER: f64 = 0.2;

/// `base` spread uniformly over ±`spread` (a fraction) by `unit` ∈ [0, 1).
pub fn jitter(base: Duration, spread: f64, unit: f64) -> Duration {
    base.mul_f64(1.0 - spread + 2.0 * spread * unit.clamp(0.0, 1.0))
}

/// Before the first report: anywhere in [0, interval).
pub fn first_delay(interval: Duration, unit: f64) -> Duration {
    interval.mul_f64(unit.clamp(0.0, 1.0))
}

/// After a successful round trip: the controller's `report_after_ms` clamped to
/// [interval/10, 10 × interval] (it paces precisely, so no jitter), else the interval ±10 %.
pub fn after_success(interval: Duration, report_after_ms: Option<u64>, unit: f64) -> Duration {
    match report_after_ms {
        Some(ms) => Duration::from_millis(ms).clamp(interval / 10, interval.saturating_mul(10)),
        None => jitter(interval, INTERVAL_JITTER, unit),
    }
}

/// After the `failures`-th failure in a row: the controller's `Retry-After` if it gave one,
/// else doubling from the interval up to 5 minutes, ±20 %.
pub fn after_failure(
    interval: Duration,
    failures: u32,
    retry_after: Option<Duration>,
    unit: f64,
) -> Duration {
    match retry_after {
        Some(delay) => delay.min(MAX_RETRY_AFTER),
        None => backoff(interval, failures, unit),
    }
}

/// Doubling from the interval, capped, with ±20 % jitter so a fleet does not retry in step.
pub fn backoff(interval: Duration, failures: u32, unit: f64) -> Duration {
    // Doubled step by step up to the cap: a factor of at most 2^10 stopped an interval under
    // 0.3 s short of five minutes. Past 128 doublings any non-zero interval overflows a
    // Duration, so the loop is short.
    let base = (0..failures.min(128))
        .try_fold(interval.min(MAX_BACKOFF), |delay, _| {
            delay
                .checked_mul(2)
                .filter(|doubled| *doubled < MAX_BACKOFF)
        })
        .unwrap_or(MAX_BACKOFF);
    jitter(base, BACKOFF_JITTER, unit)
}

/// A `Retry-After` header in delay-seconds (an HTTP date is not honoured: clocks differ).
pub fn retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn jitter_stays_within_its_bounds() {
        let base = Duration::from_secs(10);
        assert_eq!(jitter(base, 0.1, 0.0), Duration::from_secs(9));
        assert_eq!(jitter(base, 0.1, 0.5), base);
        assert!(jitter(base, 0.1, 0.999_999) < Duration::from_secs(11));
        for step in 0..1000 {
            let unit = f64::from(step) / 1000.0;
            let got = after_success(base, None, unit);
            assert!((Duration::from_secs(9)..Duration::from_secs(11)).contains(&got));
            let first = first_delay(base, unit);
            assert!(first < base);
        }
    }

    #[test]
    fn the_controllers_pace_is_clamped_to_a_tenth_and_ten_times_the_interval() {
        let interval = Duration::from_secs(10);
        let paced = |ms| after_success(interval, Some(ms), 0.0);
        assert_eq!(paced(25_000), Duration::from_secs(25));
        assert_eq!(paced(10), SECOND, "at least interval/10");
        assert_eq!(paced(0), SECOND);
        assert_eq!(paced(u64::MAX), Duration::from_secs(100), "at most 10 ×");
    }

    #[test]
    fn backoff_doubles_to_five_minutes_unless_the_controller_says_when() {
        let interval = Duration::from_secs(10);
        assert_eq!(backoff(interval, 1, 0.5), Duration::from_secs(20));
        assert_eq!(backoff(interval, 3, 0.5), Duration::from_secs(80));
        assert_eq!(backoff(interval, 30, 0.5), MAX_BACKOFF);
        assert_eq!(backoff(interval, 30, 0.0), MAX_BACKOFF.mul_f64(0.8));
        assert!(backoff(interval, 30, 0.999_999) < MAX_BACKOFF.mul_f64(1.2));
        assert_eq!(
            after_failure(interval, 5, Some(Duration::from_secs(7)), 0.0),
            Duration::from_secs(7)
        );
        assert_eq!(
            after_failure(interval, 1, Some(Duration::from_secs(86_400)), 0.0),
            MAX_RETRY_AFTER
        );
        assert_eq!(retry_after(" 120 "), Some(Duration::from_secs(120)));
        assert_eq!(retry_after("Wed, 21 Oct 2026 07:28:00 GMT"), None);
        assert_eq!(retry_after("-1"), None);
    }
}
