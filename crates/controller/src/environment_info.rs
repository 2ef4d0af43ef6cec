//! `RequestEnvironmentInfo` and `RetrieveEnvironmentInfo`: the last lines of every instance's
//! logs (`tail`) or all of them zipped (`bundle`), as Elastic Beanstalk gives them. A request
//! queues a command per instance; each agent makes the tail or bundle as `hostmanager logs`
//! does and uploads it (`POST /v1/hosts/<id>/logs/<command id>`) into the controller's object
//! store, so every replica sees it; a retrieval answers the newest sample per instance as a
//! signed download URL (`GET /v1/environment-info/<key>?expires=…&signature=…`).
//!
//! Elastic Beanstalk deletes tail and bundle logs 15 minutes after they are made; so does the
//! controller (older samples are deleted whenever the environment's info is requested or
//! retrieved), and the URLs expire with them.

use std::collections::BTreeMap;

use hostmanager::store::PutOptions;
use hostmanager_protocol::{CommandKind, LogsUploaded};
use serde::Serialize;

use crate::fleet::reports::controller_event;
use crate::fleet::{App, now_ms};
use crate::http::response::Failure;
use crate::model::*;
use crate::store::Store;
use crate::{ops, secrets};

/// How long a sample is kept and its URL valid.
pub const INFO_TTL_MS: Millis = 15 * 60 * 1000;
/// The download route's prefix; the object key follows it.
pub const DOWNLOAD_ROUTE: &str = "/v1/environment-info/";
/// Every sample's key starts with this.
pub const KEY_PREFIX: &str = "logs/";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InfoType {
    Tail,
    Bundle,
}

impl InfoType {
    pub fn parse(text: &str) -> Result<Self, Failure> {
        match text {
            "tail" => Ok(Self::Tail),
            "bundle" => Ok(Self::Bundle),
            other => Err(Failure::bad_request(format!(
                "InfoType: {other:?} is neither tail nor bundle"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tail => "tail",
            Self::Bundle => "bundle",
        }
    }

    fn command_kind(self) -> CommandKind {
        match self {
            Self::Tail => CommandKind::TailLogs,
            Self::Bundle => CommandKind::BundleLogs,
        }
    }

    fn of_command(kind: CommandKind) -> Option<Self> {
        match kind {
            CommandKind::TailLogs => Some(Self::Tail),
            CommandKind::BundleLogs => Some(Self::Bundle),
            _ => None,
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Self::Tail => "txt",
            Self::Bundle => "zip",
        }
    }
}

/// The content type a sample is served with, by its key.
pub fn content_type(key: &str) -> &'static str {
    if key.ends_with(".zip") {
        "application/zip"
    } else {
        "text/plain; charset=utf-8"
    }
}

/// `logs/<environment>/<tail|bundle>/<instance>/<sample ms>.<txt|zip>`
pub fn sample_key(environment: &str, info: InfoType, instance: &str, sample_ms: Millis) -> String {
    let prefix = kind_prefix(environment, info);
    format!("{prefix}{instance}/{sample_ms}.{}", info.extension())
}

fn kind_prefix(environment: &str, info: InfoType) -> String {
    format!("{KEY_PREFIX}{environment}/{}/", info.as_str())
}

/// A stored sample, from its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub key: String,
    pub instance_id: String,
    pub sample_ms: Millis,
}

/// Splits the keys under one environment's kind prefix into the newest live sample per
/// instance (in instance order) and the keys past [`INFO_TTL_MS`], to delete. Keys that are not
/// samples are left alone.
pub fn newest_per_instance(
    prefix: &str,
    keys: &[String],
    now_ms: Millis,
) -> (Vec<Sample>, Vec<String>) {
    let mut newest: BTreeMap<String, Sample> = BTreeMap::new();
    let mut expired = Vec::new();
    for key in keys {
        let Some(rest) = key.strip_prefix(prefix) else {
            continue;
        };
        let Some((instance, file)) = rest.split_once('/') else {
            continue;
        };
        let Some(sample_ms) = file
            .split_once('.')
            .and_then(|(ms, _)| ms.parse::<Millis>().ok())
        else {
            continue;
        };
        if now_ms - sample_ms > INFO_TTL_MS {
            expired.push(key.clone());
            continue;
        }
        let sample = Sample {
            key: key.clone(),
            instance_id: instance.to_string(),
            sample_ms,
        };
        match newest.get(instance) {
            Some(kept) if kept.sample_ms >= sample_ms => {}
            _ => {
                newest.insert(instance.to_string(), sample);
            }
        }
    }
    (newest.into_values().collect(), expired)
}

/// `RequestEnvironmentInfo`'s answer. Elastic Beanstalk answers nothing; these say which
/// instances were asked and when, so a client knows what to wait for.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InfoRequested {
    pub environment_name: String,
    pub info_type: &'static str,
    pub requested_at: String,
    pub instances: Vec<String>,
}

/// One entry of `RetrieveEnvironmentInfo`, in Elastic Beanstalk's shape.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EnvironmentInfoDescription {
    pub info_type: &'static str,
    pub ec2_instance_id: String,
    pub sample_timestamp: String,
    /// The signed download URL.
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RetrieveEnvironmentInfoResult {
    pub environment_info: Vec<EnvironmentInfoDescription>,
}

