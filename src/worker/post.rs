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

/// The POST; a connection the server closed before answering is tried once more on a fresh
/// one (as sqsd does), anything else is the answer.
pub(super) async fn post_with_retry(shared: &Shared, delivery: &Delivery) -> Result<u16, String> {
    let Some(addr) = shared.target.addr() else {
        return Err("no release serves on this host".into());
    };
    let url = format!("http://{addr}{}", delivery.path);
    match post(shared, &url, delivery).await {
        Err(PostError::Closed(_)) => post(shared, &url, delivery).await.map_err(|e| e.text()),
        other => other.map_err(|e| e.text()),
    }
}

enum PostError {
    Closed(String),
    Other(String),
}

impl PostError {
    fn text(self) -> String {
        match self {
            Self::Closed(text) | Self::Other(text) => text,
        }
    }
}

async fn post(shared: &Shared, url: &str, delivery: &Delivery) -> Result<u16, PostError> {
    let mut request = shared.http.post(url).body(delivery.body.clone());
    for (name, value) in &delivery.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let response = request.send().await.map_err(|e| classify(shared, &e))?;
    let status = response.status().as_u16();
    // Read to the end so the connection goes back to the pool.
    response.bytes().await.map_err(|e| classify(shared, &e))?;
    Ok(status)
}

fn classify(shared: &Shared, error: &reqwest::Error) -> PostError {
    if error.is_timeout() {
        return PostError::Other(format!(
            "timeout: no answer within {} s (InactivityTimeout)",
            shared.settings.inactivity_timeout
        ));
    }
    if error.is_connect() {
        return PostError::Other(format!("connection failed: {}", root_cause(error)));
    }
    let mut source: Option<&dyn std::error::Error> = Some(error);
    while let Some(cause) = source {
        if let Some(hyper) = cause.downcast_ref::<hyper::Error>()
            && hyper.is_incomplete_message()
        {
            return PostError::Closed("the app closed the connection before answering".into());
        }
        source = cause.source();
    }
    PostError::Other(root_cause(error))
}

fn root_cause(error: &dyn std::error::Error) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
