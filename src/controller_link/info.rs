//! Environment info on the controller's request (`RequestEnvironmentInfo`): a tail of the
//! host's logs or a bundle of them, made by the log service exactly as `hostmanager logs
//! tail` / `logs bundle` make them (same files, same owner checks), then uploaded to the
//! controller (`POST /v1/hosts/<id>/logs/<command id>`). It runs beside the report loop, since a
//! bundle can take a while; its result goes up with the next report.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hostmanager_protocol::{
    CommandKind, CommandResult, LogsUploaded, MAX_LOGS_UPLOAD_BYTES, Outcome,
};

use super::http::post_bytes;
use crate::local_api::ApiState;
use crate::logs::JobState;
use crate::secret::Secret;

/// How long a bundle may take to zip before the request is given up.
const BUNDLE_DEADLINE: Duration = Duration::from_secs(600);
/// An upload's own timeout: up to [`MAX_LOGS_UPLOAD_BYTES`] on a slow link.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(300);

/// Results of finished requests, drained into the next report.
pub type InfoResults = Arc<Mutex<Vec<CommandResult>>>;

/// Where and as whom to upload.
#[derive(Debug, Clone)]
pub struct Uploader {
    pub client: reqwest::Client,
    /// `<controller>/v1/hosts/<id>/logs`
    pub base: String,
    pub bearer: Option<Secret<String>>,
}

/// Starts the request in the background; its result lands in `results`.
pub fn spawn(
    api: Arc<ApiState>,
    uploader: Uploader,
    command_id: String,
    kind: CommandKind,
    results: InfoResults,
) {
    tokio::spawn(async move {
        let result = match collect_and_upload(&api, &uploader, &command_id, kind).await {
            Ok(_) => CommandResult {
                id: command_id,
                accepted: true,
                deployment_id: None,
                error: None,
                outcome: Some(Outcome::Succeeded),
            },
            Err(error) => {
                api.sink.error(
                    "controller",
                    format!("Environment info for the controller failed: {error}"),
                );
                CommandResult {
                    id: command_id,
                    accepted: false,
                    deployment_id: None,
                    error: Some(error),
                    outcome: None,
                }
            }
        };
        results
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(result);
    });
}

async fn collect_and_upload(
    api: &ApiState,
    uploader: &Uploader,
    command_id: &str,
    kind: CommandKind,
) -> Result<String, String> {
    let (path, content_type) = match kind {
        CommandKind::TailLogs => (
            PathBuf::from(api.logs.tail().await?.path),
            "text/plain; charset=utf-8",
        ),
        CommandKind::BundleLogs => (bundle(api).await?, "application/zip"),
        other => return Err(format!("{other:?} is not an environment info request")),
    };
    let size = tokio::fs::metadata(&path)
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    if size > MAX_LOGS_UPLOAD_BYTES {
        return Err(format!(
            "{} is {size} bytes, over the controller's limit of {MAX_LOGS_UPLOAD_BYTES}; \
             publish the logs to S3 instead ([logs.publish], hostmanager logs bundle --upload)",
            path.display()
        ));
    }
    let body = tokio::fs::read(&path)
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let url = format!("{}/{command_id}", uploader.base);
    let uploaded: LogsUploaded = post_bytes(
        &uploader.client,
        &url,
        uploader.bearer.as_ref().map(|b| b.expose().as_str()),
        content_type,
        body,
        UPLOAD_TIMEOUT,
    )
    .await
    .map_err(|e| format!("uploading {}: {e}", path.display()))?;
    Ok(uploaded.key)
}

/// Zips the logs as `hostmanager logs bundle` does and waits for the zip.
async fn bundle(api: &ApiState) -> Result<PathBuf, String> {
    let job = api.logs.start_bundle(false);
    let deadline = tokio::time::Instant::now() + BUNDLE_DEADLINE;
    loop {
        match api.logs.bundle_job(job.id) {
            Some(done) if done.state == JobState::Done => return Ok(PathBuf::from(done.path)),
            Some(failed) if failed.state == JobState::Failed => {
                return Err(failed
                    .error
                    .unwrap_or_else(|| "the log bundle failed".into()));
            }
            Some(_) => {}
            None => return Err("the log bundle's job was forgotten".into()),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "the log bundle took longer than {}s",
                BUNDLE_DEADLINE.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
