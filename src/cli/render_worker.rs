//! The worker lines of `hostmanager status`. Pure.

use std::fmt::Write;

use crate::worker::WorkerStatus;
use crate::worker::stats::WorkerState;

pub fn worker(status: &WorkerStatus) -> String {
    let mut out = String::new();
    let state = match status.daemon.state {
        WorkerState::Starting => "starting",
        WorkerState::Running => "receiving",
        WorkerState::Paused => "paused for a deployment's cutover",
        WorkerState::Stopped => "stopped",
    };
    let _ = writeln!(
        out,
        "Worker:     SQS queue {} ({state}, {} of {} connections in use)",
        status.queue, status.daemon.in_flight, status.http_connections
    );
    if let Some(depth) = &status.daemon.queue_depth {
        let _ = writeln!(
            out,
            "            queue: {} waiting, {} in flight, {} delayed (at {})",
            depth.visible, depth.not_visible, depth.delayed, depth.read_at
        );
    }
    let minute = &status.last_minute;
    let latency = match (minute.latency_p50_ms, minute.latency_p99_ms) {
        (Some(p50), Some(p99)) => format!(", p50 {p50} ms, p99 {p99} ms"),
        _ => String::new(),
    };
    let _ = writeln!(
        out,
        "            last minute: {} processed, {} failed ({} %){latency}",
        minute.processed, minute.failed, minute.failure_percent
    );
    let totals = &status.totals;
    let _ = writeln!(
        out,
        "            since start: {} received, {} processed, {} failed, {} expired",
        totals.received, totals.processed, totals.failed, totals.expired
    );
    if let Some(error) = &status.daemon.poll_error {
        let _ = writeln!(out, "            receive failing: {error}");
    }
    if status.daemon.dead_letter.is_none() && status.daemon.queue_depth.is_some() {
        out.push_str("            no dead-letter queue (no redrive policy on the queue)\n");
    }
    let periodic = &status.periodic;
    if !periodic.tasks.is_empty() {
        let role = if periodic.leader {
            "this host is the leader and sends them"
        } else {
            "another host is the leader"
        };
        let _ = writeln!(out, "            periodic tasks ({role}):");
        for task in &periodic.tasks {
            let _ = writeln!(
                out,
                "              {} {:?} → {} next {}{}",
                task.name,
                task.schedule,
                task.url,
                task.next_at.as_deref().unwrap_or("-"),
                task.last_sent_at
                    .as_deref()
                    .map(|at| format!(", last sent {at}"))
                    .unwrap_or_default()
            );
        }
    }
    out
}
