//! Hysteresis: the published status changes only after `required` consecutive evaluations agree
//! on a new one, so one slow request window or one missed check does not flap the status (nor
//! flood the events). Pure.

use serde::{Deserialize, Serialize};

use super::rules::HealthStatus;

/// What one evaluation did to the published status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The evaluation agrees with the published status.
    Unchanged,
    /// The published status changed (`from` is `None` on the very first evaluation).
    Changed {
        from: Option<HealthStatus>,
        to: HealthStatus,
    },
    /// A different status was seen `seen` times in a row; it takes `required`.
    Pending(PendingStatus),
}

/// A status that is not published yet, shown beside the published one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingStatus {
    pub status: HealthStatus,
    pub seen: u32,
    pub required: u32,
}

fn is_operational(status: HealthStatus) -> bool {
    matches!(
        status,
        HealthStatus::Pending | HealthStatus::Info | HealthStatus::Unknown
    )
}

#[derive(Debug, Clone)]
pub struct Hysteresis {
    required: u32,
    published: Option<HealthStatus>,
    candidate: Option<(HealthStatus, u32)>,
}

impl Hysteresis {
    pub fn new(required: u32) -> Self {
        Self {
            required: required.max(1),
            published: None,
            candidate: None,
        }
    }

    /// A live reconfiguration's `status_change_after`: the streak seen so far still counts.
    pub fn set_required(&mut self, required: u32) {
        self.required = required.max(1);
    }

    pub fn published(&self) -> Option<HealthStatus> {
        self.published
    }

    /// Feeds one evaluation's status.
    pub fn observe(&mut self, status: HealthStatus) -> Step {
        let Some(published) = self.published else {
            // Nothing is known before the first evaluation: take it as it is.
            self.published = Some(status);
            return Step::Changed {
                from: None,
                to: status,
            };
        };
        if status == published {
            self.candidate = None;
            return Step::Unchanged;
        }
        // Pending, Info and Unknown report operations (a deployment starts or ends, nothing is
        // deployed), not noisy measurements: they are published, and left, at once.
        if is_operational(status) || is_operational(published) {
            self.published = Some(status);
            self.candidate = None;
            return Step::Changed {
                from: Some(published),
                to: status,
            };
        }
        let seen = match self.candidate {
            Some((candidate, seen)) if candidate == status => seen + 1,
            _ => 1,
        };
        if seen >= self.required {
            self.published = Some(status);
            self.candidate = None;
            Step::Changed {
                from: Some(published),
                to: status,
            }
        } else {
            self.candidate = Some((status, seen));
            Step::Pending(PendingStatus {
                status,
                seen,
                required: self.required,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use HealthStatus::*;

    #[test]
    fn the_first_evaluation_is_published_at_once() {
        let mut h = Hysteresis::new(3);
        assert_eq!(h.observe(Ok), Step::Changed { from: None, to: Ok });
        assert_eq!(h.published(), Some(Ok));
    }

    #[test]
    fn a_change_needs_n_agreeing_evaluations_in_a_row() {
        let mut h = Hysteresis::new(3);
        h.observe(Ok);
        let pending = |seen| {
            Step::Pending(PendingStatus {
                status: Severe,
                seen,
                required: 3,
            })
        };
        assert_eq!(h.observe(Severe), pending(1));
        assert_eq!(h.observe(Severe), pending(2));
        assert_eq!(
            h.observe(Severe),
            Step::Changed {
                from: Some(Ok),
                to: Severe
            }
        );
        assert_eq!(h.observe(Severe), Step::Unchanged);
    }

    #[test]
    fn flapping_never_changes_the_status() {
        let mut h = Hysteresis::new(2);
        h.observe(Ok);
        for _ in 0..10 {
            assert!(matches!(h.observe(Degraded), Step::Pending(_)));
            assert_eq!(h.observe(Ok), Step::Unchanged);
        }
        // Two different bad statuses in a row do not add up either.
        assert!(matches!(h.observe(Warning), Step::Pending(_)));
        assert!(matches!(h.observe(Severe), Step::Pending(p) if p.seen == 1));
        assert_eq!(h.published(), Some(Ok));
    }

    #[test]
    fn deployments_start_and_end_at_once() {
        let mut h = Hysteresis::new(3);
        h.observe(Ok);
        assert_eq!(
            h.observe(Info),
            Step::Changed {
                from: Some(Ok),
                to: Info
            }
        );
        assert_eq!(
            h.observe(Ok),
            Step::Changed {
                from: Some(Info),
                to: Ok
            }
        );
        assert_eq!(
            h.observe(Pending),
            Step::Changed {
                from: Some(Ok),
                to: Pending
            }
        );
        assert_eq!(
            h.observe(Severe),
            Step::Changed {
                from: Some(Pending),
                to: Severe
            }
        );
    }

    #[test]
    fn one_means_no_hysteresis() {
        let mut h = Hysteresis::new(1);
        h.observe(Ok);
        assert_eq!(
            h.observe(Warning),
            Step::Changed {
                from: Some(Ok),
                to: Warning
            }
        );
    }
}

#[cfg(test)]
#[path = "hysteresis_props.rs"]
mod props;
