//! What one simulated host sends and what it does with the answer. Pure: the caller passes the
//! time and the random source, so tests can check the documents.
//!
//! The report has the real agent's shape (`src/controller_link/report.rs`): its whole local
//! status document (the controller reads the part `hostmanager_protocol::HostStatus` names), a
//! request-metrics window whose latencies are an HDR histogram's recorded values (3
//! significant digits, as `src/metrics/window.rs` records them), host facts, and the journal
//! events the controller has not acknowledged. `health.checked_at` moves with every report,
//! as the agent's health checks do, so every report is a "significant change" to the
//! controller and goes through its group commit, like a real fleet's.

use hdrhistogram::Histogram;
use hostmanager_protocol::{
    CommandResult, CpuShares, DesiredResult, Event, HostFacts, MAX_EVENTS_PER_REPORT,
    MetricsWindow, Outcome, Report, ReportReply, Severity,
};
use serde_json::{Value, json};

/// Highest latency the agent's histogram takes (1 hour, in µs).
const MAX_LATENCY_US: u64 = 3_600_000_000;
const AGENT_VERSION: &str = "0.1.0";

/// How busy and how eventful the simulated fleet is.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    pub window_ms: u64,
    /// Chance that a report carries new events (1 to 3 of them).
    pub event_chance: f64,
    /// Requests a host serves per window, drawn uniformly from this range.
    pub requests: (u64, u64),
    /// Hosts whose status does not move between reports (no traffic, `checked_at` fixed): the
    /// controller's write-on-change path, against a serving fleet's write per report.
    pub idle: bool,
}

/// One simulated host's protocol state: what the real agent keeps in `controller.json`.
#[derive(Debug, Clone)]
pub struct SimHost {
    pub instance_id: String,
    pub environment: String,
    pub started_at: String,
    next_event_id: u64,
    /// Events not acknowledged yet, oldest first (the agent's durable journal tail).
    unacknowledged: Vec<Event>,
    applied_serial: u64,
    command_results: Vec<CommandResult>,
    desired_results: Vec<DesiredResult>,
    seen_commands: Vec<String>,
}

impl SimHost {
    pub fn new(instance_id: String, environment: String, started_at: String) -> Self {
        Self {
            instance_id,
            environment,
            started_at,
            next_event_id: 1,
            unacknowledged: Vec::new(),
            applied_serial: 0,
            command_results: Vec::new(),
            desired_results: Vec::new(),
            seen_commands: Vec::new(),
        }
    }

    /// The next report; may first append 1–3 new events to the journal.
    pub fn next_report(
        &mut self,
        now_ms: i64,
        rng: &mut fastrand::Rng,
        profile: &Profile,
    ) -> Report<Value> {
        if rng.f64() < profile.event_chance {
            for _ in 0..rng.u32(1..=3) {
                let event = journal_event(self.next_event_id, now_ms, rng);
                self.next_event_id += 1;
                self.unacknowledged.push(event);
            }
        }
        let events: Vec<Event> = self
            .unacknowledged
            .iter()
            .take(MAX_EVENTS_PER_REPORT)
            .cloned()
            .collect();
        Report {
            instance_id: self.instance_id.clone(),
            environment: self.environment.clone(),
            agent_version: AGENT_VERSION.into(),
            applied_serial: self.applied_serial,
            status: self.status(now_ms, profile.idle, rng),
            events,
            command_results: self.command_results.clone(),
            desired_results: self.desired_results.clone(),
            metrics: Some(metrics_window(now_ms, rng, profile)),
            facts: Some(self.facts()),
        }
    }

    pub fn facts(&self) -> HostFacts {
        HostFacts {
            advertised_addr: Some(format!("{}.bench.internal:80", self.instance_id)),
            availability_zone: Some("eu-west-1a".into()),
            instance_type: Some("t3.small".into()),
            launched_at: Some(self.started_at.clone()),
        }
    }

