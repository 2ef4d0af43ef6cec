//! Health: probes the app directly and through nginx on an interval, combines the results with
//! process and deployment state, request statistics and host metrics (`rules.rs`) and
//! publishes one report. The status changes only after `health.status_change_after`
//! evaluations in a row agree (`hysteresis.rs`); each change is an event.

mod hysteresis;
mod probe;
mod rules;
mod signals;

use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use hysteresis::{Hysteresis, PendingStatus, Step};
pub use probe::{ELB_USER_AGENT, ProbeResult, probe, probe_as};
pub use rules::{
    Cause, CheckHistory, HealthInputs, HealthStatus, MetricInputs, evaluate, severe_errors_cause,
    with_causes,
};

use crate::config::Config;
use crate::deploy::DeployState;
use crate::events::{EventSink, NewEvent, Severity};
use crate::metrics::MetricsSnapshot;
use crate::proxy::Proxy;
use crate::supervise::Supervisor;

/// What `GET /v1/health` and `hostmanager status` show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReport {
    pub status: HealthStatus,
    pub color: String,
    pub causes: Vec<Cause>,
    pub checked_at: Option<String>,
    pub direct: Option<ProbeResult>,
    pub proxied: Option<ProbeResult>,
    /// A different status seen in the last evaluations, not published yet (hysteresis), with
    /// the cause it would be published with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingChange>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingChange {
    #[serde(flatten)]
    pub status: PendingStatus,
    pub cause: Option<String>,
}

impl Default for HealthReport {
    fn default() -> Self {
        Self {
            status: HealthStatus::Unknown,
            color: HealthStatus::Unknown.color().to_string(),
            causes: vec![Cause {
                status: HealthStatus::Unknown,
                message: "No health check has run yet".into(),
            }],
            checked_at: None,
            direct: None,
            proxied: None,
            pending: None,
        }
    }
}

#[derive(Debug)]
pub struct HealthMonitor {
    config: Arc<Config>,
    proxy: Proxy,
    supervisor: Supervisor,
    deploy: watch::Receiver<DeployState>,
    events: EventSink,
    publish: watch::Sender<HealthReport>,
    direct: CheckHistory,
    proxied: CheckHistory,
    metrics: Option<watch::Receiver<Option<Arc<MetricsSnapshot>>>>,
    hysteresis: Hysteresis,
    /// Severe errors the log watcher saw recently (count, top title).
    severe_errors: Option<watch::Receiver<crate::logs::WindowSummary>>,
    severe_window_minutes: u64,
    /// The worker daemon's status, on a worker host.
    worker: Option<watch::Receiver<Option<crate::worker::WorkerStatus>>>,
    /// The config a live reconfiguration (SIGHUP) publishes.
    updates: Option<watch::Receiver<Arc<Config>>>,
}

impl HealthMonitor {
    pub fn new(
        config: Arc<Config>,
        proxy: Proxy,
        supervisor: Supervisor,
        deploy: watch::Receiver<DeployState>,
        events: EventSink,
    ) -> (Self, watch::Receiver<HealthReport>) {
        let (publish, reports) = watch::channel(HealthReport::default());
        let hysteresis = Hysteresis::new(config.health.status_change_after);
        let monitor = Self {
            config,
            proxy,
            supervisor,
            deploy,
            events,
            publish,
            direct: CheckHistory::default(),
            proxied: CheckHistory::default(),
            metrics: None,
            hysteresis,
            severe_errors: None,
            severe_window_minutes: 5,
            worker: None,
            updates: None,
        };
        (monitor, reports)
    }

