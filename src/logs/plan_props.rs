//! Properties of the log publisher's retry backoff (`backoff`), over every configuration the
//! config accepts (`config/logs.rs`: positive durations up to 365 days, `initial <= max`).

use std::time::Duration;

use proptest::prelude::*;

use super::backoff;

const YEAR_MS: u64 = 365 * 24 * 3600 * 1000;

/// `Duration::mul_f64` rounds to the nanosecond: bounds are compared with that slack.
const ROUNDING: Duration = Duration::from_nanos(1);

/// `initial` doubled `attempt` times, capped at `max` (exact: u128 nanoseconds; `initial` is
/// at least 1 ms and `max` at most a year, under 2^35 ms, so 40 doublings always reach it).
fn capped_doubling(attempt: u32, initial: Duration, max: Duration) -> Duration {
    if attempt >= 40 {
        return max;
    }
    let nanos = initial.as_nanos() << attempt;
    if nanos >= max.as_nanos() {
        max
    } else {
        Duration::from_nanos(u64::try_from(nanos).expect("below a year"))
    }
}

/// Log-uniform milliseconds: a small `initial` under a large `max` is common.
fn duration() -> impl Strategy<Value = Duration> {
    (0..=35u32, any::<u64>()).prop_map(|(bits, random)| {
        Duration::from_millis((random % (1u64 << bits)).clamp(1, YEAR_MS))
    })
}

fn initial_and_max() -> impl Strategy<Value = (Duration, Duration)> {
    (duration(), duration()).prop_map(|(a, b)| (a.min(b), a.max(b)))
}

proptest! {
    #[test]
    fn a_retry_waits_its_capped_doubling_within_jitter_and_never_above_max(
        (initial, max) in initial_and_max(),
        attempt in 0..80u32,
        jitter in 0.0..1.0f64,
    ) {
        let delay = backoff(attempt, initial, max, jitter);
        let base = capped_doubling(attempt, initial, max);
        prop_assert!(delay <= max, "{:?} above max {:?}", delay, max);
        prop_assert!(delay + ROUNDING >= base.mul_f64(0.8), "{:?} below 80 % of {:?}", delay, base);
        prop_assert!(delay <= base.mul_f64(1.2) + ROUNDING, "{:?} above 120 % of {:?}", delay, base);
    }

    #[test]
    fn a_later_attempt_never_waits_less_at_equal_jitter(
        (initial, max) in initial_and_max(),
        attempt in 0..80u32,
        jitter in 0.0..1.0f64,
    ) {
        prop_assert!(
            backoff(attempt + 1, initial, max, jitter) >= backoff(attempt, initial, max, jitter)
        );
    }

    #[test]
    fn any_jitter_gives_a_delay_within_bounds(
        (initial, max) in initial_and_max(),
        attempt in any::<u32>(),
        jitter in prop::num::f64::NORMAL | prop::num::f64::INFINITE | prop::num::f64::ZERO,
    ) {
        // The caller promises [0, 1); out of it (NaN aside: no number) the clamp holds the bounds.
        prop_assert!(backoff(attempt, initial, max, jitter) <= max);
    }
}
