//! The environment's health: candidates from the instances and the merged request window, the
//! worst of which is published after hysteresis, with a transition event
//! (`docs/controller.md`, "Health"; texts from EB). AWS does not publish its thresholds;
//! these are the same as the agent's own.

use std::collections::BTreeMap;

use super::instance::{Basis, InstanceContext, deployment_suffix, effective};
use super::{InstanceHealth, InstancesHealth, Status};
use crate::deploy::deadline_ms;
use crate::metrics::{ApplicationMetrics, MergedWindow};
use crate::model::{Deployment, EventSeverity, Instance, Millis, PublishedHealth};

/// Evaluations in a row a different candidate needs before it is published (30 s at 10 s;
/// EB: "fails health checks at least three times in any one-minute period").
pub const HYSTERESIS_EVALUATIONS: u32 = 3;

/// A window needs this many requests before its status codes judge the environment.
pub const MIN_REQUESTS: u64 = 10;

/// Everything one evaluation reads.
#[derive(Debug, Clone, Copy)]
pub struct RollupInput<'a> {
    pub published: &'a PublishedHealth,
    pub expected_version: Option<&'a str>,
    pub expected_deployment: Option<i64>,
    /// The environment's instances (revoked ones are skipped).
    pub instances: &'a [Instance],
    /// The environment's unfinished deployment, if any.
    pub active: Option<&'a Deployment>,
    /// `Timeout` plus the margin, in milliseconds: how long a deployment (or its batch) runs.
    pub budget_ms: u64,
    pub deployments_by_serial: &'a BTreeMap<u64, i64>,
    pub now_ms: Millis,
    pub interval_ms: u64,
    pub missed_reports: u32,
    pub grace_until_ms: Millis,
    /// Only metrics windows that ended after this count.
    pub metrics_newer_than_ms: Millis,
}

/// The environment status one evaluation computes, before hysteresis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub status: Status,
    /// Worst first.
    pub causes: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Evaluation {
    /// Every non-revoked instance's effective health, in input order.
    pub instances: Vec<InstanceHealth>,
    pub candidate: Candidate,
    /// What to store as the environment's health.
    pub published: PublishedHealth,
    /// The transition event to store, when the published status changed.
    pub event: Option<(EventSeverity, String)>,
    pub counts: InstancesHealth,
    pub metrics: ApplicationMetrics,
}

pub fn evaluate(input: &RollupInput<'_>) -> Evaluation {
    let ctx = InstanceContext {
        now_ms: input.now_ms,
        interval_ms: input.interval_ms,
        missed_reports: input.missed_reports,
        grace_until_ms: input.grace_until_ms,
        expected_version: input.expected_version,
        expected_deployment: input.expected_deployment,
        active: input.active,
        active_deadline_ms: input
            .active
            .map_or(0, |deployment| deadline_ms(deployment, input.budget_ms)),
        deployments_by_serial: input.deployments_by_serial,
    };
    let mut instances = Vec::new();
    let mut merged = MergedWindow::new();
    for instance in input.instances {
        let Some(health) = effective(instance, &ctx) else {
            continue;
        };
        // Requests failing on a host mid-deployment do not count before the deadline, as EB
        // does not lower health for them.
        if health.basis != Basis::Deploying
            && let Some(window) = &instance.metrics
            && window.ended_ms > input.metrics_newer_than_ms
        {
            merged.add(window);
        }
        instances.push(health);
    }
    let candidate = candidate(
        &instances,
        &merged,
        input.expected_version,
        input.expected_deployment,
    );
    let (published, event) = publish(input.published, &candidate, input.now_ms);
    Evaluation {
        counts: InstancesHealth::count(instances.iter().map(|h| h.status)),
        metrics: merged.application_metrics(),
        instances,
        candidate,
        published,
        event,
    }
}

