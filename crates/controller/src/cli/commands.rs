//! What each command does. Operator commands print text (or `--json`) and exit 0, 1 when the
//! request or the waited-for deployment failed, 69 when the controller cannot be reached.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use super::client::{Client, ClientError, zip_directory};
use super::render;
use super::*;
use crate::config::DEFAULT_DATA_DIR;

pub async fn execute(cli: Cli) -> i32 {
    let data_dir = cli
        .data
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    match cli.command {
        Command::Run { config } => {
            match crate::config::load(config.as_deref(), cli.data.as_deref()) {
                Ok(config) => crate::service::run(config).await,
                Err(problems) => config_problems(&problems),
            }
        }
        Command::Validate { config } => {
            match crate::config::load(config.as_deref(), cli.data.as_deref()) {
                Ok(config) => {
                    println!(
                        "config is valid: listening on {}, database {}, data in {}",
                        config.listen,
                        config.database.describe(),
                        config.data_dir.display()
                    );
                    EXIT_OK
                }
                Err(problems) => config_problems(&problems),
            }
        }
        command => match Client::new(&cli.remote, &data_dir) {
            Ok(client) => match operator(&client, &cli.remote, command).await {
                Ok(code) => code,
                Err(ClientError::Api { status, message }) => {
                    eprintln!("hostmanager-controller: {message} (HTTP {status})");
                    EXIT_FAILED
                }
                Err(ClientError::Unavailable(message)) => {
                    eprintln!("hostmanager-controller: {message}");
                    EXIT_UNAVAILABLE
                }
            },
            Err(e) => {
                eprintln!("hostmanager-controller: {e}");
                EXIT_UNAVAILABLE
            }
        },
    }
}

fn config_problems(problems: &[String]) -> i32 {
    for problem in problems {
        eprintln!("{problem}");
    }
    eprintln!(
        "hostmanager-controller: {} problem(s) in the config",
        problems.len()
    );
    EXIT_CONFIG
}

fn print(remote: &Remote, value: &Value, text: impl FnOnce(&Value) -> String) {
    if remote.json {
        out(&format!(
            "{}\n",
            serde_json::to_string_pretty(value).unwrap_or_default()
        ));
    } else {
        out(&text(value));
    }
}

/// Writes to stdout. A reader that went away (`| head`) ends the command quietly, as the
/// default SIGPIPE would, instead of a panic.
pub(super) fn out(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        std::process::exit(EXIT_OK);
    }
}

fn option_settings(options: &[String]) -> Result<Vec<Value>, ClientError> {
    options
        .iter()
        .map(|text| match crate::options::parse_option_arg(text) {
            Ok((key, value)) => {
                let (namespace, option) = key.rsplit_once(':').unwrap_or(("", key.as_str()));
                Ok(json!({"Namespace": namespace, "OptionName": option, "Value": value}))
            }
            Err(message) => Err(ClientError::Api {
                status: 400,
                message: format!("--option {text}: {message}"),
            }),
        })
        .collect()
}

