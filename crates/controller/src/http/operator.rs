//! The operator plane: REST/JSON, with Elastic Beanstalk's action names and field names where
//! it has them (`docs/controller-api.md`, `GET /v1/openapi.json`). Every route here has
//! passed the admin-token check.

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::response::{self, Failure, Handled, get, ok, query};
use crate::fleet::App;
use crate::model::*;
use crate::store::Store;
use crate::{environment_info, ops, versions, views};

pub async fn route<S: Store>(
    app: &App<S>,
    method: &Method,
    segments: &[&str],
    request: Request<Incoming>,
) -> Handled {
    match (method, segments) {
        (&Method::GET, ["metrics"]) => metrics(app).await,
        (&Method::GET, ["v1", "openapi.json"]) => Ok(response::json(
            StatusCode::OK,
            &serde_json::from_str::<serde_json::Value>(crate::openapi::DOCUMENT)
                .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?,
        )),
        (&Method::GET, ["v1", "applications"]) => {
            let applications = app.store.applications().await?;
            let mut described = Vec::new();
            for application in applications {
                let versions = app.store.versions(&application.name).await?;
                described.push(views::application(&application, &versions));
            }
            Ok(ok(&json!({ "Applications": described })))
        }
        (&Method::POST, ["v1", "applications"]) => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase", deny_unknown_fields)]
            struct Body {
                application_name: String,
                #[serde(default)]
                description: String,
            }
            let body: Body = response::parse_json(
                &response::body(request, 64 << 10).await?,
                "CreateApplication",
            )?;
            let application =
                ops::ensure_application(app, &body.application_name, &body.description).await?;
            Ok(ok(&views::application(&application, &[])))
        }
        (&Method::GET, ["v1", "applications", name, "versions"]) => {
            let versions = app.store.versions(name).await?;
            Ok(ok(
                &json!({ "ApplicationVersions": versions.iter().map(views::version).collect::<Vec<_>>() }),
            ))
        }
        (&Method::POST, ["v1", "applications", name, "versions"]) => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase", deny_unknown_fields)]
            struct Body {
                version_label: String,
                source_bundle: String,
                #[serde(default)]
                sha256: Option<String>,
                #[serde(default)]
                description: String,
            }
            let body: Body = response::parse_json(
                &response::body(request, 64 << 10).await?,
                "CreateApplicationVersion",
            )?;
            if let Some(problem) = versions::source_problem(&body.source_bundle) {
                return Err(Failure::bad_request(problem));
            }
            let version = ops::create_version(
                app,
                AppVersion {
                    application: name.to_string(),
                    label: body.version_label,
                    source: body.source_bundle,
                    sha256: body.sha256.map(|s| s.to_ascii_lowercase()),
                    description: body.description,
                    size_bytes: None,
                    created_ms: crate::fleet::now_ms(),
                },
            )
            .await?;
            Ok(ok(&views::version(&version)))
        }
        (&Method::PUT, ["v1", "applications", name, "versions", label]) => {
            let pairs = query(&request);
            let description = get(&pairs, "Description").unwrap_or("").to_string();
            let bundle = response::body(request, super::MAX_BUNDLE_BYTES).await?;
            let (source, sha256, size) = versions::store_upload(
                app.objects.as_ref(),
                name,
                &bundle,
                &app.config.data_dir.join("tmp"),
            )
            .await
            .map_err(|e| Failure::bad_request(format!("SourceBundle: {e}")))?;
            let version = ops::create_version(
                app,
                AppVersion {
                    application: name.to_string(),
                    label: label.to_string(),
                    source,
                    sha256: Some(sha256),
                    description,
                    size_bytes: Some(size),
                    created_ms: crate::fleet::now_ms(),
                },
            )
            .await?;
            Ok(ok(&views::version(&version)))
        }
        (&Method::GET, ["v1", "environments"]) => {
            let mut described = Vec::new();
            for env in app.store.environments().await? {
                if env.status != EnvStatus::Terminated {
                    described.push(views::environment(app, &env).await?);
                }
            }
            Ok(ok(&json!({ "Environments": described })))
        }
        (&Method::POST, ["v1", "environments"]) => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase", deny_unknown_fields)]
            struct Body {
                environment_name: String,
                #[serde(default)]
                application_name: Option<String>,
                #[serde(default)]
                tier: Option<String>,
                #[serde(default)]
                option_settings: Vec<OptionSetting>,
                #[serde(default)]
                version_label: Option<String>,
            }
            let body: Body = response::parse_json(
                &response::body(request, 1 << 20).await?,
                "CreateEnvironment",
            )?;
            let tier = match body.tier.as_deref().map(str::to_ascii_lowercase).as_deref() {
                None | Some("web") | Some("webserver") => Tier::Web,
                Some("worker") => Tier::Worker,
                Some(other) => {
                    return Err(Failure::bad_request(format!(
                        "Tier: {other:?} is neither web nor worker"
                    )));
                }
            };
            let application = body
                .application_name
                .unwrap_or_else(|| body.environment_name.clone());
            let env = ops::create_environment(
                app,
                &body.environment_name,
                &application,
                tier,
                settings(&body.option_settings)?,
            )
            .await?;
            if let Some(label) = body.version_label {
                ops::update_environment(app, &env.name, Some(&label), None).await?;
            }
            Ok(ok(&views::environment(
                app,
                &ops::environment(app, &env.name).await?,
            )
            .await?))
        }
        (&Method::GET, ["v1", "environments", name]) => {
            let env = ops::environment(app, name).await?;
            Ok(ok(&views::environment(app, &env).await?))
        }
        (&Method::PUT, ["v1", "environments", name]) => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase", deny_unknown_fields)]
            struct Body {
                #[serde(default)]
                version_label: Option<String>,
                #[serde(default)]
                option_settings: Vec<OptionSetting>,
            }
            let body: Body = response::parse_json(
                &response::body(request, 1 << 20).await?,
                "UpdateEnvironment",
            )?;
            let options = (!body.option_settings.is_empty())
                .then(|| settings(&body.option_settings))
                .transpose()?;
            if body.version_label.is_none() && options.is_none() {
                return Err(Failure::bad_request(
                    "UpdateEnvironment: give VersionLabel and/or OptionSettings",
                ));
            }
            let deployment =
                ops::update_environment(app, name, body.version_label.as_deref(), options).await?;
            Ok(ok(&deployment))
        }
        (&Method::DELETE, ["v1", "environments", name]) => {
            let env = ops::terminate(app, name).await?;
            Ok(ok(&views::environment(app, &env).await?))
        }
        (&Method::GET, ["v1", "environments", name, "health"]) => {
            let env = ops::environment(app, name).await?;
            Ok(ok(&views::environment_health(app, &env).await?))
        }
        (&Method::GET, ["v1", "environments", name, "instances"]) => {
            let env = ops::environment(app, name).await?;
            let pairs = query(&request);
            Ok(ok(&views::instances_health(
                app,
                &env,
                get(&pairs, "NextToken"),
            )
            .await?))
        }
        (&Method::POST, ["v1", "environments", name, "restart"]) => {
            Ok(ok(&ops::restart(app, name).await?))
        }
        (&Method::POST, ["v1", "environments", "swap-cnames"]) => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase", deny_unknown_fields)]
            struct Body {
                source_environment_name: String,
                destination_environment_name: String,
            }
            let body: Body = response::parse_json(
                &response::body(request, 64 << 10).await?,
                "SwapEnvironmentCNAMEs",
            )?;
            let (source, destination) = crate::swap::swap_cnames(
                app,
                &body.source_environment_name,
                &body.destination_environment_name,
            )
            .await?;
            Ok(ok(&json!({ "Environments": [
                views::environment(app, &source).await?,
                views::environment(app, &destination).await?,
            ] })))
        }
        (&Method::POST, ["v1", "environments", name, "abort"]) => {
            Ok(ok(&ops::abort(app, name).await?))
        }
        (&Method::GET, ["v1", "environments", name, "deployments"]) => {
            ops::environment(app, name).await?;
            Ok(ok(
                &json!({ "Deployments": app.store.deployments(name, 50).await? }),
            ))
        }
        (&Method::GET, ["v1", "deployments", id]) => {
            let id: i64 = id.parse().map_err(|_| {
                Failure::bad_request(format!("deployment id {id:?} is not a number"))
            })?;
            match app.store.deployment(id).await? {
                Some(deployment) => Ok(ok(&views::deployment(app, &deployment))),
                None => Err(Failure::not_found(format!("deployment {id}"))),
            }
        }
        (&Method::POST, ["v1", "environments", name, "enrollment-tokens"]) => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase", deny_unknown_fields)]
            struct Body {
                #[serde(default)]
                uses: Option<u32>,
                #[serde(default)]
                expires: Option<String>,
            }
            let body: Body = response::parse_json(
                &response::body(request, 64 << 10).await?,
                "enrollment token",
            )?;
            let ttl = match &body.expires {
                None => app.config.hosts.enrollment_token_ttl,
                Some(text) => humantime::parse_duration(text).map_err(|_| {
                    Failure::bad_request(format!(
                        "Expires: {text:?} is not a duration like 1h or 24h"
                    ))
                })?,
            };
            let (record, token) =
                ops::create_enrollment_token(app, name, body.uses.unwrap_or(1), ttl).await?;
            Ok(ok(&json!({
                "TokenId": record.id,
                "Token": token,
                "EnvironmentName": record.environment,
                "UsesLeft": record.uses_left,
                "ExpiresAt": views::date(record.expires_ms),
            })))
        }
        (&Method::DELETE, ["v1", "enrollment-tokens", id]) => {
            app.store.revoke_enrollment_token(id).await?;
            Ok(ok(&json!({ "TokenId": id, "Revoked": true })))
        }
        (&Method::DELETE, ["v1", "instances", id]) => {
            let instance = ops::revoke_instance(app, id).await?;
            Ok(ok(
                &json!({ "InstanceId": instance.id, "Revoked": instance.revoked_ms.is_some() }),
            ))
        }
        (&Method::POST, ["v1", "environments", name, "info"]) => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase", deny_unknown_fields)]
            struct Body {
                info_type: String,
            }
            let body: Body = response::parse_json(
                &response::body(request, 64 << 10).await?,
                "RequestEnvironmentInfo",
            )?;
            let info = environment_info::InfoType::parse(&body.info_type)?;
            Ok(ok(&environment_info::request(app, name, info).await?))
        }
        (&Method::GET, ["v1", "environments", name, "info"]) => {
            let pairs = query(&request);
            let info =
                environment_info::InfoType::parse(get(&pairs, "InfoType").unwrap_or("tail"))?;
            Ok(ok(&environment_info::retrieve(app, name, info).await?))
        }
        (&Method::GET, ["v1", "events"]) => {
            let pairs = query(&request);
            Ok(ok(&views::events(app, &pairs).await?))
        }
        _ => Err(Failure::not_found(format!(
            "no such endpoint: {method} {}",
            request.uri().path()
        ))),
    }
}