    /// Judges request statistics and host metrics too, from the metrics task's windows.
    pub fn with_metrics(mut self, metrics: watch::Receiver<Option<Arc<MetricsSnapshot>>>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Adds the log watcher's severe-error count as a Warning cause.
    pub fn with_severe_errors(
        mut self,
        errors: watch::Receiver<crate::logs::WindowSummary>,
    ) -> Self {
        self.severe_window_minutes = (self.config.logs.watch.health_window.as_secs() / 60).max(1);
        self.severe_errors = Some(errors);
        self
    }

    /// Adds the worker daemon's failures, failing receives and old messages as causes.
    pub fn with_worker(
        mut self,
        worker: watch::Receiver<Option<crate::worker::WorkerStatus>>,
    ) -> Self {
        self.worker = Some(worker);
        self
    }

    /// Takes each config a live reconfiguration publishes: thresholds, path, timeouts and the
    /// hysteresis apply from the next check, a new interval from the next tick.
    pub fn with_config_updates(mut self, updates: watch::Receiver<Arc<Config>>) -> Self {
        self.updates = Some(updates);
        self
    }

    fn take_config(&mut self, config: Arc<Config>) {
        self.hysteresis
            .set_required(config.health.status_change_after);
        if self.severe_errors.is_some() {
            self.severe_window_minutes = (config.logs.watch.health_window.as_secs() / 60).max(1);
        }
        self.config = config;
    }

    pub async fn run(mut self, cancel: CancellationToken) {
        let mut ticks = tokio::time::interval(self.config.health.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut updates = self.updates.take();
        loop {
            let update = async {
                match updates.as_mut() {
                    Some(updates) => updates.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = ticks.tick() => self.check().await,
                live = update => {
                    let Some(receiver) = updates.as_mut().filter(|_| live) else {
                        updates = None;
                        continue;
                    };
                    let config = receiver.borrow_and_update().clone();
                    if config.health.interval != self.config.health.interval {
                        ticks = tokio::time::interval(config.health.interval);
                        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    }
                    self.take_config(config);
                }
                changed = self.deploy.changed() => {
                    if changed.is_err() { return; }
                    // A deployment started or finished: re-check now, not at the next tick.
                    self.check().await;
                }
            }
        }
    }

    async fn check(&mut self) {
        let current = self.deploy.borrow().current.clone();
        let Some(current) = current else {
            self.evaluate_and_publish(None, None);
            return;
        };
        let health = &self.config.health;
        let path = current.health_path(health);
        let direct_addr = SocketAddr::from(([127, 0, 0, 1], current.web_port));
        let direct = probe(direct_addr, &path, health.timeout).await;
        record(&mut self.direct, &direct);
        let proxied = if self.proxy.enabled() {
            let listen = self.proxy.listen();
            let addr = if listen.ip().is_unspecified() {
                SocketAddr::from(([127, 0, 0, 1], listen.port()))
            } else {
                listen
            };
            let result = probe(addr, &path, health.timeout).await;
            record(&mut self.proxied, &result);
            Some(result)
        } else {
            None
        };
        self.evaluate_and_publish(Some(direct), proxied);
    }

    fn evaluate_and_publish(&mut self, direct: Option<ProbeResult>, proxied: Option<ProbeResult>) {
        let deploy = self.deploy.borrow().clone();
        let release = deploy.current.as_ref().map(|c| c.deployment_id);
        let processes: Vec<_> = self
            .supervisor
            .statuses()
            .into_iter()
            .filter(|p| Some(p.release) == release)
            .collect();
        let expected: Vec<String> = deploy
            .current
            .as_ref()
            .map(|c| c.processes.iter().map(|(name, _)| name.clone()).collect())
            .unwrap_or_default();
        let web_server = deploy
            .current
            .as_ref()
            .and_then(|c| c.runtime.as_ref())
            .and_then(|r| r.server_label());
        let snapshot = self.metrics.as_ref().and_then(|m| m.borrow().clone());
        let path = deploy.current.as_ref().map_or_else(
            || self.config.health.path.clone(),
            |c| c.health_path(&self.config.health),
        );
        let inputs = HealthInputs {
            now_ms: jiff::Timestamp::now().as_millisecond(),
            has_release: deploy.current.is_some(),
            deployment: deploy
                .active
                .as_ref()
                .map(|a| (a.started_ms, a.version_label.as_str())),
            processes: &processes,
            expected: &expected,
            web_server: web_server.as_deref(),
            web_port: deploy.current.as_ref().map(|c| c.web_port),
            path: &path,
            direct: &self.direct,
            proxied: self.proxy.enabled().then_some(&self.proxied),
            failures_before_unhealthy: self.config.health.failures_before_unhealthy,
            metrics: MetricInputs {
                requests: snapshot.as_ref().map(|s| &s.requests),
                host: snapshot.as_ref().map(|s| &s.host),
                thresholds: &self.config.health.thresholds,
            },
        };
        let severe = self.severe_errors.as_ref().and_then(|errors| {
            let summary = errors.borrow();
            severe_errors_cause(
                summary.count,
                self.severe_window_minutes,
                summary.top.as_deref(),
            )
        });
        let worker = self
            .worker
            .as_ref()
            .and_then(|w| w.borrow().clone())
            .map(|status| {
                crate::worker::causes(
                    &status,
                    &self.config.health.thresholds,
                    self.config.worker.oldest_message_warning,
                )
            })
            .unwrap_or_default();
        let (status, causes) = with_causes(evaluate(&inputs), severe.into_iter().chain(worker));
        let previous = self.publish.borrow().clone();
        let mut report = HealthReport {
            status,
            color: status.color().to_string(),
            causes,
            checked_at: Some(jiff::Timestamp::now().to_string()),
            direct: direct.or(previous.direct.clone()),
            proxied: proxied.or(previous.proxied.clone()),
            pending: None,
        };
        match self.hysteresis.observe(status) {
            Step::Unchanged => {}
            Step::Pending(pending) => {
                // The published status and its causes stay until the change is confirmed.
                report.pending = Some(PendingChange {
                    status: pending,
                    cause: report.causes.first().map(|c| c.message.clone()),
                });
                report.status = previous.status;
                report.color = previous.color.clone();
                report.causes = previous.causes.clone();
            }
            Step::Changed { from: None, .. } => {}
            Step::Changed {
                from: Some(from),
                to,
            } => self.emit_change(from, to, &report.causes),
        }
        self.publish.send_replace(report);
    }

    fn emit_change(&self, from: HealthStatus, to: HealthStatus, causes: &[Cause]) {
        let severity = match to {
            HealthStatus::Severe | HealthStatus::Degraded => Severity::Error,
            HealthStatus::Warning => Severity::Warning,
            _ => Severity::Info,
        };
        let because = causes
            .first()
            .map(|c| format!(": {}", c.message))
            .unwrap_or_default();
        let message = format!("Health changed from {from:?} to {to:?}{because}");
        self.events.emit(NewEvent::new(severity, "health", message));
    }
}

fn record(history: &mut CheckHistory, result: &ProbeResult) {
    history.checked = true;
    if result.ok {
        history.consecutive_failures = 0;
        history.last_error = None;
    } else {
        history.consecutive_failures += 1;
        history.last_error = result.error.clone();
    }
}