pub(super) fn path_part(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn operator(client: &Client, remote: &Remote, command: Command) -> Result<i32, ClientError> {
    match command {
        Command::Run { .. } | Command::Validate { .. } => unreachable!("handled by execute"),
        Command::Env(EnvCommand::Create {
            name,
            tier,
            app,
            options,
        }) => {
            let body = json!({
                "EnvironmentName": name,
                "ApplicationName": app.unwrap_or_else(|| name.clone()),
                "Tier": tier,
                "OptionSettings": option_settings(&options)?,
            });
            let env: Value = client.post("/v1/environments", &body).await?;
            print(remote, &env, render::environment);
        }
        Command::Env(EnvCommand::List) => {
            let list: Value = client.get("/v1/environments").await?;
            print(remote, &list, render::environments);
        }
        Command::Env(EnvCommand::Status { name }) => {
            let env: Value = client
                .get(&format!("/v1/environments/{}", path_part(&name)))
                .await?;
            print(remote, &env, render::environment);
        }
        Command::Env(EnvCommand::Health { name, refresh }) => loop {
            let health: Value = client
                .get(&format!("/v1/environments/{}/health", path_part(&name)))
                .await?;
            let instances: Value = client
                .get(&format!("/v1/environments/{}/instances", path_part(&name)))
                .await?;
            let both = json!({"Health": health, "Instances": instances});
            print(remote, &both, render::health);
            if !refresh {
                break;
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        },
        Command::Env(EnvCommand::Events {
            name,
            follow,
            severity,
            instance,
            limit,
        }) => {
            let mut query = format!("EnvironmentName={}&MaxRecords={limit}", path_part(&name));
            if let Some(severity) = &severity {
                query.push_str(&format!("&Severity={}", path_part(severity)));
            }
            if let Some(instance) = &instance {
                query.push_str(&format!("&InstanceId={}", path_part(instance)));
            }
            let page: Value = client.get(&format!("/v1/events?{query}")).await?;
            let mut events: Vec<Value> = page["Events"].as_array().cloned().unwrap_or_default();
            events.reverse();
            let mut last = events
                .iter()
                .filter_map(|e| e["Seq"].as_i64())
                .max()
                .unwrap_or(0);
            for event in &events {
                print(remote, event, render::event);
            }
            if follow {
                loop {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    let page: Value = client
                        .get(&format!("/v1/events?{query}&After={last}&Order=oldest"))
                        .await?;
                    for event in page["Events"].as_array().cloned().unwrap_or_default() {
                        last = last.max(event["Seq"].as_i64().unwrap_or(last));
                        print(remote, &event, render::event);
                    }
                }
            }
        }
        Command::Env(EnvCommand::Update {
            name,
            options,
            wait,
        }) => {
            let deployment: Value = client
                .put(
                    &format!("/v1/environments/{}", path_part(&name)),
                    &json!({"OptionSettings": option_settings(&options)?}),
                )
                .await?;
            return follow_deployment(client, remote, deployment, wait).await;
        }
        Command::Env(EnvCommand::Terminate { name }) => {
            let env: Value = client
                .delete(&format!("/v1/environments/{}", path_part(&name)))
                .await?;
            print(remote, &env, render::environment);
        }
        Command::EnrollToken(TokenCommand::Create {
            name,
            uses,
            expires,
        }) => {
            let token: Value = client
                .post(
                    &format!("/v1/environments/{}/enrollment-tokens", path_part(&name)),
                    &json!({"Uses": uses, "Expires": expires}),
                )
                .await?;
            print(remote, &token, |t| {
                format!("{}\n", t["Token"].as_str().unwrap_or_default())
            });
        }
        Command::EnrollToken(TokenCommand::Revoke { id }) => {
            let token: Value = client
                .delete(&format!("/v1/enrollment-tokens/{}", path_part(&id)))
                .await?;
            print(remote, &token, |_| format!("revoked {id}\n"));
        }
        Command::Deploy {
            name,
            bundle,
            label,
            wait,
            options,
            description,
        } => {
            let env: Value = client
                .get(&format!("/v1/environments/{}", path_part(&name)))
                .await?;
            let application = env["ApplicationName"].as_str().unwrap_or(&name).to_string();
            let version_path = format!(
                "/v1/applications/{}/versions/{}",
                path_part(&application),
                path_part(&label)
            );
            let is_url = ["s3://", "https://", "http://", "file://"]
                .iter()
                .any(|s| bundle.starts_with(s));
            if is_url {
                let _: Value = client
                    .post(
                        &format!("/v1/applications/{}/versions", path_part(&application)),
                        &json!({"VersionLabel": label, "SourceBundle": bundle, "Description": description.unwrap_or_default()}),
                    )
                    .await?;
            } else {
                let path = Path::new(&bundle);
                let zip = if path.is_dir() {
                    zip_directory(path)
                        .map_err(|e| ClientError::Unavailable(format!("{bundle}: {e}")))?
                } else {
                    std::fs::read(path)
                        .map_err(|e| ClientError::Unavailable(format!("{bundle}: {e}")))?
                };
                let _: Value = client.put_zip(&version_path, zip).await?;
            }
            let deployment: Value = client
                .put(
                    &format!("/v1/environments/{}", path_part(&name)),
                    &json!({"VersionLabel": label, "OptionSettings": option_settings(&options)?}),
                )
                .await?;
            return follow_deployment(client, remote, deployment, wait).await;
        }
        Command::Restart { name, wait } => {
            let deployment: Value = client
                .post(
                    &format!("/v1/environments/{}/restart", path_part(&name)),
                    &json!({}),
                )
                .await?;
            return follow_deployment(client, remote, deployment, wait).await;
        }
        Command::Abort { name } => {
            let deployment: Value = client
                .post(
                    &format!("/v1/environments/{}/abort", path_part(&name)),
                    &json!({}),
                )
                .await?;
            print(remote, &deployment, render::deployment);
        }
        Command::Swap {
            source,
            destination,
        } => {
            let swapped: Value = client
                .post(
                    "/v1/environments/swap-cnames",
                    &json!({"SourceEnvironmentName": source, "DestinationEnvironmentName": destination}),
                )
                .await?;
            print(remote, &swapped, |v| {
                let mut out = String::new();
                for env in v["Environments"].as_array().into_iter().flatten() {
                    out.push_str(&format!(
                        "{} is now {}\n",
                        env["EnvironmentName"].as_str().unwrap_or_default(),
                        env["CNAME"].as_str().unwrap_or_default()
                    ));
                }
                out
            });
        }
        Command::Instances { name } => {
            let instances: Value = client
                .get(&format!("/v1/environments/{}/instances", path_part(&name)))
                .await?;
            print(remote, &instances, render::instances);
        }
        Command::Revoke { instance } => {
            let revoked: Value = client
                .delete(&format!("/v1/instances/{}", path_part(&instance)))
                .await?;
            print(remote, &revoked, |_| format!("revoked {instance}\n"));
        }
        Command::Deployment { id } => {
            let deployment: Value = client.get(&format!("/v1/deployments/{id}")).await?;
            print(remote, &deployment, render::deployment);
        }
        Command::Logs {
            name,
            bundle,
            out,
            timeout,
        } => {
            let request = super::logs::LogsRequest {
                name,
                bundle,
                out,
                timeout,
            };
            return super::logs::run(client, remote, request).await;
        }
    }
    Ok(EXIT_OK)
}

/// Prints the deployment, and with `wait` its progress until it ends: exit 1 unless it
/// succeeded.
async fn follow_deployment(
    client: &Client,
    remote: &Remote,
    mut deployment: Value,
    wait: bool,
) -> Result<i32, ClientError> {
    if !wait {
        print(remote, &deployment, render::deployment);
        return Ok(EXIT_OK);
    }
    let id = deployment["id"].as_i64().unwrap_or_default();
    let mut shown = String::new();
    loop {
        let status = deployment["status"].as_str().unwrap_or("").to_string();
        if !remote.json {
            let line = render::progress(&deployment);
            if line != shown {
                eprintln!("{line}");
                shown = line;
            }
        }
        if matches!(status.as_str(), "Succeeded" | "Failed" | "Aborted") {
            print(remote, &deployment, render::deployment);
            return Ok(if status == "Succeeded" {
                EXIT_OK
            } else {
                EXIT_FAILED
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        deployment = client.get(&format!("/v1/deployments/{id}")).await?;
    }
}
