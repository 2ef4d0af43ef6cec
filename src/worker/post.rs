//! The daemon's requests to the app: a keep-alive pool as large as its connections, and each
//! POST's outcome as the daemon counts it (a status, or why there is none). A connection the
//! app closed before answering is tried once more on a fresh one, as sqsd does.

use std::time::Duration;

use super::daemon::Shared;
use super::message::Delivery;
use crate::config::SqsdSettings;

/// The HTTP client of the requests to the app: a keep-alive pool as large as the connections.
pub(super) fn http_client(settings: &SqsdSettings) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(settings.connect_timeout))
        .read_timeout(Duration::from_secs(settings.inactivity_timeout))
        .pool_max_idle_per_host(settings.http_connections as usize)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// Why a request has no answer. `unreachable`: nothing accepted the connection (nginx or the
/// web process is down), which makes the daemon back off its receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PostFailure {
    pub reason: String,
    pub unreachable: bool,
    /// Closed before the answer began: worth one more try on a fresh connection.
    closed: bool,
}

impl PostFailure {
    fn new(reason: String) -> Self {
        Self {
            reason,
            unreachable: false,
            closed: false,
        }
    }
}

/// The POST; a connection the server closed before answering is tried once more on a fresh
/// one (as sqsd does), anything else is the answer.
pub(super) async fn post_with_retry(
    shared: &Shared,
    delivery: &Delivery,
) -> Result<u16, PostFailure> {
    let Some(addr) = shared.target.addr() else {
        return Err(PostFailure {
            unreachable: true,
            ..PostFailure::new("no release serves on this host".into())
        });
    };
    let url = format!("http://{addr}{}", delivery.path);
    match post(shared, &url, delivery).await {
        Err(failure) if failure.closed => post(shared, &url, delivery).await,
        other => other,
    }
}

async fn post(shared: &Shared, url: &str, delivery: &Delivery) -> Result<u16, PostFailure> {
    let mut request = shared.http.post(url).body(delivery.body.clone());
    for (name, value) in &delivery.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let response = request.send().await.map_err(|e| classify(shared, &e))?;
    let status = response.status().as_u16();
    // Read to the end so the connection goes back to the pool. The status is the answer:
    // a body cut short after a 200 does not make a finished job run again.
    if let Err(error) = response.bytes().await {
        tracing::debug!(%error, "the answer's body was cut short");
    }
    Ok(status)
}

fn classify(shared: &Shared, error: &reqwest::Error) -> PostFailure {
    if error.is_timeout() {
        return PostFailure::new(format!(
            "timeout: no answer within {} s (InactivityTimeout)",
            shared.settings.inactivity_timeout
        ));
    }
    if error.is_connect() {
        return PostFailure {
            unreachable: true,
            ..PostFailure::new(format!("connection failed: {}", root_cause(error)))
        };
    }
    let mut source: Option<&dyn std::error::Error> = Some(error);
    while let Some(cause) = source {
        if let Some(hyper) = cause.downcast_ref::<hyper::Error>()
            && hyper.is_incomplete_message()
        {
            return PostFailure {
                closed: true,
                ..PostFailure::new("the app closed the connection before answering".into())
            };
        }
        source = cause.source();
    }
    PostFailure::new(root_cause(error))
}

fn root_cause(error: &dyn std::error::Error) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
