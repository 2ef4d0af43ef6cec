//! Human-readable output of the CLI. Pure: documents in, text out.

use std::fmt::Write;

use crate::deploy::{DeploymentRecord, DeploymentStatus, JobKind, StepRecord, StepStatus};
use crate::events::Event;
use crate::local_api::StatusReport;

pub fn status(report: &StatusReport) -> String {
    let mut out = String::new();
    let health = &report.health;
    let _ = writeln!(out, "Health:     {:?} ({})", health.status, health.color);
    for cause in &health.causes {
        let _ = writeln!(out, "            - {}", cause.message);
    }
    let proxy = &report.proxy;
    let nginx = match (proxy.enabled, proxy.pid) {
        (false, _) => "disabled".to_string(),
        (true, Some(pid)) => format!(
            "running (pid {pid}, config {})",
            proxy.generation.as_deref().unwrap_or("-")
        ),
        (true, None) if proxy.held => {
            "stopped by stop-apps (until `hostmanager start` or the next deployment)".to_string()
        }
        (true, None) => "not running".to_string(),
    };
    let _ = writeln!(out, "URL:        {}", proxy.url);
    let _ = writeln!(out, "nginx:      {nginx}");
    match &proxy.switch {
        Some(crate::proxy::SwitchMode::Runtime) => out.push_str(
            "Switch:     in nginx's memory, no reload (keep-alive clients keep their connections)\n",
        ),
        Some(crate::proxy::SwitchMode::Reload { reason }) => {
            let _ = writeln!(
                out,
                "Switch:     by reloading nginx, which costs each keep-alive client connection one request: {reason}"
            );
        }
        None => {}
    }
    match &report.release {
        Some(release) => {
            let serial = release
                .serial
                .map(|serial| format!(", desired state {serial}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "Release:    {} (deployment {}, deployed {}, web port {}{serial})",
                release.version_label, release.deployment_id, release.deployed_at, release.web_port
            );
            if let Some(given) = release.given_port {
                let _ = writeln!(
                    out,
                    "Port:       web ignores $PORT ({given}) and listens on {}; nginx proxies there and each deployment stops it before starting the next version: no zero-downtime deploys until the app listens on $PORT",
                    release.web_port
                );
            }
            if let Some(platform) = &release.platform {
                let server = platform
                    .server
                    .as_ref()
                    .map(|server| format!(", web process runs {server}"))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "Platform:   {} ({}{server})",
                    platform.describe(),
                    platform.reason
                );
            }
        }
        None => out.push_str("Release:    none deployed yet\n"),
    }
    if let Some(active) = &report.deployment {
        let _ = writeln!(
            out,
            "Deploying:  {} (deployment {}, step {})",
            active.version_label, active.id, active.step
        );
    }
    if let Some(worker) = &report.worker {
        out.push_str(&super::render_worker::worker(worker));
    }
    if report.processes.is_empty() {
        out.push_str("Processes:  none\n");
    } else {
        out.push_str("Processes:\n");
        let _ = writeln!(
            out,
            "  {:<12} {:>8} {:>8} {:>6} {:<9} {:>9} {:>8} {:>6} {:>9}",
            "NAME", "RELEASE", "PID", "PORT", "STATE", "UPTIME", "RESTARTS", "CPU%", "RSS"
        );
        for p in &report.processes {
            let _ = writeln!(
                out,
                "  {:<12} {:>8} {:>8} {:>6} {:<9} {:>9} {:>8} {:>6} {:>9}",
                p.name,
                p.release,
                p.pid.map_or("-".to_string(), |pid| pid.to_string()),
                p.port.map_or("-".to_string(), |port| port.to_string()),
                format!("{:?}", p.state).to_lowercase(),
                p.uptime_secs.map_or("-".to_string(), |s| format!("{s}s")),
                p.restarts,
                p.stats
                    .map_or("-".to_string(), |s| format!("{:.1}", s.cpu_percent)),
                p.stats.map_or("-".to_string(), |s| mebibytes(s.rss_bytes)),
            );
            if let Some(listening) = p
                .listening
                .as_ref()
                .filter(|l| !l.is_empty() && l.as_slice() != p.port.as_slice())
            {
                let ports: Vec<String> = listening.iter().map(u16::to_string).collect();
                let _ = writeln!(out, "  {:<12} listens on {}", "", ports.join(", "));
            }
            if let Some(crash_loop) = p.crash_loop {
                let _ = writeln!(
                    out,
                    "  {:<12} crash loop: {} exits within {}s; restart delay {} ms",
                    "",
                    crash_loop.exits,
                    crash_loop.window_secs,
                    p.restart_delay_ms.unwrap_or(0)
                );
            }
        }
    }
    if let Some(link) = &report.controller {
        let state = match (&link.last_error, &link.last_contact) {
            (Some(error), _) => format!("unreachable ({error})"),
            (None, Some(at)) => format!("connected, last contact {at}"),
            (None, None) => "not contacted yet".to_string(),
        };
        let _ = writeln!(out, "Controller: {} {state}", link.url);
    }
    let _ = writeln!(
        out,
        "Agent:      {} pid {} on root {}",
        report.agent.version, report.agent.pid, report.agent.root
    );
    out
}

