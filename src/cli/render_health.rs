//! `hostmanager health` and `hostmanager metrics aggregate` as text. Pure.

use std::fmt::Write;

use crate::health::HealthStatus;
use crate::local_api::HealthView;
use crate::metrics::{HostSample, Latency, RequestStats, RequestWindow, StatusCounts};

/// The compact live view. `colour` adds ANSI colours (for a terminal).
pub fn health(view: &HealthView, colour: bool) -> String {
    let mut out = String::new();
    let report = &view.report;
    let checked = report
        .checked_at
        .as_deref()
        .map(short_time)
        .unwrap_or("never");
    let _ = writeln!(
        out,
        "{} {:?} ({})   checked {checked}",
        paint(report.status, "●", colour),
        report.status,
        report.color
    );
    for cause in &report.causes {
        let _ = writeln!(out, "  - {}", cause.message);
    }
    if let Some(pending) = &report.pending {
        let _ = writeln!(
            out,
            "  becoming {:?} ({} of {} checks){}",
            pending.status.status,
            pending.status.seen,
            pending.status.required,
            pending
                .cause
                .as_deref()
                .map(|c| format!(": {c}"))
                .unwrap_or_default()
        );
    }
    match &view.metrics {
        None => out.push_str("Metrics:   no window closed yet\n"),
        Some(metrics) => {
            let _ = writeln!(
                out,
                "Requests:  {} in {}s ({:.1}/s)  {}",
                metrics.requests.counts.total,
                trim_float(metrics.window_secs),
                metrics.requests_per_second,
                classes(&metrics.requests.counts)
            );
            let _ = writeln!(out, "Latency:   {}", latency(&metrics.requests));
            if let Some(worker) = &metrics.worker {
                let ms = |v: Option<u64>| v.map_or("-".to_string(), |v| format!("{v} ms"));
                let _ = writeln!(
                    out,
                    "Worker:    {} processed, {} failed ({:.1}/s)  p50 {}  p90 {}  p99 {}",
                    worker.processed,
                    worker.failed,
                    worker.messages_per_second,
                    ms(worker.latency_p50_ms),
                    ms(worker.latency_p90_ms),
                    ms(worker.latency_p99_ms)
                );
            }
            host(&mut out, &metrics.host);
            if metrics.totals.malformed_lines > 0 {
                let _ = writeln!(
                    out,
                    "Log:       {} malformed healthd lines skipped since start",
                    metrics.totals.malformed_lines
                );
            }
        }
    }
    if let Some(cw) = &view.cloudwatch {
        let _ = writeln!(
            out,
            "CloudWatch: {} ({}), {} datums sent in {} calls, {} buffered, {} dropped{}",
            cw.namespace,
            cw.region.as_deref().unwrap_or("no region"),
            cw.datums_sent,
            cw.calls,
            cw.datums_buffered,
            cw.datums_dropped,
            cw.last_error
                .as_deref()
                .map(|e| format!("; last error: {e}"))
                .unwrap_or_default()
        );
    }
    out
}

fn host(out: &mut String, host: &HostSample) {
    match &host.cpu {
        Some(cpu) => {
            let _ = writeln!(
                out,
                "CPU:       {:.0}% in use  user {:.1}  nice {:.1}  system {:.1}  iowait {:.1}  irq {:.1}  softirq {:.1}  idle {:.1}",
                cpu.used(),
                cpu.user,
                cpu.nice,
                cpu.system,
                cpu.iowait,
                cpu.irq,
                cpu.softirq,
                cpu.idle
            );
        }
        None => out.push_str("CPU:       (needs a second sample)\n"),
    }
    let load = &host.load_average;
    let mut line = format!(
        "Load:      {:.2} {:.2} {:.2}   Memory: {:.0}% of {}",
        load.one,
        load.five,
        load.fifteen,
        host.memory.used_percent,
        bytes(host.memory.total_bytes)
    );
    if let Some(fs) = &host.root_filesystem {
        let _ = write!(
            line,
            "   Disk {}: {:.0}% of {}",
            fs.path,
            fs.used_percent,
            bytes(fs.total_bytes)
        );
    }
    let _ = writeln!(out, "{line}");
    for p in &host.processes {
        let _ = writeln!(
            out,
            "Process:   {:<12} pid {:<8} CPU {:>5.1}%  RSS {}",
            p.name,
            p.pid,
            p.cpu_percent,
            bytes(p.rss_bytes)
        );
    }
}

fn classes(counts: &StatusCounts) -> String {
    format!(
        "2xx {}  3xx {}  4xx {}  5xx {}",
        counts.success, counts.redirect, counts.client_error, counts.server_error
    )
}

