//! Application versions' bundles: a URL the hosts fetch themselves (`s3://`, `https://`,
//! `file://`), or a bundle uploaded to the controller and kept in its object store
//! (`upload:<key>`), which hosts fetch from the controller through a signed, expiring URL
//! (`GET /v1/bundles/<key>?expires=…&signature=…`). Either way the desired state carries the
//! bundle's sha256, which the agent checks.

use std::path::Path;

use hostmanager::store::{ObjectStore, PutOptions};
use sha2::{Digest, Sha256};

use crate::fleet::{App, now_ms};
use crate::model::AppVersion;
use crate::secrets;
use crate::store::Store;

/// How long a signed bundle URL stays valid (a host fetches it in its next report).
const SIGNED_URL_TTL_MS: i64 = 6 * 3600 * 1000;

pub const UPLOAD_PREFIX: &str = "upload:";

/// The object key of an uploaded bundle: content-addressed, so re-uploading the same bytes
/// is harmless and two labels never share a key by accident.
pub fn bundle_key(application: &str, sha256: &str) -> String {
    format!("bundles/{application}/{sha256}.zip")
}

/// The URL a host fetches the version's bundle from.
pub fn fetch_url<S: Store>(app: &App<S>, version: &AppVersion) -> String {
    match version.source.strip_prefix(UPLOAD_PREFIX) {
        None => version.source.clone(),
        Some(key) => {
            let expires = now_ms() + SIGNED_URL_TTL_MS;
            let signature = secrets::sign(&app.signing_key, key, expires);
            format!(
                "{}/v1/bundles/{key}?expires={expires}&signature={signature}",
                app.config.public_url
            )
        }
    }
}

/// Checks a signed bundle URL's parameters.
pub fn signature_valid(key: &[u8], object: &str, expires_ms: i64, signature: &str) -> bool {
    expires_ms > now_ms() && secrets::same_hash(&secrets::sign(key, object, expires_ms), signature)
}

/// Stores an uploaded zip and returns (source, sha256, size).
pub async fn store_upload(
    objects: &dyn ObjectStore,
    application: &str,
    body: &[u8],
    scratch: &Path,
) -> Result<(String, String, u64), String> {
    if !body.starts_with(b"PK") {
        return Err("the bundle is not a zip file (it must start with PK)".into());
    }
    let sha256 = secrets::hex(&Sha256::digest(body));
    let key = bundle_key(application, &sha256);
    put_bytes(
        objects,
        &key,
        body,
        scratch,
        PutOptions {
            if_none_match: true,
            content_type: Some("application/zip".into()),
        },
    )
    .await?;
    Ok((format!("{UPLOAD_PREFIX}{key}"), sha256, body.len() as u64))
}

/// Stores bytes received in a request as an object (the object store takes files: they go
/// through a temporary file under `scratch`, removed whatever happens).
pub async fn put_bytes(
    objects: &dyn ObjectStore,
    key: &str,
    body: &[u8],
    scratch: &Path,
    options: PutOptions,
) -> Result<(), String> {
    tokio::fs::create_dir_all(scratch)
        .await
        .map_err(|e| format!("{}: {e}", scratch.display()))?;
    let temp = scratch.join(format!("upload-{}", secrets::new_id("")));
    tokio::fs::write(&temp, body)
        .await
        .map_err(|e| format!("{}: {e}", temp.display()))?;
    let put = objects.put_file(key, &temp, options).await;
    let _ = tokio::fs::remove_file(&temp).await;
    put.map(|_| ()).map_err(|e| format!("storing {key}: {e}"))
}

/// Checks a version's URL source.
pub fn source_problem(source: &str) -> Option<String> {
    let ok = ["s3://", "https://", "http://", "file://"]
        .iter()
        .any(|scheme| source.starts_with(scheme) && source.len() > scheme.len());
    (!ok).then(|| {
        format!(
            "SourceBundle: {:?} must be an s3://, https:// or file:// URL, or upload the zip",
            hostmanager::secret::shown_source(source)
        )
    })
}
