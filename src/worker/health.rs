//! The worker's part of the host's health: receives that fail, requests the app fails (graded
//! with the same levels as 5xx answers), and messages that waited too long. Pure.

use std::time::Duration;

use super::stats::{WorkerState, WorkerStatus};
use crate::config::HealthThresholds;
use crate::health::{Cause, HealthStatus};

/// Receives in a row that must fail before it is a cause (one can fail in passing).
const POLL_FAILURES: u32 = 2;

pub fn causes(
    status: &WorkerStatus,
    thresholds: &HealthThresholds,
    oldest_warning: Duration,
) -> Vec<Cause> {
    let mut out = Vec::new();
    if status.daemon.state == WorkerState::Stopped {
        out.push(Cause {
            status: HealthStatus::Severe,
            message: format!(
                "The worker daemon for SQS queue {} is not running.",
                status.queue
            ),
        });
    }
    if status.daemon.poll_failures >= POLL_FAILURES
        && let Some(error) = &status.daemon.poll_error
    {
        out.push(Cause {
            status: HealthStatus::Degraded,
            message: format!(
                "The worker daemon failed to pull messages from SQS queue {} with error: {error}",
                status.queue
            ),
        });
    }
    let minute = &status.last_minute;
    let total = minute.processed + minute.failed;
    if total >= thresholds.min_requests.max(1) && minute.failed > 0 {
        let levels = &thresholds.requests_5xx;
        let percent = minute.failure_percent;
        let graded = [
            (levels.severe, HealthStatus::Severe),
            (levels.degraded, HealthStatus::Degraded),
            (levels.warning, HealthStatus::Warning),
        ]
        .into_iter()
        .find_map(|(level, status)| level.filter(|l| percent >= *l).map(|_| status));
        if let Some(graded) = graded {
            let last = minute
                .last_failure
                .as_deref()
                .map(|r| format!("; last: {r}"))
                .unwrap_or_default();
            out.push(Cause {
                status: graded,
                message: format!(
                    "The worker daemon failed {} % of its requests in the last minute ({} of {total}{last}).",
                    trim(percent),
                    minute.failed
                ),
            });
        }
    }
    if let Some(age) = minute.oldest_message_age_secs
        && age >= oldest_warning.as_secs().max(1)
    {
        let waiting = status
            .daemon
            .queue_depth
            .as_ref()
            .map(|d| format!(", {} waiting", d.visible))
            .unwrap_or_default();
        out.push(Cause {
            status: HealthStatus::Warning,
            message: format!(
                "A message received in the last minute had waited {} in SQS queue {}: the worker does not keep up{waiting}.",
                humantime::format_duration(Duration::from_secs(age)),
                status.queue
            ),
        });
    }
    out
}

fn trim(percent: f64) -> String {
    if percent.fract() == 0.0 {
        format!("{percent:.0}")
    } else {
        format!("{percent:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::stats::{DaemonState, MinuteSummary, PeriodicStatus, Totals};

    fn status(processed: u64, failed: u64) -> WorkerStatus {
        WorkerStatus {
            queue_url: "http://127.0.0.1/1/jobs".into(),
            queue: "jobs".into(),
            http_connections: 50,
            daemon: DaemonState {
                state: WorkerState::Running,
                ..DaemonState::default()
            },
            last_minute: MinuteSummary {
                processed,
                failed,
                failure_percent: if processed + failed == 0 {
                    0.0
                } else {
                    (failed * 100) as f64 / (processed + failed) as f64
                },
                last_failure: (failed > 0).then(|| "HTTP 500".into()),
                ..Default::default()
            },
            totals: Totals::default(),
            periodic: PeriodicStatus::default(),
        }
    }

    const WARN_AFTER: Duration = Duration::from_secs(600);

    #[test]
    fn a_healthy_worker_has_no_cause() {
        assert!(causes(&status(100, 0), &HealthThresholds::DEFAULT, WARN_AFTER).is_empty());
    }

    #[test]
    fn failed_requests_grade_like_5xx_answers() {
        let found = causes(&status(18, 12), &HealthThresholds::DEFAULT, WARN_AFTER);
        assert_eq!(found[0].status, HealthStatus::Severe);
        assert_eq!(
            found[0].message,
            "The worker daemon failed 40 % of its requests in the last minute (12 of 30; last: HTTP 500)."
        );
        let found = causes(&status(95, 5), &HealthThresholds::DEFAULT, WARN_AFTER);
        assert_eq!(found[0].status, HealthStatus::Warning);
        // Too few requests to judge.
        assert!(causes(&status(1, 2), &HealthThresholds::DEFAULT, WARN_AFTER).is_empty());
    }

    #[test]
    fn failing_receives_and_old_messages_are_causes() {
        let mut s = status(0, 0);
        s.daemon.poll_failures = 1;
        s.daemon.poll_error = Some("connection refused".into());
        assert!(causes(&s, &HealthThresholds::DEFAULT, WARN_AFTER).is_empty());
        s.daemon.poll_failures = 2;
        s.last_minute.oldest_message_age_secs = Some(900);
        let found = causes(&s, &HealthThresholds::DEFAULT, WARN_AFTER);
        assert_eq!(found[0].status, HealthStatus::Degraded);
        assert!(
            found[0].message.ends_with("with error: connection refused"),
            "{}",
            found[0].message
        );
        assert_eq!(found[1].status, HealthStatus::Warning);
        assert!(
            found[1].message.contains("waited 15m"),
            "{}",
            found[1].message
        );
    }
}