fn latency(stats: &RequestStats) -> String {
    match &stats.latency {
        None => "-".to_string(),
        Some(l) => latency_values(l),
    }
}

fn latency_values(l: &Latency) -> String {
    let labels = ["p10", "p50", "p75", "p85", "p90", "p95", "p99", "p99.9"];
    labels
        .iter()
        .zip(l.values())
        .map(|(label, seconds)| format!("{label} {}", duration(seconds)))
        .collect::<Vec<_>>()
        .join("  ")
}

/// One line of `metrics aggregate`.
pub fn aggregate_window(start_ms: i64, window: &RequestWindow) -> String {
    let start = jiff::Timestamp::from_millisecond(start_ms)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| start_ms.to_string());
    let stats = window.stats();
    let malformed = if stats.malformed_lines > 0 {
        format!("  malformed {}", stats.malformed_lines)
    } else {
        String::new()
    };
    format!(
        "{start}  requests {}  {}  {}{malformed}",
        stats.counts.total,
        classes(&stats.counts),
        latency(&stats)
    )
}

fn duration(seconds: f64) -> String {
    if seconds < 1.0 {
        format!("{}ms", trim_float((seconds * 1e4).round() / 10.0))
    } else {
        format!("{:.2}s", seconds)
    }
}

fn trim_float(value: f64) -> String {
    let text = format!("{value:.1}");
    text.strip_suffix(".0").map(str::to_string).unwrap_or(text)
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn short_time(rfc3339: &str) -> &str {
    // "2026-11-22T14:03:22.123456Z" → "14:03:22"
    rfc3339.get(11..19).unwrap_or(rfc3339)
}

fn paint(status: HealthStatus, text: &str, colour: bool) -> String {
    if !colour {
        return text.to_string();
    }
    let code = match status.color() {
        "Green" => "32",
        "Yellow" => "33",
        "Red" => "31",
        _ => "90",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{Cause, HealthReport};
    use crate::metrics::{CpuPercent, MetricsSnapshot, Totals};

    #[test]
    fn the_live_view_reads_well() {
        let report = HealthReport {
            status: HealthStatus::Degraded,
            color: "Red".into(),
            causes: vec![Cause {
                status: HealthStatus::Degraded,
                message: "12% of the requests are failing with HTTP 5xx".into(),
            }],
            checked_at: Some("2026-11-22T14:03:22.5Z".into()),
            ..HealthReport::default()
        };
        let mut requests = RequestWindow::new();
        for (status, us) in [(200, 1_000), (200, 12_000), (503, 1_500_000)] {
            requests.record(&crate::metrics::LogLine {
                time_ms: 0,
                status,
                request_time_us: us,
            });
        }
        let metrics = MetricsSnapshot {
            ended_at: "2026-11-22T14:03:20Z".into(),
            window_secs: 10.0,
            requests: requests.stats(),
            requests_per_second: 0.3,
            totals: Totals::default(),
            host: HostSample {
                cpu: Some(CpuPercent {
                    user: 10.0,
                    idle: 90.0,
                    ..CpuPercent::default()
                }),
                ..HostSample::default()
            },
            latency_us: Vec::new(),
            worker: Some(crate::worker::WorkerWindowStats {
                processed: 28,
                failed: 2,
                messages_per_second: 3.0,
                latency_p50_ms: Some(12),
                latency_p90_ms: Some(40),
                latency_p99_ms: Some(2_001),
            }),
        };
        let view = HealthView {
            report,
            metrics: Some(metrics),
            cloudwatch: None,
            worker: None,
        };
        let text = health(&view, false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "● Degraded (Red)   checked 14:03:22");
        assert_eq!(
            lines[1],
            "  - 12% of the requests are failing with HTTP 5xx"
        );
        assert_eq!(
            lines[2],
            "Requests:  3 in 10s (0.3/s)  2xx 2  3xx 0  4xx 0  5xx 1"
        );
        assert!(
            lines[3].starts_with("Latency:   p10 1ms  p50 12ms"),
            "{}",
            lines[3]
        );
        assert!(lines[3].ends_with("p99.9 1.50s"), "{}", lines[3]);
        assert_eq!(
            lines[4],
            "Worker:    28 processed, 2 failed (3.0/s)  p50 12 ms  p90 40 ms  p99 2001 ms"
        );
        assert!(
            lines[5].starts_with("CPU:       10% in use  user 10.0"),
            "{}",
            lines[5]
        );
        assert!(health(&view, true).starts_with("\x1b[31m●\x1b[0m"));
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(25 << 20), "25.0 MiB");
        assert_eq!(duration(0.0834), "83.4ms");
        assert_eq!(duration(2.5), "2.50s");
    }
}
