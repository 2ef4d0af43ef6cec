//! The local control API (server for the agent, client for the CLI).

mod api;
mod client;
mod server;

pub use api::*;
pub use client::{ClientError, ControlClient};
pub use server::{ApiState, bind, serve};

/// Assembles `GET /v1/status` from the live state of every module.
pub fn status_report(api: &ApiState) -> StatusReport {
    let state = api.deployer.subscribe().borrow().clone();
    let release = state.current.as_ref().map(|current| ReleaseView {
        deployment_id: current.deployment_id,
        version_label: current.version_label.clone(),
        source: current.source.clone(),
        sha256: current.sha256.clone(),
        deployed_at: jiff::Timestamp::from_millisecond(current.deployed_ms)
            .map(|t| t.to_string())
            .unwrap_or_default(),
        web_port: current.web_port,
        given_port: current.given_port,
        status: api
            .deployer
            .record(current.deployment_id)
            .map(|r| format!("{:?}", r.status).to_lowercase()),
        serial: current.serial,
        platform: current.runtime.clone(),
        settings: current.settings.clone(),
    });
    let mut info = api.info.clone();
    info.events_dropped = api.sink.dropped();
    StatusReport {
        agent: info,
        proxy: api.proxy.status(),
        release,
        deployment: state.active,
        last_deployment: api.deployer.records(1).into_iter().next(),
        processes: api.supervisor.statuses(),
        controller: api
            .controller
            .as_ref()
            .map(|status| status.lock().unwrap_or_else(|p| p.into_inner()).clone()),
        health: api.health.borrow().clone(),
        worker: api.worker.borrow().clone(),
    }
}

/// Assembles `GET /v1/health`.
pub fn health_view(api: &ApiState) -> HealthView {
    HealthView {
        report: api.health.borrow().clone(),
        metrics: api.metrics.borrow().as_deref().cloned(),
        cloudwatch: api.cloudwatch.as_ref().map(|c| c.borrow().clone()),
        worker: api.worker.borrow().clone(),
    }
}