/// Queues the request on every enrolled instance of the environment.
pub async fn request<S: Store>(
    app: &App<S>,
    name: &str,
    info: InfoType,
) -> Result<InfoRequested, Failure> {
    let env = ops::environment(app, name).await?;
    let now = now_ms();
    let mut asked = Vec::new();
    for instance in app.store.instances(&env.name).await? {
        if instance.revoked_ms.is_some() {
            continue;
        }
        app.store
            .queue_command(&QueuedCommand {
                id: secrets::new_id("info-"),
                instance_id: instance.id.clone(),
                kind: info.command_kind(),
                deployment_id: None,
                created_ms: now,
                result: None,
            })
            .await?;
        asked.push(instance.id);
    }
    app.store
        .append_events(&[controller_event(
            &env.name,
            None,
            EventSeverity::Info,
            "requestEnvironmentInfo is starting.".into(),
        )])
        .await?;
    prune_and_list(app, &env.name, info, now).await?;
    Ok(InfoRequested {
        environment_name: env.name,
        info_type: info.as_str(),
        requested_at: crate::views::date(now),
        instances: asked,
    })
}

/// Stores an instance's answer to one of its info commands.
pub async fn upload<S: Store>(
    app: &App<S>,
    instance: &Instance,
    command_id: &str,
    body: &[u8],
) -> Result<LogsUploaded, Failure> {
    let command = match app.store.command(command_id).await? {
        Some(command) if command.instance_id == instance.id => command,
        Some(_) => {
            return Err(Failure::forbidden(format!(
                "command {command_id} is not {}'s",
                instance.id
            )));
        }
        None => return Err(Failure::not_found(format!("command {command_id}"))),
    };
    let Some(info) = InfoType::of_command(command.kind) else {
        return Err(Failure::bad_request(format!(
            "command {command_id} is not an environment info request"
        )));
    };
    if command.result.is_some() {
        return Err(Failure::conflict(format!(
            "command {command_id} was answered already"
        )));
    }
    let key = sample_key(&instance.environment, info, &instance.id, now_ms());
    crate::versions::put_bytes(
        app.objects.as_ref(),
        &key,
        body,
        &app.config.data_dir.join("tmp"),
        PutOptions {
            if_none_match: false,
            content_type: Some(content_type(&key).into()),
        },
    )
    .await
    .map_err(|e| Failure(hyper::StatusCode::INTERNAL_SERVER_ERROR, e))?;
    Ok(LogsUploaded { key })
}

/// The newest sample per instance, as signed URLs valid until the sample expires.
pub async fn retrieve<S: Store>(
    app: &App<S>,
    name: &str,
    info: InfoType,
) -> Result<RetrieveEnvironmentInfoResult, Failure> {
    let env = ops::environment(app, name).await?;
    let samples = prune_and_list(app, &env.name, info, now_ms()).await?;
    let environment_info = samples
        .into_iter()
        .map(|sample| {
            let expires = sample.sample_ms + INFO_TTL_MS;
            let signature = secrets::sign(&app.signing_key, &sample.key, expires);
            EnvironmentInfoDescription {
                info_type: info.as_str(),
                ec2_instance_id: sample.instance_id,
                sample_timestamp: crate::views::date(sample.sample_ms),
                message: format!(
                    "{}{DOWNLOAD_ROUTE}{}?expires={expires}&signature={signature}",
                    app.config.public_url, sample.key
                ),
            }
        })
        .collect();
    Ok(RetrieveEnvironmentInfoResult { environment_info })
}

/// Deletes the environment's expired samples of this kind and returns the live newest ones.
async fn prune_and_list<S: Store>(
    app: &App<S>,
    environment: &str,
    info: InfoType,
    now: Millis,
) -> Result<Vec<Sample>, Failure> {
    let prefix = kind_prefix(environment, info);
    let keys: Vec<String> = app
        .objects
        .list(&prefix)
        .await
        .map_err(|e| Failure(hyper::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .into_iter()
        .map(|meta| meta.key)
        .collect();
    let (samples, expired) = newest_per_instance(&prefix, &keys, now);
    for key in expired {
        if let Err(error) = app.objects.delete(&key).await {
            tracing::warn!(%key, %error, "an expired environment info sample was not deleted");
        }
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_live_sample_of_each_instance_is_kept_and_expired_ones_are_deleted() {
        let prefix = kind_prefix("web", InfoType::Tail);
        let now = 10 * INFO_TTL_MS;
        let keys = vec![
            sample_key("web", InfoType::Tail, "i-1", now - 5_000),
            sample_key("web", InfoType::Tail, "i-1", now - 1_000),
            sample_key("web", InfoType::Tail, "i-2", now - INFO_TTL_MS - 1),
            sample_key("web", InfoType::Tail, "i-3", now - INFO_TTL_MS),
            format!("{prefix}i-4/not-a-sample"),
        ];
        let (samples, expired) = newest_per_instance(&prefix, &keys, now);
        assert_eq!(
            samples
                .iter()
                .map(|s| (s.instance_id.as_str(), s.sample_ms))
                .collect::<Vec<_>>(),
            vec![("i-1", now - 1_000), ("i-3", now - INFO_TTL_MS)]
        );
        assert_eq!(expired, vec![keys[2].clone()]);
    }

    #[test]
    fn keys_name_the_environment_kind_instance_and_time() {
        assert_eq!(
            sample_key("web", InfoType::Bundle, "i-0001", 42),
            "logs/web/bundle/i-0001/42.zip"
        );
        assert_eq!(
            content_type("logs/web/bundle/i-0001/42.zip"),
            "application/zip"
        );
        assert_eq!(
            content_type("logs/web/tail/i-0001/42.txt"),
            "text/plain; charset=utf-8"
        );
        assert!(InfoType::parse("zip").is_err());
    }
}
