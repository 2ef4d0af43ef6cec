//! Downloads through signed, expiring URLs, for clients without an admin token: hosts fetching
//! an uploaded bundle (`GET /v1/bundles/<key>`), and whoever was handed an environment info URL
//! (`GET /v1/environment-info/<key>`). The signature covers the key and the expiry.

use hyper::body::Incoming;
use hyper::{Request, StatusCode};

use super::response::{Failure, Handled, get, query};
use crate::fleet::App;
use crate::store::Store;
use crate::versions;

/// What one signed route serves.
#[derive(Debug, Clone, Copy)]
pub struct SignedRoute {
    /// The path before the key, e.g. `/v1/bundles/`.
    pub route: &'static str,
    /// The keys it may serve: a signature for another kind of object is refused.
    pub key_prefix: &'static str,
    pub what: &'static str,
    pub content_type: fn(&str) -> &'static str,
}

pub const BUNDLES: SignedRoute = SignedRoute {
    route: "/v1/bundles/",
    key_prefix: "bundles/",
    what: "bundle",
    content_type: |_| "application/zip",
};

pub const ENVIRONMENT_INFO: SignedRoute = SignedRoute {
    route: crate::environment_info::DOWNLOAD_ROUTE,
    key_prefix: crate::environment_info::KEY_PREFIX,
    what: "environment info",
    content_type: crate::environment_info::content_type,
};

pub async fn signed<S: Store>(
    app: &App<S>,
    request: &Request<Incoming>,
    served: SignedRoute,
) -> Handled {
    let key = request
        .uri()
        .path()
        .trim_start_matches(served.route)
        .to_string();
    let pairs = query(request);
    let expires: i64 = get(&pairs, "expires")
        .and_then(|e| e.parse().ok())
        .unwrap_or(0);
    let signature = get(&pairs, "signature").unwrap_or("");
    if !key.starts_with(served.key_prefix)
        || key.split('/').any(|part| part.is_empty() || part == "..")
        || !versions::signature_valid(&app.signing_key, &key, expires, signature)
    {
        return Err(Failure::forbidden(format!(
            "the {} URL's signature is invalid or expired",
            served.what
        )));
    }
    let internal = |e: String| Failure(StatusCode::INTERNAL_SERVER_ERROR, e);
    let scratch = app.config.data_dir.join("tmp");
    tokio::fs::create_dir_all(&scratch)
        .await
        .map_err(|e| internal(e.to_string()))?;
    let temp = scratch.join(format!("download-{}", crate::secrets::new_id("")));
    let fetched = app
        .objects
        .get_to_file(&key, None, &temp, super::MAX_BUNDLE_BYTES as u64)
        .await;
    let bytes = tokio::fs::read(&temp).await;
    let _ = tokio::fs::remove_file(&temp).await;
    match (fetched, bytes) {
        (Ok(_), Ok(bytes)) => {
            let mut answer =
                hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(bytes)));
            answer.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static((served.content_type)(&key)),
            );
            Ok(answer)
        }
        (Err(hostmanager::store::StoreError::NotFound { .. }), _) => {
            Err(Failure::not_found(format!("{} {key}", served.what)))
        }
        (Err(e), _) => Err(internal(e.to_string())),
        (_, Err(e)) => Err(internal(e.to_string())),
    }
}