    /// Applies a reply as the agent does: acknowledgements move the cursors (never past what
    /// was sent), a newer desired state and new commands are "run" at once and their results
    /// go up with the next report, until acknowledged.
    pub fn acknowledge(&mut self, reply: &ReportReply, sent_up_to: u64, now_ms: i64) {
        if let Some(ack) = reply.events_ack {
            let upto = ack.min(sent_up_to);
            self.unacknowledged.retain(|e| e.id > upto);
        }
        self.command_results
            .retain(|r| !reply.commands_ack.contains(&r.id));
        self.desired_results
            .retain(|r| !reply.desired_results_ack.contains(&r.serial));
        if let Some(desired) = reply
            .desired
            .as_ref()
            .filter(|d| d.serial > self.applied_serial)
        {
            // The simulated host has nothing to deploy: it says the state already serves.
            self.applied_serial = desired.serial;
            self.desired_results.push(DesiredResult {
                serial: desired.serial,
                deployment_id: None,
                outcome: Outcome::Noop,
                step: None,
                message: None,
                finished_ms: now_ms,
            });
        }
        for command in &reply.commands {
            if self.seen_commands.contains(&command.id) {
                continue;
            }
            self.seen_commands.push(command.id.clone());
            self.command_results.push(CommandResult {
                id: command.id.clone(),
                accepted: false,
                deployment_id: None,
                error: Some("the load generator runs no commands".into()),
                outcome: None,
            });
        }
    }

    /// The agent's `GET /v1/status` document, with the fields a real one carries.
    fn status(&self, now_ms: i64, idle: bool, rng: &mut fastrand::Rng) -> Value {
        let now = rfc3339(now_ms);
        // A serving agent's health check stamps every evaluation, so its status changes with
        // every report; an idle host's is taken as unchanged.
        let checked_at = if idle {
            self.started_at.clone()
        } else {
            now.clone()
        };
        // The journal's acknowledged cursor: just below the oldest event not acknowledged.
        let acknowledged = self
            .unacknowledged
            .first()
            .map_or(self.next_event_id - 1, |e| e.id - 1);
        json!({
            "agent": {
                "version": AGENT_VERSION, "pid": 812, "root": "/",
                "environment": self.environment, "started_at": self.started_at,
                "events_dropped": 0
            },
            "proxy": {
                "enabled": true, "url": "http://127.0.0.1:80", "running": true, "pid": 901,
                "generation": "3", "upstream_port": 8080, "held": false, "checks": 4
            },
            "release": {
                "deployment_id": 3, "version_label": "v1", "source": "s3://bench/app-v1.zip",
                "sha256": "9f2b6a1c0e4d8f7a3b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a",
                "deployed_at": self.started_at, "web_port": 8080, "status": "succeeded",
                "serial": null
            },
            "deployment": null,
            "last_deployment": {
                "id": 3, "kind": "deploy", "status": "succeeded", "version_label": "v1",
                "started_at": self.started_at, "finished_at": self.started_at, "error": null
            },
            "processes": [{
                "name": "web", "release": 3, "pid": 1204, "port": 8080, "state": "running",
                "restarts": 0, "uptime_secs": 3600 + rng.u64(0..86_400), "last_exit": null
            }],
            "controller": {
                "url": "http://controller", "connected": true, "last_contact": now,
                "last_error": null, "events_acknowledged": acknowledged,
                "applied_serial": self.applied_serial, "enrolled": true
            },
            "health": {
                "status": "Ok", "color": "Green", "causes": [], "checked_at": checked_at,
                "direct": { "ok": true, "status": 200, "latency_ms": rng.u32(1..20), "at": now },
                "proxied": { "ok": true, "status": 200, "latency_ms": rng.u32(1..30), "at": now }
            }
        })
    }
}

/// The newest event id a report carries (what an acknowledgement may reach).
pub fn sent_up_to(report: &Report<Value>) -> u64 {
    report.events.last().map_or(0, |e| e.id)
}

fn journal_event(id: u64, now_ms: i64, rng: &mut fastrand::Rng) -> Event {
    const MESSAGES: [(Severity, &str, &str); 4] = [
        (
            Severity::Info,
            "supervisor",
            "Process web restarted after exiting with status 1",
        ),
        (Severity::Info, "proxy", "nginx configuration reloaded"),
        (
            Severity::Warning,
            "health",
            "Health transitioned from Ok to Warning: 5xx above 1 %",
        ),
        (
            Severity::Info,
            "health",
            "Health transitioned from Warning to Ok",
        ),
    ];
    let (severity, source, message) = MESSAGES[rng.usize(..MESSAGES.len())];
    Event {
        id,
        time: rfc3339(now_ms),
        time_ms: now_ms,
        severity,
        source: source.into(),
        message: message.into(),
        deployment_id: None,
        details: Value::Null,
    }
}

