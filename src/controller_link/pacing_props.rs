//! Properties of the link's pacing (`hostmanager_protocol::pacing`, the protocol crate's; its
//! laws are checked here, beside the link that follows them), over every interval the config
//! accepts (`[remote] interval`: positive, at most 365 days).

use std::time::Duration;

use hostmanager_protocol::pacing::{
    MAX_BACKOFF, MAX_RETRY_AFTER, after_failure, after_success, backoff, first_delay,
};
use proptest::prelude::*;

const YEAR_MS: u64 = 365 * 24 * 3600 * 1000;

/// `Duration::mul_f64` rounds to the nanosecond: bounds are compared with that slack.
const ROUNDING: Duration = Duration::from_nanos(1);

/// Log-uniform milliseconds, at least 1: sub-second intervals (many doublings to the cap) and
/// intervals longer than the cap both occur.
fn interval() -> impl Strategy<Value = Duration> {
    (0..=35u32, any::<u64>()).prop_map(|(bits, random)| {
        Duration::from_millis((random % (1u64 << bits)).clamp(1, YEAR_MS))
    })
}

/// The interval doubled `failures` times, capped at `MAX_BACKOFF` (exact, in u128
/// nanoseconds: 1 ms doubled 20 times is past the cap already).
fn capped_doubling(interval: Duration, failures: u32) -> Duration {
    if failures >= 40 {
        return MAX_BACKOFF;
    }
    let nanos = interval.as_nanos() << failures;
    if nanos >= MAX_BACKOFF.as_nanos() {
        MAX_BACKOFF
    } else {
        Duration::from_nanos(u64::try_from(nanos).expect("below the cap"))
    }
}

fn within(got: Duration, base: Duration, spread: f64) -> bool {
    got + ROUNDING >= base.mul_f64(1.0 - spread) && got <= base.mul_f64(1.0 + spread) + ROUNDING
}

proptest! {
    #[test]
    fn the_first_report_goes_within_one_interval(interval in interval(), unit in 0.0..1.0f64) {
        prop_assert!(first_delay(interval, unit) < interval);
    }

    #[test]
    fn after_a_success_the_controllers_pace_is_kept_within_a_tenth_and_ten_intervals(
        interval in interval(),
        report_after_ms in prop::option::of(prop_oneof![0..100_000u64, any::<u64>()]),
        unit in 0.0..1.0f64,
    ) {
        let delay = after_success(interval, report_after_ms, unit);
        match report_after_ms {
            Some(ms) => prop_assert_eq!(
                delay,
                Duration::from_millis(ms).clamp(interval / 10, interval * 10)
            ),
            None => prop_assert!(within(delay, interval, 0.1), "{:?} for {:?}", delay, interval),
        }
    }

    #[test]
    fn after_failures_the_delay_doubles_from_the_interval_to_five_minutes_within_jitter(
        interval in interval(),
        failures in 0..80u32,
        unit in 0.0..1.0f64,
    ) {
        let delay = after_failure(interval, failures, None, unit);
        let base = capped_doubling(interval, failures);
        prop_assert!(within(delay, base, 0.2), "{:?} for {:?}", delay, base);
    }

    #[test]
    fn another_failure_never_shortens_the_backoff_at_equal_jitter(
        interval in interval(),
        failures in 0..80u32,
        unit in 0.0..1.0f64,
    ) {
        prop_assert!(backoff(interval, failures + 1, unit) >= backoff(interval, failures, unit));
    }

    #[test]
    fn a_retry_after_is_followed_up_to_an_hour(
        interval in interval(),
        failures in any::<u32>(),
        retry_after_s in prop_oneof![0..7200u64, any::<u64>()],
        unit in 0.0..1.0f64,
    ) {
        let asked = Duration::from_secs(retry_after_s);
        prop_assert_eq!(
            after_failure(interval, failures, Some(asked), unit),
            asked.min(MAX_RETRY_AFTER)
        );
    }
}
