//! Turns every signal about the instance into one graded status with causes, the way Elastic
//! Beanstalk's enhanced health does. Pure: the task gathers the inputs, this decides.
//!
//! Thresholds are published (docs/health.md) instead of hidden as Elastic Beanstalk's are.

use serde::{Deserialize, Serialize};

pub use super::signals::MetricInputs;
use super::signals::{host_causes, request_causes};
use crate::supervise::{ProcessState, ProcessStatus};

/// Elastic Beanstalk's statuses, worst last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum HealthStatus {
    Ok,
    Info,
    Unknown,
    Pending,
    Warning,
    Degraded,
    Severe,
}

impl HealthStatus {
    /// Elastic Beanstalk's colour for the status.
    pub fn color(self) -> &'static str {
        match self {
            Self::Ok | Self::Info => "Green",
            Self::Unknown | Self::Pending => "Grey",
            Self::Warning => "Yellow",
            Self::Degraded | Self::Severe => "Red",
        }
    }

    /// The value of the `InstanceHealth` CloudWatch metric (Elastic Beanstalk's codes).
    pub fn code(self) -> u32 {
        match self {
            Self::Ok => 0,
            Self::Info => 1,
            Self::Unknown => 5,
            Self::Pending => 10,
            Self::Warning => 15,
            Self::Degraded => 20,
            Self::Severe => 25,
        }
    }
}

/// One reason for a status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cause {
    pub status: HealthStatus,
    pub message: String,
}

/// Consecutive results of one kind of check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckHistory {
    pub consecutive_failures: u32,
    pub last_error: Option<String>,
    pub checked: bool,
}

/// Everything the rules look at.
#[derive(Debug, Clone)]
pub struct HealthInputs<'a> {
    pub now_ms: i64,
    pub has_release: bool,
    /// A deployment being executed: (started at, version label).
    pub deployment: Option<(i64, &'a str)>,
    /// Processes of the serving release, and the names its Procfile declares.
    pub processes: &'a [ProcessStatus],
    pub expected: &'a [String],
    /// The platform's application server the web process runs ("gunicorn, the python
    /// platform's application server"): named in the web process's causes.
    pub web_server: Option<&'a str>,
    /// Where the serving release's web process should listen (health checks go there).
    pub web_port: Option<u16>,
    pub path: &'a str,
    pub direct: &'a CheckHistory,
    /// `None` when nginx is disabled.
    pub proxied: Option<&'a CheckHistory>,
    pub failures_before_unhealthy: u32,
    /// Request statistics and host metrics.
    pub metrics: MetricInputs<'a>,
}

