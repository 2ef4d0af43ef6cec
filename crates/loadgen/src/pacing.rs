//! When a simulated agent sends its next report: the same rules as the real agent's
//! `src/controller_link/pacing.rs` (kept in step by hand; the agent's module is private to its
//! crate). The controller paces with `report_after_ms` and `Retry-After`; every delay the agent
//! picks itself is jittered so a fleet does not report in step. Pure: `unit` ∈ [0, 1).

use std::time::Duration;

/// Longest error backoff.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Longest `Retry-After` honoured.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// ±10 % on the normal interval.
const INTERVAL_JITTER: f64 = 0.1;
/// ±20 % on error backoff.
const BACKOFF_JITTER: f64 = 0.2;

/// `base` spread uniformly over ±`spread` (a fraction) by `unit`.
pub fn jitter(base: Duration, spread: f64, unit: f64) -> Duration {
    base.mul_f64(1.0 - spread + 2.0 * spread * unit.clamp(0.0, 1.0))
}

/// Before the first report: anywhere in [0, interval).
pub fn first_delay(interval: Duration, unit: f64) -> Duration {
    interval.mul_f64(unit.clamp(0.0, 1.0))
}

/// After a success: `report_after_ms` clamped to [interval/10, 10 × interval], else the
/// interval ±10 %.
pub fn after_success(interval: Duration, report_after_ms: Option<u64>, unit: f64) -> Duration {
    match report_after_ms {
        Some(ms) => Duration::from_millis(ms).clamp(interval / 10, interval.saturating_mul(10)),
        None => jitter(interval, INTERVAL_JITTER, unit),
    }
}

/// After the `failures`-th failure in a row: `Retry-After` if the controller gave one (429 and
/// 503 only, see `client::Failure::retry_after`), else doubling from the interval, ±20 %.
pub fn after_failure(
    interval: Duration,
    failures: u32,
    retry_after: Option<Duration>,
    unit: f64,
) -> Duration {
    match retry_after {
        Some(delay) => delay.min(MAX_RETRY_AFTER),
        None => {
            let base = interval
                .saturating_mul(1u32 << failures.min(10))
                .min(MAX_BACKOFF);
            jitter(base, BACKOFF_JITTER, unit)
        }
    }
}

/// A `Retry-After` header in delay-seconds (an HTTP date is not honoured, as in the agent).
pub fn retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN: Duration = Duration::from_secs(10);

    #[test]
    fn delays_stay_within_the_agents_bounds() {
        for _ in 0..1000 {
            let unit = fastrand::f64();
            assert!(first_delay(TEN, unit) < TEN);
            let normal = after_success(TEN, None, unit);
            assert!((Duration::from_secs(9)..Duration::from_secs(11)).contains(&normal));
            let backoff = after_failure(TEN, 1, None, unit);
            assert!((Duration::from_secs(16)..Duration::from_secs(24)).contains(&backoff));
            assert!(after_failure(TEN, 30, None, unit) < MAX_BACKOFF.mul_f64(1.2));
        }
    }

    #[test]
    fn the_controllers_pace_wins_within_its_clamp() {
        assert_eq!(
            after_success(TEN, Some(9_500), 0.0),
            Duration::from_millis(9_500)
        );
        assert_eq!(after_success(TEN, Some(0), 0.0), Duration::from_secs(1));
        assert_eq!(
            after_success(TEN, Some(u64::MAX), 0.0),
            Duration::from_secs(100)
        );
        let seven = Some(Duration::from_secs(7));
        assert_eq!(after_failure(TEN, 4, seven, 0.9), Duration::from_secs(7));
        assert_eq!(retry_after(" 10 "), Some(TEN));
        assert_eq!(retry_after("Wed, 21 Oct 2026 07:28:00 GMT"), None);
    }
}