/// A window of `profile.requests` requests with latencies around 20 ms (exponential, so a
/// long tail), recorded in the agent's HDR histogram and sent as its recorded values.
fn metrics_window(now_ms: i64, rng: &mut fastrand::Rng, profile: &Profile) -> MetricsWindow {
    let requests = match profile.idle {
        true => 0,
        false => rng.u64(profile.requests.0..=profile.requests.1),
    };
    let mut histogram = Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_US, 3)
        .expect("constant histogram bounds are valid");
    for _ in 0..requests {
        let us = 1_000.0 + 20_000.0 * -(1.0 - rng.f64()).ln();
        histogram.saturating_record(us as u64);
    }
    let latency_us = histogram
        .iter_recorded()
        .map(|v| [v.value_iterated_to(), v.count_at_value()])
        .collect();
    let errors = requests / 100;
    let idle = 60.0 + rng.f64() * 30.0;
    MetricsWindow {
        ended_ms: now_ms,
        duration_ms: profile.window_ms,
        requests,
        status_2xx: requests - 2 * errors,
        status_3xx: 0,
        status_4xx: errors,
        status_5xx: errors,
        latency_us,
        cpu: Some(CpuShares {
            user: (100.0 - idle) * 0.7,
            system: (100.0 - idle) * 0.3,
            idle,
            ..Default::default()
        }),
        load_average: Some([0.4, 0.35, 0.3]),
    }
}

pub fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hostmanager_protocol::{Command, CommandKind, HostStatus};

    const PROFILE: Profile = Profile {
        window_ms: 10_000,
        event_chance: 1.0,
        requests: (100, 500),
        idle: false,
    };

    #[test]
    fn the_controller_reads_the_report_as_the_agents() {
        let mut host = SimHost::new("i-1".into(), "bench-0".into(), rfc3339(1_700_000_000_000));
        let mut rng = fastrand::Rng::with_seed(7);
        let report = host.next_report(1_700_000_010_000, &mut rng, &PROFILE);
        let json = serde_json::to_vec(&report).expect("serialize");
        let parsed: Report<HostStatus> = serde_json::from_slice(&json).expect("controller type");
        assert_eq!(parsed.status.health.status, "Ok");
        assert_eq!(parsed.status.processes[0].state, "running");
        assert!((1..=3).contains(&parsed.events.len()));
        let metrics = parsed.metrics.expect("metrics window");
        assert!((100..=500).contains(&metrics.requests));
        assert_eq!(
            metrics.latency_us.iter().map(|[_, n]| n).sum::<u64>(),
            metrics.requests
        );
        assert!(metrics.latency_us.is_sorted());
    }

    #[test]
    fn an_idle_hosts_status_does_not_move() {
        let idle = Profile {
            idle: true,
            event_chance: 0.0,
            ..PROFILE
        };
        let mut host = SimHost::new("i-1".into(), "bench-0".into(), rfc3339(0));
        let mut rng = fastrand::Rng::with_seed(3);
        let status = |report: Report<Value>| {
            let json = serde_json::to_vec(&report).expect("serialize");
            let parsed: Report<HostStatus> = serde_json::from_slice(&json).expect("parse");
            (parsed.status, parsed.metrics.map(|m| m.requests))
        };
        let first = status(host.next_report(10_000, &mut rng, &idle));
        assert_eq!(first, status(host.next_report(20_000, &mut rng, &idle)));
        assert_eq!(first.1, Some(0));
    }

    #[test]
    fn events_are_resent_until_acknowledged_and_commands_answered_once() {
        let mut host = SimHost::new("i-1".into(), "bench-0".into(), rfc3339(0));
        let mut rng = fastrand::Rng::with_seed(1);
        let first = host.next_report(1_000, &mut rng, &PROFILE);
        let upto = sent_up_to(&first);
        // An acknowledgement past what was sent does not skip unsent events.
        let reply = ReportReply {
            events_ack: Some(upto + 100),
            commands: vec![Command {
                id: "c1".into(),
                kind: CommandKind::Restart,
            }],
            ..Default::default()
        };
        host.acknowledge(&reply, upto, 1_000);
        let second = host.next_report(2_000, &mut rng, &PROFILE);
        assert!(second.events.iter().all(|e| e.id > upto));
        assert_eq!(second.command_results.len(), 1);
        host.acknowledge(&reply, sent_up_to(&second), 2_000);
        assert_eq!(
            host.command_results.len(),
            1,
            "a command seen before is not run again"
        );
        let acked = ReportReply {
            commands_ack: vec!["c1".into()],
            ..Default::default()
        };
        host.acknowledge(&acked, 0, 3_000);
        assert!(host.command_results.is_empty());
    }
}