/// The verdict: the worst cause wins; causes are listed worst first.
pub fn evaluate(inputs: &HealthInputs<'_>) -> (HealthStatus, Vec<Cause>) {
    let mut causes: Vec<Cause> = Vec::new();
    let add =
        |causes: &mut Vec<Cause>, status, message: String| causes.push(Cause { status, message });
    if let Some((started_ms, label)) = inputs.deployment {
        let seconds = (inputs.now_ms - started_ms).max(0) / 1000;
        let status = if inputs.has_release {
            HealthStatus::Info
        } else {
            HealthStatus::Pending
        };
        add(
            &mut causes,
            status,
            format!(
                "Application deployment of {label} in progress (running for {seconds} seconds)"
            ),
        );
    }
    host_causes(&inputs.metrics, &mut causes);
    if !inputs.has_release {
        if inputs.deployment.is_none() {
            add(
                &mut causes,
                HealthStatus::Unknown,
                "No application version deployed yet".to_string(),
            );
        }
        return verdict(causes);
    }
    let named = |name: &str| match (name, inputs.web_server) {
        ("web", Some(server)) => format!("web ({server})"),
        _ => name.to_string(),
    };
    for name in inputs.expected {
        let process = inputs.processes.iter().find(|p| &p.name == name);
        let running = process.is_some_and(|p| p.state == ProcessState::Running);
        if !running {
            let status = if name == "web" {
                HealthStatus::Severe
            } else {
                HealthStatus::Degraded
            };
            let detail = process
                .and_then(|p| p.last_exit)
                .map(|exit| format!(" (last exit: {exit}; restarting)"))
                .unwrap_or_default();
            add(
                &mut causes,
                status,
                format!("Process {} is not running{detail}", named(name)),
            );
        }
    }
    causes.extend(crash_loop_causes(inputs.processes, &named));
    let threshold = inputs.failures_before_unhealthy.max(1);
    let direct_failing = inputs.direct.consecutive_failures >= threshold;
    if direct_failing {
        add(
            &mut causes,
            HealthStatus::Severe,
            format!(
                "Health check {} failed {} times: {}{}",
                inputs.path,
                inputs.direct.consecutive_failures,
                inputs.direct.last_error.as_deref().unwrap_or("no answer"),
                web_listening(inputs)
            ),
        );
    }
    if let Some(proxied) = inputs.proxied
        && proxied.consecutive_failures >= threshold
        && !direct_failing
    {
        add(
            &mut causes,
            HealthStatus::Degraded,
            format!(
                "Requests through nginx fail ({} times): {}",
                proxied.consecutive_failures,
                proxied.last_error.as_deref().unwrap_or("no answer")
            ),
        );
    }
    request_causes(&inputs.metrics, &mut causes);
    if !inputs.direct.checked && causes.is_empty() {
        add(
            &mut causes,
            HealthStatus::Pending,
            "Waiting for the first health check".to_string(),
        );
    }
    verdict(causes)
}

/// Every crash-looping process is Severe, whichever process it is: it will not heal itself.
fn crash_loop_causes<'a>(
    processes: &'a [ProcessStatus],
    named: &'a dyn Fn(&str) -> String,
) -> impl Iterator<Item = Cause> + 'a {
    processes.iter().filter_map(|p| {
        let crash_loop = p.crash_loop?;
        let last = p
            .last_exit
            .map(|exit| format!(", the last with {exit}"))
            .unwrap_or_default();
        Some(Cause {
            status: HealthStatus::Severe,
            message: format!(
                "Process {} is crash-looping: {} exits within {}s{last}",
                named(&p.name),
                crash_loop.exits,
                crash_loop.window_secs
            ),
        })
    })
}

/// The log watcher's input: severe errors in its recent window make a Warning cause.
pub fn severe_errors_cause(count: u64, window_minutes: u64, top: Option<&str>) -> Option<Cause> {
    (count > 0).then(|| Cause {
        status: HealthStatus::Warning,
        message: format!(
            "{count} severe errors in the last {window_minutes} minutes: {}",
            top.unwrap_or("unknown")
        ),
    })
}

/// Adds `extra` causes to a verdict, keeping the worst first.
pub fn with_causes(
    (_, mut causes): (HealthStatus, Vec<Cause>),
    extra: impl IntoIterator<Item = Cause>,
) -> (HealthStatus, Vec<Cause>) {
    causes.extend(extra);
    verdict(causes)
}

fn verdict(mut causes: Vec<Cause>) -> (HealthStatus, Vec<Cause>) {
    causes.sort_by_key(|cause| std::cmp::Reverse(cause.status));
    let status = causes.first().map_or(HealthStatus::Ok, |c| c.status);
    // Ok and Info causes are informative only when nothing is wrong.
    (status, causes)
}

/// Where the web process listens, when that explains a failing health check: "; web listens
/// on port 8001, not on 5000". Empty when it listens on its port or was not sampled yet.
fn web_listening(inputs: &HealthInputs<'_>) -> String {
    let web = inputs
        .processes
        .iter()
        .find(|p| p.name == "web" && p.state == ProcessState::Running);
    let (Some(listening), Some(port)) = (web.and_then(|p| p.listening.as_ref()), inputs.web_port)
    else {
        return String::new();
    };
    if listening.contains(&port) {
        return String::new();
    }
    let ports: Vec<String> = listening.iter().map(u16::to_string).collect();
    match ports.as_slice() {
        [] => format!("; web listens on no TCP port (it should on {port})"),
        [one] => format!("; web listens on port {one}, not on {port}"),
        many => format!("; web listens on ports {}, not on {port}", many.join(", ")),
    }
}