/// One of Elastic Beanstalk's `OptionSettings` entries.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct OptionSetting {
    pub namespace: String,
    pub option_name: String,
    #[serde(default)]
    pub value: String,
}

fn settings(list: &[OptionSetting]) -> Result<OptionSettings, Failure> {
    let mut settings = OptionSettings::new();
    for setting in list {
        if setting.namespace.is_empty() || setting.option_name.is_empty() {
            return Err(Failure::bad_request(
                "OptionSettings: each needs a Namespace and an OptionName",
            ));
        }
        settings.insert(
            format!("{}:{}", setting.namespace, setting.option_name),
            setting.value.clone(),
        );
    }
    Ok(settings)
}

async fn metrics<S: Store>(app: &App<S>) -> Handled {
    let footprint = app.store.footprint().await?;
    let (instances, environments) = {
        let cache = app.cache.lock().unwrap_or_else(|p| p.into_inner());
        (
            cache.instances.len() as f64,
            cache.environments.len() as f64,
        )
    };
    let mut gauges = vec![
        (
            "hostmanager_controller_instances",
            "Enrolled instances.",
            instances,
        ),
        (
            "hostmanager_controller_environments",
            "Environments.",
            environments,
        ),
        (
            "hostmanager_controller_database_bytes",
            "Size of the database.",
            footprint.bytes as f64,
        ),
    ];
    let rows: Vec<(String, f64)> = footprint
        .rows
        .iter()
        .map(|(table, count)| {
            (
                format!("hostmanager_controller_rows{{table=\"{table}\"}}"),
                *count as f64,
            )
        })
        .collect();
    for (name, value) in &rows {
        gauges.push((name.as_str(), "Rows per table.", *value));
    }
    let mut answer = response::plain(StatusCode::OK, &app.counters.render(&gauges));
    answer.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    Ok(answer)
}
