//! Restart delays: capped exponential backoff with jitter, reset after a stable run. Pure: the
//! caller passes the run time and a random number, so tests are deterministic.
//!
//! The first restart after a stable run waits only `first` (0 by default): a web process that
//! crashed once should serve again as fast as it can start. Only a process that keeps exiting
//! quickly backs off: `initial`, then doubling up to `max`.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    initial: Duration,
    max: Duration,
    stable_after: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(first: Duration, initial: Duration, max: Duration, stable_after: Duration) -> Self {
        Self {
            first,
            initial,
            max,
            stable_after,
            attempt: 0,
        }
    }

    /// The delay before the next start of a process that ran for `ran_for` before it exited.
    /// `unit_random` in [0, 1) spreads restarts of many processes apart (±20 %).
    pub fn next_delay(&mut self, ran_for: Duration, unit_random: f64) -> Duration {
        if ran_for >= self.stable_after {
            self.attempt = 0;
        }
        let attempt = self.attempt;
        self.attempt = self.attempt.saturating_add(1);
        let base = match attempt {
            0 => self.first,
            // Doubled step by step up to the cap: a shifted u32 factor stopped the growth at
            // 2^31 (25 days from 1 ms), short of a longer `max`. Past 128 doublings any
            // non-zero delay overflows a Duration, so the loop is short.
            n => (1..n.min(129))
                .try_fold(self.initial.min(self.max), |delay, _| {
                    delay.checked_mul(2).filter(|doubled| *doubled < self.max)
                })
                .unwrap_or(self.max),
        };
        let jitter = 0.8 + 0.4 * unit_random.clamp(0.0, 1.0);
        base.mul_f64(jitter).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff() -> Backoff {
        Backoff::new(
            Duration::ZERO,
            Duration::from_millis(100),
            Duration::from_secs(5),
            Duration::from_secs(30),
        )
    }

    #[test]
    fn grows_exponentially_up_to_the_cap() {
        let mut b = backoff();
        let delays: Vec<_> = (0..11).map(|_| b.next_delay(Duration::ZERO, 0.5)).collect();
        assert_eq!(delays[0], Duration::ZERO, "the first restart is immediate");
        assert_eq!(delays[1], Duration::from_millis(100));
        assert_eq!(delays[2], Duration::from_millis(200));
        assert_eq!(delays[4], Duration::from_millis(800));
        assert_eq!(delays[10], Duration::from_secs(5));
        assert!(delays.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn jitter_stays_within_bounds_and_the_cap() {
        let mut b = backoff();
        b.next_delay(Duration::ZERO, 0.5);
        for step in 0..40 {
            let random = f64::from(step % 10) / 10.0;
            let delay = b.next_delay(Duration::ZERO, random);
            assert!(delay <= Duration::from_secs(5));
            assert!(delay >= Duration::from_millis(80));
        }
    }

    #[test]
    fn a_stable_run_resets_the_backoff() {
        let mut b = backoff();
        for _ in 0..6 {
            b.next_delay(Duration::ZERO, 0.5);
        }
        assert_eq!(b.next_delay(Duration::from_secs(31), 0.5), Duration::ZERO);
        assert_eq!(
            b.next_delay(Duration::ZERO, 0.5),
            Duration::from_millis(100)
        );
    }

    #[test]
    fn a_configured_first_delay_is_used_and_capped() {
        let mut b = Backoff::new(
            Duration::from_secs(3),
            Duration::from_millis(100),
            Duration::from_secs(2),
            Duration::from_secs(30),
        );
        assert_eq!(b.next_delay(Duration::ZERO, 0.5), Duration::from_secs(2));
        assert_eq!(
            b.next_delay(Duration::ZERO, 0.5),
            Duration::from_millis(100)
        );
    }
}

#[cfg(test)]
#[path = "backoff_props.rs"]
mod props;