/// Inputs for the tests of the health rules (here and in `signals.rs`).
#[cfg(test)]
pub(super) mod fixtures {
    use super::*;
    use crate::supervise::ExitStatus;

    pub fn process(name: &str, state: ProcessState) -> ProcessStatus {
        ProcessStatus {
            name: name.into(),
            release: 1,
            pid: Some(10),
            port: None,
            state,
            restarts: 0,
            uptime_secs: Some(5),
            last_exit: (state != ProcessState::Running).then_some(ExitStatus::Signal(9)),
            restart_delay_ms: None,
            crash_loop: None,
            stats: None,
            listening: None,
        }
    }

    pub fn healthy() -> CheckHistory {
        CheckHistory {
            consecutive_failures: 0,
            last_error: None,
            checked: true,
        }
    }

    pub fn inputs<'a>(
        processes: &'a [ProcessStatus],
        expected: &'a [String],
        direct: &'a CheckHistory,
    ) -> HealthInputs<'a> {
        HealthInputs {
            now_ms: 100_000,
            has_release: true,
            deployment: None,
            processes,
            expected,
            web_server: None,
            web_port: Some(5000),
            path: "/health",
            direct,
            proxied: Some(direct),
            failures_before_unhealthy: 2,
            metrics: MetricInputs::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{healthy, inputs, process};
    use super::*;
    use crate::supervise::ExitStatus;

    #[test]
    fn all_good_is_ok_without_causes() {
        let processes = [process("web", ProcessState::Running)];
        let expected = ["web".to_string()];
        let direct = healthy();
        assert_eq!(
            evaluate(&inputs(&processes, &expected, &direct)),
            (HealthStatus::Ok, vec![])
        );
    }

    #[test]
    fn a_dead_web_process_is_severe_with_its_exit() {
        let processes = [
            process("web", ProcessState::Backoff),
            process("worker", ProcessState::Running),
        ];
        let expected = ["web".to_string(), "worker".to_string()];
        let direct = healthy();
        let (status, causes) = evaluate(&inputs(&processes, &expected, &direct));
        assert_eq!(status, HealthStatus::Severe);
        assert_eq!(
            causes[0].message,
            "Process web is not running (last exit: signal 9 (SIGKILL); restarting)"
        );
    }

    #[test]
    fn failing_checks_count_only_past_the_threshold() {
        let processes = [process("web", ProcessState::Running)];
        let expected = ["web".to_string()];
        let once = CheckHistory {
            consecutive_failures: 1,
            last_error: Some("connection refused".into()),
            checked: true,
        };
        assert_eq!(
            evaluate(&inputs(&processes, &expected, &once)).0,
            HealthStatus::Ok
        );
        let four = CheckHistory {
            consecutive_failures: 4,
            ..once
        };
        let (status, causes) = evaluate(&inputs(&processes, &expected, &four));
        assert_eq!(status, HealthStatus::Severe);
        assert_eq!(
            causes[0].message,
            "Health check /health failed 4 times: connection refused"
        );
        // Where the web process listens instead explains the refusal.
        let elsewhere = [ProcessStatus {
            listening: Some(vec![8001]),
            ..process("web", ProcessState::Running)
        }];
        let (_, causes) = evaluate(&inputs(&elsewhere, &expected, &four));
        assert_eq!(
            causes[0].message,
            "Health check /health failed 4 times: connection refused; web listens on port 8001, not on 5000"
        );
        let nowhere = [ProcessStatus {
            listening: Some(Vec::new()),
            ..process("web", ProcessState::Running)
        }];
        let (_, causes) = evaluate(&inputs(&nowhere, &expected, &four));
        assert!(
            causes[0]
                .message
                .ends_with("; web listens on no TCP port (it should on 5000)")
        );
    }

    #[test]
    fn nginx_failing_alone_is_degraded() {
        let processes = [process("web", ProcessState::Running)];
        let expected = ["web".to_string()];
        let direct = healthy();
        let proxied = CheckHistory {
            consecutive_failures: 3,
            last_error: Some("HTTP 502".into()),
            checked: true,
        };
        let mut input = inputs(&processes, &expected, &direct);
        input.proxied = Some(&proxied);
        let (status, causes) = evaluate(&input);
        assert_eq!(status, HealthStatus::Degraded);
        assert_eq!(
            causes[0].message,
            "Requests through nginx fail (3 times): HTTP 502"
        );
    }

    #[test]
    fn deployments_are_pending_or_info() {
        let direct = healthy();
        let mut input = inputs(&[], &[], &direct);
        input.has_release = false;
        input.deployment = Some((69_000, "v1"));
        let (status, causes) = evaluate(&input);
        assert_eq!(status, HealthStatus::Pending);
        assert_eq!(
            causes[0].message,
            "Application deployment of v1 in progress (running for 31 seconds)"
        );
        input.has_release = true;
        assert_eq!(evaluate(&input).0, HealthStatus::Info);
        input.has_release = false;
        input.deployment = None;
        assert_eq!(evaluate(&input).0, HealthStatus::Unknown);
    }

    #[test]
    fn the_web_process_is_named_with_its_platform_server() {
        let mut web = process("web", ProcessState::Backoff);
        web.last_exit = Some(crate::supervise::ExitStatus::Code(3));
        web.crash_loop = Some(crate::supervise::CrashLoop {
            exits: 5,
            window_secs: 60,
        });
        let processes = [web];
        let expected = ["web".to_string()];
        let direct = healthy();
        let inputs = HealthInputs {
            web_server: Some("gunicorn, the python platform's application server"),
            ..inputs(&processes, &expected, &direct)
        };
        let (_, causes) = evaluate(&inputs);
        let messages: Vec<&str> = causes.iter().map(|c| c.message.as_str()).collect();
        assert!(
            messages.contains(
                &"Process web (gunicorn, the python platform's application server) is not running (last exit: exit status 3; restarting)"
            ),
            "{messages:?}"
        );
        assert!(
            messages.iter().any(|m| m.starts_with(
                "Process web (gunicorn, the python platform's application server) is crash-looping: 5 exits within 60s"
            )),
            "{messages:?}"
        );
    }

    #[test]
    fn a_crash_looping_worker_is_severe() {
        let mut worker = process("worker", ProcessState::Running);
        worker.last_exit = Some(ExitStatus::Code(3));
        worker.crash_loop = Some(crate::supervise::CrashLoop {
            exits: 5,
            window_secs: 60,
        });
        let processes = [process("web", ProcessState::Running), worker];
        let expected = ["web".to_string(), "worker".to_string()];
        let direct = healthy();
        let (status, causes) = evaluate(&inputs(&processes, &expected, &direct));
        assert_eq!(status, HealthStatus::Severe);
        assert_eq!(
            causes[0].message,
            "Process worker is crash-looping: 5 exits within 60s, the last with exit status 3"
        );
    }

    #[test]
    fn severe_log_errors_are_a_warning() {
        assert_eq!(severe_errors_cause(0, 5, None), None);
        let cause = severe_errors_cause(3, 5, Some("ValueError: bad")).expect("cause");
        assert_eq!(
            cause.message,
            "3 severe errors in the last 5 minutes: ValueError: bad"
        );
        let (status, causes) = with_causes((HealthStatus::Ok, vec![]), [cause]);
        assert_eq!(status, HealthStatus::Warning);
        assert_eq!(causes.len(), 1);
    }

    #[test]
    fn colours_and_codes_follow_elastic_beanstalk() {
        assert_eq!(HealthStatus::Warning.color(), "Yellow");
        assert_eq!(HealthStatus::Severe.code(), 25);
        assert!(HealthStatus::Severe > HealthStatus::Degraded);
    }
}
