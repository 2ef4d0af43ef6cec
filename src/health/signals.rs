//! The rules on measured signals: request failure rates of the last metrics window, CPU in use
//! and root filesystem use, graded by the published levels of `[health]` (docs/health.md). Pure.

use super::rules::{Cause, HealthStatus};
use crate::config::{HealthThresholds, Levels};
use crate::metrics::{HostSample, RequestStats};

/// The measured signals: the last request window, the last host sample, and their thresholds.
#[derive(Debug, Clone, Copy)]
pub struct MetricInputs<'a> {
    pub requests: Option<&'a RequestStats>,
    pub host: Option<&'a HostSample>,
    pub thresholds: &'a HealthThresholds,
}

impl Default for MetricInputs<'_> {
    fn default() -> Self {
        Self {
            requests: None,
            host: None,
            thresholds: &HealthThresholds::DEFAULT,
        }
    }
}

/// 5xx and 4xx rates of the last window, when it had enough requests to judge.
pub(super) fn request_causes(metrics: &MetricInputs<'_>, causes: &mut Vec<Cause>) {
    let thresholds = metrics.thresholds;
    let Some(requests) = metrics.requests else {
        return;
    };
    let counts = &requests.counts;
    if counts.total == 0 || counts.total < thresholds.min_requests {
        return;
    }
    // Elastic Beanstalk's words: 5xx requests are "failing", 4xx ones "erroring".
    let rules = [
        (
            counts.server_error,
            &thresholds.requests_5xx,
            "failing",
            "5xx",
        ),
        (
            counts.client_error,
            &thresholds.requests_4xx,
            "erroring",
            "4xx",
        ),
    ];
    for (failed, levels, verb, class) in rules {
        let percent = counts.percent(failed);
        if let Some(status) = grade(levels, percent) {
            causes.push(Cause {
                status,
                message: format!(
                    "{} of the requests are {verb} with HTTP {class}",
                    percent_text(percent)
                ),
            });
        }
    }
}

/// CPU in use and root filesystem use of the last host sample.
pub(super) fn host_causes(metrics: &MetricInputs<'_>, causes: &mut Vec<Cause>) {
    let Some(host) = metrics.host else {
        return;
    };
    if let Some(cpu) = &host.cpu
        && let Some(status) = grade(&metrics.thresholds.cpu, cpu.used())
    {
        let iowait = if cpu.iowait >= 5.0 {
            format!(". {} in I/O wait", percent_text(cpu.iowait))
        } else {
            String::new()
        };
        causes.push(Cause {
            status,
            message: format!("{} of CPU is in use{iowait}", percent_text(cpu.used())),
        });
    }
    if let Some(fs) = &host.root_filesystem
        && let Some(status) = grade(&metrics.thresholds.root_filesystem, fs.used_percent)
    {
        causes.push(Cause {
            status,
            message: format!(
                "Root filesystem ({}) is {} full",
                fs.path,
                percent_text(fs.used_percent)
            ),
        });
    }
}

/// The worst level `percent` reached.
fn grade(levels: &Levels, percent: f64) -> Option<HealthStatus> {
    let reached = |level: Option<f64>| level.is_some_and(|l| percent >= l);
    if reached(levels.severe) {
        Some(HealthStatus::Severe)
    } else if reached(levels.degraded) {
        Some(HealthStatus::Degraded)
    } else if reached(levels.warning) {
        Some(HealthStatus::Warning)
    } else {
        None
    }
}

/// "12%", or "0.5%" below 10 % where the decimal matters.
fn percent_text(percent: f64) -> String {
    if percent >= 10.0 || percent.fract() == 0.0 {
        format!("{percent:.0}%")
    } else {
        format!("{percent:.1}%")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::rules::evaluate;
    use crate::health::rules::fixtures::{healthy, inputs, process};
    use crate::supervise::{ProcessState, ProcessStatus};

    fn web() -> [ProcessStatus; 1] {
        [process("web", ProcessState::Running)]
    }

    fn window(total: u64, client_error: u64, server_error: u64) -> RequestStats {
        RequestStats {
            counts: crate::metrics::StatusCounts {
                total,
                success: total - client_error - server_error,
                client_error,
                server_error,
                ..Default::default()
            },
            latency: None,
            malformed_lines: 0,
        }
    }

    #[test]
    fn failing_requests_grade_by_their_share() {
        let processes = web();
        let expected = ["web".to_string()];
        let direct = healthy();
        let cases = [
            (window(100, 0, 0), HealthStatus::Ok, None),
            (
                window(100, 0, 1),
                HealthStatus::Warning,
                Some("1% of the requests are failing with HTTP 5xx"),
            ),
            (
                window(100, 0, 12),
                HealthStatus::Degraded,
                Some("12% of the requests are failing with HTTP 5xx"),
            ),
            (
                window(200, 0, 100),
                HealthStatus::Severe,
                Some("50% of the requests are failing with HTTP 5xx"),
            ),
            (window(200, 1, 0), HealthStatus::Ok, None),
            (
                window(200, 30, 0),
                HealthStatus::Warning,
                Some("15% of the requests are erroring with HTTP 4xx"),
            ),
            (window(1000, 0, 5), HealthStatus::Ok, None),
            // Too few requests to judge a rate.
            (window(4, 0, 4), HealthStatus::Ok, None),
        ];
        for (requests, status, message) in cases {
            let mut input = inputs(&processes, &expected, &direct);
            input.metrics.requests = Some(&requests);
            let (got, causes) = evaluate(&input);
            assert_eq!(got, status, "{requests:?}");
            assert_eq!(causes.first().map(|c| c.message.as_str()), message);
        }
        let mut input = inputs(&processes, &expected, &direct);
        let requests = window(1000, 0, 5);
        let mut thresholds = HealthThresholds::DEFAULT;
        thresholds.requests_5xx.warning = Some(0.5);
        input.metrics.requests = Some(&requests);
        input.metrics.thresholds = &thresholds;
        assert_eq!(
            evaluate(&input).1[0].message,
            "0.5% of the requests are failing with HTTP 5xx"
        );
    }

    #[test]
    fn busy_cpu_and_a_full_disk_are_causes() {
        use crate::metrics::{CpuPercent, Filesystem};
        let processes = web();
        let expected = ["web".to_string()];
        let direct = healthy();
        let host = HostSample {
            cpu: Some(CpuPercent {
                user: 70.0,
                iowait: 25.0,
                idle: 5.0,
                ..CpuPercent::default()
            }),
            root_filesystem: Some(Filesystem {
                path: "/".into(),
                used_percent: 91.2,
                ..Filesystem::default()
            }),
            ..HostSample::default()
        };
        let mut input = inputs(&processes, &expected, &direct);
        input.metrics.host = Some(&host);
        let (status, causes) = evaluate(&input);
        assert_eq!(status, HealthStatus::Degraded);
        let messages: Vec<_> = causes.iter().map(|c| c.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "95% of CPU is in use. 25% in I/O wait",
                "Root filesystem (/) is 91% full"
            ]
        );
    }
}
