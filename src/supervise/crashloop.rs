//! Crash-loop detection: N exits within a sliding window. Pure: the caller passes monotonic
//! times, so tests need no clock.
//!
//! A stable run forgives, like the backoff: a process that ran `stable_after` is no longer in a
//! crash loop, and its older exits no longer count.

use std::collections::VecDeque;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct CrashLoopDetector {
    max_exits: usize,
    window: Duration,
    stable_after: Duration,
    /// Times of the recent exits, oldest first (monotonic, from any fixed origin).
    exits: VecDeque<Duration>,
    looping: bool,
}

/// What one exit means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitVerdict {
    /// Not (yet) a crash loop.
    Isolated,
    /// This exit started a crash loop: `exits` exits within the window.
    LoopStarted { exits: u32 },
    /// Still crash-looping.
    StillLooping,
}

impl CrashLoopDetector {
    pub fn new(max_exits: u32, window: Duration, stable_after: Duration) -> Self {
        Self {
            max_exits: max_exits.max(1) as usize,
            window,
            stable_after,
            exits: VecDeque::new(),
            looping: false,
        }
    }

    /// Records an exit at `now` of a process that ran for `ran_for`.
    pub fn record_exit(&mut self, now: Duration, ran_for: Duration) -> ExitVerdict {
        if ran_for >= self.stable_after {
            self.forgive();
        }
        self.exits.push_back(now);
        while self
            .exits
            .front()
            .is_some_and(|&oldest| now.saturating_sub(oldest) > self.window)
        {
            self.exits.pop_front();
        }
        // Never more than needed to decide: a process restarted for days keeps O(N) memory.
        while self.exits.len() > self.max_exits {
            self.exits.pop_front();
        }
        if self.looping {
            ExitVerdict::StillLooping
        } else if self.exits.len() >= self.max_exits {
            self.looping = true;
            ExitVerdict::LoopStarted {
                exits: self.exits.len() as u32,
            }
        } else {
            ExitVerdict::Isolated
        }
    }

    pub fn is_looping(&self) -> bool {
        self.looping
    }

    /// The process has now run `stable_after`: ends a crash loop. Returns whether one ended.
    pub fn stable_run(&mut self) -> bool {
        let was_looping = self.looping;
        self.forgive();
        was_looping
    }

    fn forgive(&mut self) {
        self.exits.clear();
        self.looping = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn detector() -> CrashLoopDetector {
        CrashLoopDetector::new(3, secs(60), secs(30))
    }

    #[test]
    fn n_quick_exits_within_the_window_start_a_loop_once() {
        let mut d = detector();
        assert_eq!(d.record_exit(secs(0), secs(1)), ExitVerdict::Isolated);
        assert_eq!(d.record_exit(secs(1), secs(1)), ExitVerdict::Isolated);
        assert_eq!(
            d.record_exit(secs(2), secs(1)),
            ExitVerdict::LoopStarted { exits: 3 }
        );
        assert!(d.is_looping());
        assert_eq!(d.record_exit(secs(3), secs(1)), ExitVerdict::StillLooping);
    }

    #[test]
    fn exits_spread_wider_than_the_window_are_not_a_loop() {
        let mut d = detector();
        for n in 0..10 {
            assert_eq!(
                d.record_exit(secs(n * 31), secs(29)),
                ExitVerdict::Isolated,
                "exit {n}"
            );
        }
    }

    #[test]
    fn a_stable_run_ends_the_loop_and_forgets_old_exits() {
        let mut d = detector();
        for n in 0..3 {
            d.record_exit(secs(n), secs(0));
        }
        assert!(d.stable_run(), "the loop ended");
        assert!(!d.stable_run(), "only once");
        assert_eq!(d.record_exit(secs(40), secs(0)), ExitVerdict::Isolated);
        assert_eq!(d.record_exit(secs(41), secs(0)), ExitVerdict::Isolated);
    }

    #[test]
    fn an_exit_after_a_stable_run_starts_counting_afresh() {
        let mut d = detector();
        d.record_exit(secs(0), secs(0));
        d.record_exit(secs(1), secs(0));
        assert_eq!(d.record_exit(secs(40), secs(35)), ExitVerdict::Isolated);
        assert_eq!(d.record_exit(secs(41), secs(0)), ExitVerdict::Isolated);
        assert_eq!(
            d.record_exit(secs(42), secs(0)),
            ExitVerdict::LoopStarted { exits: 3 }
        );
    }
}

#[cfg(test)]
#[path = "crashloop_props.rs"]
mod props;
