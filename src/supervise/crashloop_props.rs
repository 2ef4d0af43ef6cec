//! The crash-loop detector against a model that keeps every exit: a loop starts at the exit
//! that makes `max_exits` exits within `window` since the last stable run, is reported once,
//! and lasts until a stable run forgives it.

use std::time::Duration;

use proptest::prelude::*;

use super::{CrashLoopDetector, ExitVerdict};

#[derive(Debug, Clone)]
enum Event {
    /// The process exits `after` the previous event, having run `ran_for`.
    Exit { after: Duration, ran_for: Duration },
    /// The process has run `stable_after` (the supervisor's timer).
    StableRun,
}

fn secs(range: std::ops::Range<u64>) -> impl Strategy<Value = Duration> {
    range.prop_map(Duration::from_secs)
}

fn events() -> impl Strategy<Value = Vec<Event>> {
    let event = prop_oneof![
        12 => (secs(0..40), secs(0..50)).prop_map(|(after, ran_for)| Event::Exit { after, ran_for }),
        1 => Just(Event::StableRun),
    ];
    prop::collection::vec(event, 1..80)
}

proptest! {
    #[test]
    fn a_loop_starts_once_at_max_exits_within_the_window_until_a_stable_run(
        max_exits in 2..7u32,
        window in secs(1..120),
        stable_after in secs(1..60),
        events in events(),
    ) {
        let mut detector = CrashLoopDetector::new(max_exits, window, stable_after);
        // Every exit since the last stable run, and whether a loop was reported since.
        let (mut exits, mut looping) = (Vec::<Duration>::new(), false);
        let mut now = Duration::ZERO;
        for event in events {
            match event {
                Event::StableRun => {
                    prop_assert_eq!(detector.stable_run(), looping);
                    (exits, looping) = (Vec::new(), false);
                }
                Event::Exit { after, ran_for } => {
                    now += after;
                    if ran_for >= stable_after {
                        (exits, looping) = (Vec::new(), false);
                    }
                    exits.push(now);
                    let recent = exits.iter().filter(|&&e| now - e <= window).count() as u32;
                    let expected = if looping {
                        ExitVerdict::StillLooping
                    } else if recent >= max_exits {
                        looping = true;
                        ExitVerdict::LoopStarted { exits: max_exits }
                    } else {
                        ExitVerdict::Isolated
                    };
                    prop_assert_eq!(detector.record_exit(now, ran_for), expected, "at {:?}", now);
                }
            }
            prop_assert_eq!(detector.is_looping(), looping);
        }
    }
}