fn mebibytes(bytes: u64) -> String {
    format!("{:.1}M", bytes as f64 / f64::from(1u32 << 20))
}

pub fn event(event: &Event) -> String {
    let deployment = event
        .deployment_id
        .map(|id| format!(" [deployment {id}]"))
        .unwrap_or_default();
    format!(
        "{:>5} {} {:<5} {:<9} {}{deployment}",
        event.id,
        event.time,
        event.severity.label(),
        event.source,
        event.message
    )
}

pub fn step(step: &StepRecord) -> String {
    let mark = match step.status {
        StepStatus::Running => "…",
        StepStatus::Succeeded => "✓",
        StepStatus::Failed => "✗",
    };
    let duration = step
        .duration_ms
        .map(|ms| format!(" ({ms} ms)"))
        .unwrap_or_default();
    let message = step
        .message
        .as_deref()
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    format!("  {mark} {}{duration}{message}", step.name)
}

/// "Deployment 3 of app-v2", "Restart 5 of app-v2", …
pub fn title(record: &DeploymentRecord) -> String {
    let kind = match record.kind {
        JobKind::Deploy => "Deployment",
        JobKind::Configure => "Configuration deployment",
        JobKind::Restart => "Restart",
        JobKind::Rollback => "Rollback",
    };
    format!("{kind} {} of {}", record.id, record.version_label)
}

pub fn outcome(record: &DeploymentRecord) -> String {
    let title = title(record);
    let message = record.message.as_deref().unwrap_or("no details");
    match record.status {
        DeploymentStatus::Succeeded => format!("{title} succeeded."),
        DeploymentStatus::Noop => {
            format!("{title}: nothing to do, the same bundle and properties already serve.")
        }
        DeploymentStatus::RolledBack => format!("{title} was rolled back: {message}"),
        status => format!(
            "{title} {}: {message}",
            format!("{status:?}").to_lowercase()
        ),
    }
}

