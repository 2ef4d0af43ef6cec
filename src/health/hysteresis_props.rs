//! Properties of the hysteresis, checked against a model stated over the whole history of
//! evaluations rather than the implementation's candidate counter: a published status changes
//! to a measured one (Ok, Warning, Degraded, Severe) only once it was the last `required`
//! evaluations in a row; operational statuses (Pending, Info, Unknown) come and go at once.

use proptest::prelude::*;

use super::super::rules::HealthStatus::{self, *};
use super::{Hysteresis, PendingStatus, Step};

const ALL: [HealthStatus; 7] = [Ok, Info, Unknown, Pending, Warning, Degraded, Severe];
const MEASURED: [HealthStatus; 4] = [Ok, Warning, Degraded, Severe];

fn operational(status: HealthStatus) -> bool {
    matches!(status, Pending | Info | Unknown)
}

/// How many of the last evaluations in `history` equal its last one.
fn trailing_run(history: &[HealthStatus]) -> u32 {
    let last = history.last().copied();
    history
        .iter()
        .rev()
        .take_while(|s| Some(**s) == last)
        .count() as u32
}

/// What the hysteresis must answer to the last evaluation of `history`, given the status
/// published before it.
fn expected(
    published: Option<HealthStatus>,
    history: &[HealthStatus],
    required: u32,
) -> (Step, HealthStatus) {
    let status = *history.last().expect("one evaluation at least");
    let Some(published) = published else {
        return (
            Step::Changed {
                from: None,
                to: status,
            },
            status,
        );
    };
    if status == published {
        return (Step::Unchanged, published);
    }
    let seen = trailing_run(history);
    if operational(status) || operational(published) || seen >= required {
        let step = Step::Changed {
            from: Some(published),
            to: status,
        };
        return (step, status);
    }
    let pending = PendingStatus {
        status,
        seen,
        required,
    };
    (Step::Pending(pending), published)
}

fn statuses(pool: &'static [HealthStatus]) -> impl Strategy<Value = Vec<HealthStatus>> {
    // Runs of one status, so that reaching `required` in a row happens often.
    prop::collection::vec((prop::sample::select(pool), 1..5usize), 1..40).prop_map(|runs| {
        runs.into_iter()
            .flat_map(|(status, n)| std::iter::repeat_n(status, n))
            .collect()
    })
}

proptest! {
    #[test]
    fn every_step_agrees_with_the_history_model(
        required in 1..6u32,
        history in statuses(&ALL),
    ) {
        let mut hysteresis = Hysteresis::new(required);
        let mut published = None;
        for t in 0..history.len() {
            let (step, now_published) = expected(published, &history[..=t], required);
            prop_assert_eq!(hysteresis.observe(history[t]), step, "evaluation {}", t);
            prop_assert_eq!(hysteresis.published(), Some(now_published));
            published = Some(now_published);
        }
    }

    #[test]
    fn a_measured_status_is_published_only_after_required_evaluations_in_a_row(
        required in 1..6u32,
        history in statuses(&MEASURED),
    ) {
        let mut hysteresis = Hysteresis::new(required);
        hysteresis.observe(history[0]);
        for t in 1..history.len() {
            let before = hysteresis.published();
            hysteresis.observe(history[t]);
            let after = hysteresis.published();
            if after != before {
                prop_assert_eq!(after, Some(history[t]));
                prop_assert!(trailing_run(&history[..=t]) >= required);
            }
        }
    }

    #[test]
    fn flapping_shorter_than_required_never_changes_the_published_status(
        required in 2..6u32,
        first in prop::sample::select(&MEASURED[..]),
        others in prop::collection::vec(
            (prop::sample::select(&MEASURED[..]), 1..6u32), 1..30),
    ) {
        let mut hysteresis = Hysteresis::new(required);
        hysteresis.observe(first);
        for (status, n) in others {
            // Runs shorter than `required`, each broken by the published status.
            for _ in 0..n.min(required - 1) {
                let step = hysteresis.observe(status);
                prop_assert!(!matches!(step, Step::Changed { .. }), "{:?}", step);
            }
            hysteresis.observe(first);
            prop_assert_eq!(hysteresis.published(), Some(first));
        }
    }

    #[test]
    fn a_pending_count_stays_below_required(
        required in 1..6u32,
        history in statuses(&ALL),
    ) {
        let mut hysteresis = Hysteresis::new(required);
        for status in history {
            if let Step::Pending(pending) = hysteresis.observe(status) {
                prop_assert!(pending.seen >= 1 && pending.seen < pending.required);
                prop_assert_eq!(pending.required, required);
                prop_assert_ne!(hysteresis.published(), Some(pending.status));
            }
        }
    }
}
