//! Properties of the restart backoff, over every configuration the config accepts
//! (`config/supervise.rs`: durations up to 365 days, `initial <= max`, positive `initial`,
//! `max` and `stable_after`, any `first`).

use std::time::Duration;

use proptest::prelude::*;

use super::Backoff;

const YEAR_MS: u64 = 365 * 24 * 3600 * 1000;

/// `Duration::mul_f64` rounds to the nanosecond: bounds are compared with that slack.
const ROUNDING: Duration = Duration::from_nanos(1);

#[derive(Debug, Clone)]
struct Config {
    first: Duration,
    initial: Duration,
    max: Duration,
    stable_after: Duration,
}

impl Config {
    fn backoff(&self) -> Backoff {
        Backoff::new(self.first, self.initial, self.max, self.stable_after)
    }

    /// The delay before jitter of the `attempt`-th restart since the last stable run:
    /// `first`, then `initial` doubled each time, both capped at `max`.
    fn base(&self, attempt: u32) -> Duration {
        let Some(shift) = attempt.checked_sub(1) else {
            return self.first.min(self.max);
        };
        // `initial` is at least 1 ms and `max` at most a year (< 2^35 ms): past 2^40 the cap
        // holds, and below it the doubling is exact in u128 nanoseconds.
        if shift >= 40 {
            return self.max;
        }
        let nanos = self.initial.as_nanos() << shift;
        if nanos >= self.max.as_nanos() {
            self.max
        } else {
            Duration::from_nanos(u64::try_from(nanos).expect("below a year"))
        }
    }
}

fn duration(max_ms: u64) -> impl Strategy<Value = Duration> {
    // Log-uniform: as many milliseconds as seconds, hours or months, so that a small
    // `initial` under a large `max` (many doublings before the cap) is common.
    (0..=35u32, any::<u64>()).prop_map(move |(bits, random)| {
        Duration::from_millis((random % (1u64 << bits)).min(max_ms))
    })
}

fn config() -> impl Strategy<Value = Config> {
    (
        duration(YEAR_MS),
        duration(YEAR_MS),
        duration(YEAR_MS),
        duration(YEAR_MS),
    )
        .prop_map(|(first, a, b, stable)| {
            let (initial, max) = (a.min(b).max(Duration::from_millis(1)), a.max(b));
            Config {
                first,
                initial,
                max: max.max(initial),
                stable_after: stable.max(Duration::from_millis(1)),
            }
        })
}

/// Exits: how long the process ran, and the random number drawn for the jitter. Mostly
/// crashes at start, so that long runs of doublings happen.
fn exits() -> impl Strategy<Value = Vec<(Duration, f64)>> {
    let ran_for = prop_oneof![4 => Just(Duration::ZERO), 1 => duration(YEAR_MS)];
    prop::collection::vec((ran_for, 0.0..1.0f64), 1..80)
}

proptest! {
    #[test]
    fn every_delay_is_within_jitter_of_its_doubling_and_never_above_max(
        config in config(),
        exits in exits(),
    ) {
        let mut backoff = config.backoff();
        let mut attempt = 0u32;
        for (ran_for, random) in exits {
            if ran_for >= config.stable_after {
                attempt = 0;
            }
            let delay = backoff.next_delay(ran_for, random);
            let base = config.base(attempt);
            prop_assert!(delay <= config.max, "{:?} above max {:?}", delay, config.max);
            prop_assert!(
                delay + ROUNDING >= base.mul_f64(0.8),
                "attempt {}: {:?} below 80 % of {:?}", attempt, delay, base
            );
            prop_assert!(
                delay <= base.mul_f64(1.2) + ROUNDING,
                "attempt {}: {:?} above 120 % of {:?}", attempt, delay, base
            );
            attempt += 1;
        }
    }

    #[test]
    fn quick_exits_never_shorten_the_delay_at_equal_jitter(
        config in config(),
        quick in 1..60usize,
        random in 0.0..1.0f64,
    ) {
        let mut backoff = config.backoff();
        // After the first restart (which may be longer: `first` is configured apart).
        backoff.next_delay(Duration::ZERO, random);
        let mut last = Duration::ZERO;
        for _ in 0..quick {
            let delay = backoff.next_delay(Duration::ZERO, random);
            prop_assert!(delay >= last, "{:?} after {:?}", delay, last);
            last = delay;
        }
    }

    #[test]
    fn a_stable_run_resets_to_the_first_delay(
        config in config(),
        quick in 0..40usize,
        random in 0.0..1.0f64,
    ) {
        let mut backoff = config.backoff();
        let mut fresh = config.backoff();
        for _ in 0..quick {
            backoff.next_delay(Duration::ZERO, random);
        }
        prop_assert_eq!(
            backoff.next_delay(config.stable_after, random),
            fresh.next_delay(config.stable_after, random)
        );
        prop_assert_eq!(
            backoff.next_delay(Duration::ZERO, random),
            fresh.next_delay(Duration::ZERO, random)
        );
    }

    #[test]
    fn any_random_number_gives_a_delay_within_bounds(
        config in config(),
        random in prop::num::f64::NORMAL | prop::num::f64::INFINITE | prop::num::f64::ZERO,
    ) {
        // The caller promises [0, 1); out of it (NaN aside: no number) the clamp holds the bounds.
        let mut backoff = config.backoff();
        for _ in 0..3 {
            let delay = backoff.next_delay(Duration::ZERO, random);
            prop_assert!(delay <= config.max);
        }
    }
}
