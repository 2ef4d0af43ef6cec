//! The local control API: HTTP/1.1 + JSON on `run/hostmanager/control.sock`. The socket is
//! mode 0600 and every connection's peer credentials are checked: only root or the agent's own
//! user may talk to it.

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::api::*;
use crate::deploy::{ConfigureRequest, Deployer, DeploymentRecord, DeploymentRequest, SubmitError};
use crate::events::{EventQuery, EventSink, EventStore, Severity};
use crate::health::HealthReport;
use crate::logs::LogService;
use crate::metrics::{MetricsSnapshot, SinkStatus};
use crate::proxy::Proxy;
use crate::supervise::Supervisor;

const MAX_BODY: usize = 1 << 20;

/// What the handlers read from.
#[derive(Debug)]
pub struct ApiState {
    pub info: AgentInfo,
    pub deployer: Deployer,
    pub supervisor: Supervisor,
    pub proxy: Proxy,
    pub health: watch::Receiver<HealthReport>,
    pub metrics: watch::Receiver<Option<Arc<MetricsSnapshot>>>,
    /// `None` when CloudWatch publication is off.
    pub cloudwatch: Option<watch::Receiver<SinkStatus>>,
    pub events: Arc<EventStore>,
    pub sink: EventSink,
    /// The controller link's state, when a controller is configured.
    pub controller: Option<Arc<std::sync::Mutex<crate::controller_link::LinkStatus>>>,
    pub logs: LogService,
    /// The agent's shutdown: `stop-apps` is refused once it fired.
    pub shutdown: CancellationToken,
    /// Requests that must finish even when the agent shuts down meanwhile (`stop-apps`);
    /// `serve` waits for them before it returns.
    pub critical: TaskTracker,
    /// The worker daemon's status (`None` inside while the host is not a worker).
    pub worker: watch::Receiver<Option<crate::worker::WorkerStatus>>,
    /// Whether this host sends the periodic tasks; the controller link keeps it.
    pub leadership: crate::worker::Leadership,
}

/// Binds the socket (replacing a stale one) with mode 0600.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Only one agent runs per root (the state lock), so an existing socket is stale.
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