/// The worst of the environment's candidates, causes worst first.
pub fn candidate(
    instances: &[InstanceHealth],
    merged: &MergedWindow,
    expected_version: Option<&str>,
    expected_deployment: Option<i64>,
) -> Candidate {
    let total = instances.len();
    if total == 0 {
        return Candidate {
            status: Status::Severe,
            causes: vec!["There are no instances.".to_string()],
        };
    }
    let mut found: Vec<(Status, String)> = Vec::new();

    let impaired = instances.iter().filter(|h| h.status.is_impaired()).count();
    if impaired == total {
        let text = if instances.iter().all(|h| h.status == Status::NoData) {
            "None of the instances are sending data."
        } else {
            "Impaired services on all instances."
        };
        found.push((Status::Severe, text.to_string()));
    } else if impaired > 0 {
        // EB's example: one Severe instance out of 5 → Warning.
        let status = if impaired * 2 >= total {
            Status::Degraded
        } else {
            Status::Warning
        };
        found.push((
            status,
            format!("Impaired services on {impaired} out of {total} instances."),
        ));
    }

    if merged.requests >= MIN_REQUESTS {
        // Integer comparisons: 1 % exactly is Warning, not a rounding accident.
        let at_least = |count: u64, pct: u64| count * 100 >= merged.requests * pct;
        let failing = [
            (25, Status::Severe),
            (10, Status::Degraded),
            (1, Status::Warning),
        ]
        .into_iter()
        .find(|(pct, _)| at_least(merged.status_5xx, *pct));
        if let Some((_, status)) = failing {
            found.push((
                status,
                format!(
                    "{:.1} % of the requests are failing with HTTP 5xx.",
                    merged.percent_5xx()
                ),
            ));
        }
        let erroring = [(25, Status::Degraded), (10, Status::Warning)]
            .into_iter()
            .find(|(pct, _)| at_least(merged.status_4xx, *pct));
        if let Some((_, status)) = erroring {
            found.push((
                status,
                format!(
                    "{:.1} % of the requests are erroring with HTTP 4xx.",
                    merged.percent_4xx()
                ),
            ));
        }
    }

    let wrong = instances
        .iter()
        .filter(|h| h.basis == Basis::WrongVersion)
        .count();
    if wrong > 0
        && let Some(expected) = expected_version
    {
        let expected = format!(
            "Expected version \"{expected}\"{}.",
            deployment_suffix(expected_deployment)
        );
        let text = if wrong == total {
            format!("Incorrect application version on environment instances. {expected}")
        } else {
            format!(
                "Incorrect application version found on {wrong} out of {total} instances. {expected}"
            )
        };
        found.push((Status::Degraded, text));
    }

    if found.is_empty() {
        let executing = instances
            .iter()
            .filter(|h| h.status == Status::Info)
            .count();
        if executing > 0 {
            return Candidate {
                status: Status::Info,
                causes: vec![format!(
                    "Command is executing on {executing} out of {total} instances."
                )],
            };
        }
        return Candidate {
            status: Status::Ok,
            causes: Vec::new(),
        };
    }
    found.sort_by_key(|(status, _)| std::cmp::Reverse(status.rank()));
    Candidate {
        status: found[0].0,
        causes: found.into_iter().map(|(_, cause)| cause).collect(),
    }
}

/// Applies hysteresis: a candidate whose status differs from the published one is published
/// after [`HYSTERESIS_EVALUATIONS`] evaluations in a row on the same side (all worse or all
/// better than the published status; the latest candidate is the one published). Into or out
/// of Info, Pending and Unknown publishes at once: those say an operation started or ended,
/// or that nothing was known, not that health changed. A candidate with the published status
/// updates the causes at once and clears what was pending.
pub fn publish(
    previous: &PublishedHealth,
    candidate: &Candidate,
    now_ms: Millis,
) -> (PublishedHealth, Option<(EventSeverity, String)>) {
    let from = Status::parse_lenient(&previous.status);
    let to = candidate.status;
    if from == to {
        let published = PublishedHealth {
            causes: candidate.causes.clone(),
            color: to.color().as_str().to_string(),
            pending: None,
            ..previous.clone()
        };
        return (published, None);
    }
    let immediate = [from, to]
        .iter()
        .any(|s| matches!(s, Status::Info | Status::Pending | Status::Unknown));
    if !immediate {
        let worse = to.is_worse_than(from);
        let seen = match &previous.pending {
            Some((status, n)) if Status::parse_lenient(status).is_worse_than(from) == worse => {
                n + 1
            }
            _ => 1,
        };
        if seen < HYSTERESIS_EVALUATIONS {
            let held = PublishedHealth {
                pending: Some((to.as_str().to_string(), seen)),
                ..previous.clone()
            };
            return (held, None);
        }
    }
    let published = PublishedHealth {
        status: to.as_str().to_string(),
        color: to.color().as_str().to_string(),
        causes: candidate.causes.clone(),
        since_ms: now_ms,
        pending: None,
    };
    (
        published,
        Some(transition_event(from, to, &candidate.causes)),
    )
}

/// EB's transition event: WARN with the causes when worse, INFO without them when better.
/// A change into Info is worse but not a problem: INFO, with its causes.
pub fn transition_event(from: Status, to: Status, causes: &[String]) -> (EventSeverity, String) {
    let head = format!("Environment health has transitioned from {from} to {to}.");
    if !to.is_worse_than(from) {
        return (EventSeverity::Info, head);
    }
    let severity = if to.rank() >= Status::Warning.rank() {
        EventSeverity::Warn
    } else {
        EventSeverity::Info
    };
    if causes.is_empty() {
        (severity, head)
    } else {
        (severity, format!("{head} {}", causes.join(" ")))
    }
}

#[cfg(test)]
#[path = "rollup_tests.rs"]
mod tests;