/// One line per deployment for `hostmanager deployments`.
pub fn summary(record: &DeploymentRecord) -> String {
    let when = jiff::Timestamp::from_millisecond(record.created_ms)
        .map(|t| t.to_string())
        .unwrap_or_default();
    let kind = format!("{:?}", record.kind).to_lowercase();
    let status = format!("{:?}", record.status).to_lowercase();
    let message = record
        .message
        .as_deref()
        .map(|m| format!("  {m}"))
        .unwrap_or_default();
    format!(
        "{:>5} {when} {kind:<10} {status:<11} {}{message}",
        record.id, record.version_label
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::HealthReport;
    use crate::local_api::{AgentInfo, StatusReport};
    use crate::proxy::ProxyStatus;
    use crate::supervise::{CrashLoop, ExitStatus, ProcessState, ProcessStats, ProcessStatus};

    fn process(name: &str) -> ProcessStatus {
        ProcessStatus {
            name: name.into(),
            release: 3,
            pid: Some(4242),
            port: Some(5000),
            state: ProcessState::Running,
            restarts: 0,
            uptime_secs: Some(61),
            last_exit: None,
            restart_delay_ms: None,
            crash_loop: None,
            stats: Some(ProcessStats {
                cpu_percent: 12.5,
                rss_bytes: 25 << 20,
                processes: 2,
            }),
            listening: None,
        }
    }

    #[test]
    fn processes_show_cpu_memory_and_crash_loops() {
        let crashing = ProcessStatus {
            pid: None,
            port: None,
            state: ProcessState::Backoff,
            restarts: 9,
            uptime_secs: None,
            last_exit: Some(ExitStatus::Code(3)),
            restart_delay_ms: Some(30_000),
            crash_loop: Some(CrashLoop {
                exits: 5,
                window_secs: 60,
            }),
            stats: None,
            ..process("worker")
        };
        let report = StatusReport {
            agent: AgentInfo {
                version: "0.1.0".into(),
                pid: 1,
                root: "/".into(),
                environment: "local".into(),
                started_at: String::new(),
                events_dropped: 0,
            },
            proxy: ProxyStatus {
                enabled: false,
                url: "http://127.0.0.1/".into(),
                running: false,
                pid: None,
                generation: None,
                upstream_port: None,
                ..Default::default()
            },
            release: None,
            deployment: None,
            last_deployment: None,
            processes: vec![process("web"), crashing],
            controller: None,
            health: HealthReport::default(),
            worker: None,
        };
        let text = status(&report);
        let lines: Vec<&str> = text.lines().collect();
        let header = lines
            .iter()
            .position(|l| l.contains("NAME"))
            .expect("header");
        assert_eq!(
            lines[header..header + 4],
            [
                "  NAME          RELEASE      PID   PORT STATE        UPTIME RESTARTS   CPU%       RSS",
                "  web                 3     4242   5000 running         61s        0   12.5     25.0M",
                "  worker              3        -      - backoff           -        9      -         -",
                "               crash loop: 5 exits within 60s; restart delay 30000 ms",
            ]
        );
    }

    #[test]
    fn a_fixed_port_release_says_so_and_foreign_ports_are_listed() {
        let web = ProcessStatus {
            listening: Some(vec![8000]),
            ..process("web")
        };
        let own_port = ProcessStatus {
            listening: Some(vec![5000]),
            ..process("web")
        };
        let mut report: StatusReport = serde_json::from_value(serde_json::json!({
            "agent": {"version": "0.1.0", "pid": 1, "root": "/", "environment": "local",
                      "started_at": "", "events_dropped": 0},
            "proxy": {"enabled": false, "url": "http://127.0.0.1/", "running": false,
                      "pid": null, "generation": null, "upstream_port": null},
            "release": {"deployment_id": 4, "version_label": "v4", "source": "local",
                        "sha256": "", "deployed_at": "2026-12-07T00:00:00Z",
                        "web_port": 8000, "given_port": 5000, "status": "succeeded"},
            "deployment": null, "last_deployment": null, "processes": [],
            "health": HealthReport::default(),
        }))
        .expect("a status report");
        report.processes = vec![web, own_port];
        let text = status(&report);
        assert!(
            text.contains("Port:       web ignores $PORT (5000) and listens on 8000; nginx proxies there and each deployment stops it before starting the next version"),
            "{text}"
        );
        let listed: Vec<&str> = text
            .lines()
            .filter(|l| l.trim_start().starts_with("listens on"))
            .collect();
        assert_eq!(
            listed,
            ["               listens on 8000"],
            "only where the port differs"
        );
    }

    #[test]
    fn steps_read_well() {
        let step = StepRecord {
            name: "extract".into(),
            status: StepStatus::Failed,
            started_ms: 0,
            duration_ms: Some(12),
            message: Some("bundle rejected: entry \"../x\" escapes".into()),
        };
        assert_eq!(
            super::step(&step),
            "  ✗ extract (12 ms): bundle rejected: entry \"../x\" escapes"
        );
    }
}