pub async fn serve(listener: UnixListener, api: Arc<ApiState>, cancel: CancellationToken) {
    let api_for_shutdown = api.clone();
    let connections = TaskTracker::new();
    let own_uid = nix::unistd::geteuid().as_raw();
    loop {
        let (stream, _) = tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => { tracing::warn!(%error, "control socket accept failed"); continue; }
            },
        };
        let peer = stream.peer_cred().map(|cred| cred.uid());
        if !matches!(peer, Ok(uid) if uid == 0 || uid == own_uid) {
            tracing::warn!(
                ?peer,
                "control socket: refused a connection from another user"
            );
            continue;
        }
        let api = api.clone();
        let cancel = cancel.clone();
        connections.spawn(async move {
            let io = hyper_util::rt::TokioIo::new(stream);
            let service = service_fn(move |request| handle(api.clone(), request));
            let connection =
                hyper::server::conn::http1::Builder::new().serve_connection(io, service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = cancel.cancelled() => {
                    // A request in flight (a stop-apps that began) still gets its answer; an
                    // idle connection closes at once, and long polls end on the same token.
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    connections.close();
    connections.wait().await;
    // A `stop-apps` that had begun completes (within the agent's shutdown budget).
    api_critical_wait(&api_for_shutdown).await;
}

async fn api_critical_wait(api: &ApiState) {
    api.critical.close();
    api.critical.wait().await;
}

type Reply = Response<Full<Bytes>>;

fn json<T: Serialize>(status: StatusCode, body: &T) -> Reply {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(bytes)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

fn error(status: StatusCode, message: impl Into<String>) -> Reply {
    json(
        status,
        &ApiError {
            error: message.into(),
        },
    )
}

async fn handle(api: Arc<ApiState>, request: Request<Incoming>) -> Result<Reply, Infallible> {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let query = request.uri().query().map(str::to_string);
    let pairs = query_pairs(query.as_deref());
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let reply = match (&method, segments.as_slice()) {
        (&Method::GET, ["v1", "status"]) => json(StatusCode::OK, &super::status_report(&api)),
        (&Method::GET, ["v1", "health"]) => json(StatusCode::OK, &super::health_view(&api)),
        (&Method::GET, ["v1", "events"]) => events(&api, &pairs).await,
        (&Method::GET, ["v1", "proxy", "config"]) => match api.proxy.config_view() {
            Some(view) => json(StatusCode::OK, &view),
            None => error(
                StatusCode::NOT_FOUND,
                "nginx has no configuration yet: nothing has been deployed",
            ),
        },
        (&Method::GET, ["v1", "logs", "status"]) => json(StatusCode::OK, &api.logs.status()),
        (&Method::GET, ["v1", "logs", "errors"]) => json(StatusCode::OK, &api.logs.errors()),
        (&Method::POST, ["v1", "logs", "rotate"]) => match api.logs.rotate_now().await {
            Ok(rotated) => json(StatusCode::OK, &serde_json::json!({ "rotated": rotated })),
            Err(message) => error(StatusCode::SERVICE_UNAVAILABLE, message),
        },
        (&Method::POST, ["v1", "logs", "tail"]) => match api.logs.tail().await {
            Ok(report) => json(StatusCode::OK, &report),
            Err(message) => error(StatusCode::INTERNAL_SERVER_ERROR, message),
        },
        (&Method::POST, ["v1", "logs", "bundle"]) => {
            let upload = pairs.iter().any(|(k, v)| *k == "upload" && *v != "false");
            json(StatusCode::ACCEPTED, &api.logs.start_bundle(upload))
        }
        (&Method::GET, ["v1", "logs", "bundle", id]) => match id
            .parse::<u64>()
            .ok()
            .and_then(|id| api.logs.bundle_job(id))
        {
            Some(job) => json(StatusCode::OK, &job),
            None => error(StatusCode::NOT_FOUND, format!("no bundle job {id}")),
        },
        (&Method::GET, ["v1", "deployments"]) => match query_number::<usize>(&pairs, "limit") {
            Ok(limit) => json(StatusCode::OK, &api.deployer.records(limit.unwrap_or(20))),
            Err(message) => error(StatusCode::BAD_REQUEST, message),
        },
        (&Method::GET, ["v1", "deployments", id]) => match id
            .parse::<u64>()
            .ok()
            .and_then(|id| api.deployer.record(id))
        {
            Some(record) => json(StatusCode::OK, &record),
            None => error(StatusCode::NOT_FOUND, format!("no deployment {id}")),
        },
        (&Method::POST, ["v1", "deployments"]) => {
            match read_json::<DeploymentRequest>(request).await {
                Ok(deployment) => accepted(api.deployer.submit(deployment)),
                Err(reply) => reply,
            }
        }
        (&Method::POST, ["v1", "configuration"]) => {
            match read_json::<ConfigureRequest>(request).await {
                Ok(change) => accepted(api.deployer.submit_configure(change)),
                Err(reply) => reply,
            }
        }
        (&Method::POST, ["v1", "restart"]) => accepted(api.deployer.submit_restart()),
        (&Method::POST, ["v1", "rollback"]) => accepted(api.deployer.submit_rollback()),
        (&Method::POST, ["v1", "stop-apps"]) => stop_apps(&api).await,
        (&Method::POST, ["v1", "start"]) => start(&api),
        (_, ["v1", ..]) => error(
            StatusCode::NOT_FOUND,
            format!("no endpoint {method} {path}"),
        ),
        _ => error(
            StatusCode::NOT_FOUND,
            format!("no endpoint {method} {path} (the API lives under /v1/)"),
        ),
    };
    Ok(reply)
}

/// `stop-apps`: holds the apps and nginx down (persisted first, so a crash halfway leaves a
/// stop the next agent run completes), then stops them. Refused once the agent shuts down:
/// the monitors then leave their processes running, so a stop could only be partial.
async fn stop_apps(api: &Arc<ApiState>) -> Reply {
    if api.shutdown.is_cancelled() {
        return error(StatusCode::SERVICE_UNAVAILABLE, SHUTTING_DOWN);
    }
    if let Err(failure) = api.supervisor.hold().hold() {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot record the stop: {failure}"),
        );
    }
    api.sink.warn(
        "control",
        "Stopping every app process and nginx on request (stop-apps); they stay stopped until the next deployment or `hostmanager start`",
    );
    let work = {
        let api = api.clone();
        // Tracked, not tied to the connection: a shutdown that begins now waits for it.
        api.critical.clone().spawn(async move {
            api.supervisor.stop_all().await;
            api.proxy.stop(std::time::Duration::from_secs(10)).await;
            api.supervisor.statuses().len()
        })
    };
    match work.await {
        Ok(0) => json(StatusCode::OK, &serde_json::json!({ "stopped": true })),
        Ok(left) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{left} process(es) still run: {SHUTTING_DOWN}"),
        ),
        Err(failure) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("stop-apps: {failure}"),
        ),
    }
}

const SHUTTING_DOWN: &str = "the agent is shutting down and leaves the apps running; run `hostmanager stop-apps` again once it has exited (it then stops them directly)";

/// `start`: ends a `stop-apps` by restarting the serving release (a restart job: its web
/// process, the health gate, nginx back on it, then the other processes).
fn start(api: &ApiState) -> Reply {
    if !api.supervisor.hold().is_held() {
        return error(
            StatusCode::CONFLICT,
            "nothing is stopped (no stop-apps in effect); use `hostmanager restart` to restart the apps",
        );
    }
    accepted(api.deployer.submit_restart())
}

/// Longest wait of one `GET /v1/events?wait_ms=` long poll.
const MAX_WAIT_MS: u64 = 60_000;

async fn events(api: &ApiState, pairs: &[(&str, &str)]) -> Reply {
    let severity = match pairs.iter().find(|(k, _)| *k == "severity") {
        None => None,
        Some((_, value)) => match Severity::parse(value) {
            Some(severity) => Some(severity),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("severity={value:?} is not info, warning or error"),
                );
            }
        },
    };
    let query = (|| -> Result<EventQuery, String> {
        Ok(EventQuery {
            after: query_number(pairs, "after")?,
            since_ms: query_number(pairs, "since_ms")?,
            severity,
            deployment_id: query_number(pairs, "deployment_id")?,
            limit: query_number(pairs, "limit")?,
        })
    })();
    let wait_ms = match query_number::<u64>(pairs, "wait_ms") {
        Ok(wait) => wait.unwrap_or(0).min(MAX_WAIT_MS),
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    match query {
        Ok(query) if wait_ms > 0 => {
            let wait = std::time::Duration::from_millis(wait_ms);
            tokio::select! {
                events = api.events.wait(&query, wait) => json(StatusCode::OK, &events),
                // The agent's shutdown must not wait for a long poll.
                () = api.shutdown.cancelled() => json(StatusCode::OK, &Vec::<crate::events::Event>::new()),
            }
        }
        Ok(query) => json(StatusCode::OK, &api.events.query_blocking(&query).await),
        Err(message) => error(StatusCode::BAD_REQUEST, message),
    }
}

async fn read_json<T: serde::de::DeserializeOwned>(request: Request<Incoming>) -> Result<T, Reply> {
    let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(failure) => {
            return Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body: {failure}"),
            ));
        }
    };
    serde_json::from_slice(&body)
        .map_err(|failure| error(StatusCode::BAD_REQUEST, format!("request body: {failure}")))
}

fn accepted(outcome: Result<DeploymentRecord, SubmitError>) -> Reply {
    match outcome {
        Ok(record) => json(StatusCode::ACCEPTED, &record),
        Err(SubmitError::Invalid(problems)) => {
            error(StatusCode::UNPROCESSABLE_ENTITY, problems.join("; "))
        }
        Err(SubmitError::QueueFull) => error(
            StatusCode::TOO_MANY_REQUESTS,
            SubmitError::QueueFull.to_string(),
        ),
        Err(SubmitError::Refused(reason)) => error(StatusCode::CONFLICT, reason),
        Err(other) => error(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
    }
}
