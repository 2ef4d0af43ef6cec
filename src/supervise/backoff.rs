//! Restart delays: capped exponential backoff with jitter, reset after a stable run. Pure: the
//! caller passes the run time and a random number, so tests are deterministic.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    stable_after: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration, stable_after: Duration) -> Self {
        Self {
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
        let exponent = self.attempt.min(30);
        self.attempt = self.attempt.saturating_add(1);
        let base = self
            .initial
            .saturating_mul(1u32 << exponent.min(31))
            .min(self.max);
        let jitter = 0.8 + 0.4 * unit_random.clamp(0.0, 1.0);
        base.mul_f64(jitter).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff() -> Backoff {
        Backoff::new(
            Duration::from_millis(100),
            Duration::from_secs(5),
            Duration::from_secs(30),
        )
    }

    #[test]
    fn grows_exponentially_up_to_the_cap() {
        let mut b = backoff();
        let delays: Vec<_> = (0..10).map(|_| b.next_delay(Duration::ZERO, 0.5)).collect();
        assert_eq!(delays[0], Duration::from_millis(100));
        assert_eq!(delays[1], Duration::from_millis(200));
        assert_eq!(delays[3], Duration::from_millis(800));
        assert_eq!(delays[9], Duration::from_secs(5));
        assert!(delays.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn jitter_stays_within_bounds_and_the_cap() {
        let mut b = backoff();
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
        assert_eq!(
            b.next_delay(Duration::from_secs(31), 0.5),
            Duration::from_millis(100)
        );
        assert_eq!(
            b.next_delay(Duration::ZERO, 0.5),
            Duration::from_millis(200)
        );
    }
}
