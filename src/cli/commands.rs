//! What each CLI command does. Returns the process exit code.

use std::time::Duration;

use super::{Cli, Command, render};
use crate::config::{self, ConfigError};
use crate::deploy::{ConfigureRequest, DeploymentRecord, DeploymentRequest};
use crate::events::Event;
use crate::local_api::{ClientError, ControlClient, StatusReport};
use crate::paths::Paths;

pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_USAGE: i32 = 64;
pub const EXIT_CONFIG: i32 = 78;

pub async fn execute(cli: &Cli) -> i32 {
    let paths = Paths::new(&cli.root);
    let client = ControlClient::new(&paths.control_socket());
    let outcome = match &cli.command {
        Command::Run => {
            let (path, required) = cli.config_path();
            return match crate::agent::run(paths, path, required).await {
                Ok(()) => EXIT_OK,
                Err(error) => {
                    tracing::error!("{error}");
                    eprintln!("hostmanager: {error}");
                    error.exit_code()
                }
            };
        }
        Command::Validate => return validate(cli),
        Command::Settings { effective, json } => {
            return super::settings::show(cli, &paths, &client, *effective, *json).await;
        }
        Command::GetConfig {
            kind,
            key,
            namespace,
            option,
        } => {
            return super::settings::get_config(
                cli,
                &paths,
                *kind,
                key.as_deref(),
                namespace.as_deref(),
                option.as_deref(),
            );
        }
        Command::Status { json } => status(&client, *json).await,
        Command::Deploy {
            bundle,
            env,
            env_file,
            sha256,
            label,
            wait,
            json,
        } => {
            let request = match build_request(bundle, env_file, env, sha256, label) {
                Ok(request) => request,
                Err(message) => {
                    eprintln!("hostmanager deploy: {message}");
                    return EXIT_USAGE;
                }
            };
            match client
                .post::<_, DeploymentRecord>("/v1/deployments", &request)
                .await
            {
                Ok(record) => follow(&client, record, *wait, *json).await,
                Err(error) => Err(error),
            }
        }
        Command::Configure {
            set,
            env_file,
            unset,
            wait,
            json,
        } => {
            let change = match super::properties::collect(env_file, set, "--set") {
                Ok(set) => ConfigureRequest {
                    set,
                    unset: unset.clone(),
                },
                Err(message) => {
                    eprintln!("hostmanager configure: {message}");
                    return EXIT_USAGE;
                }
            };
            match client
                .post::<_, DeploymentRecord>("/v1/configuration", &change)
                .await
            {
                Ok(record) => follow(&client, record, *wait, *json).await,
                Err(error) => Err(error),
            }
        }
        Command::Restart { wait, json } => match client
            .post::<_, DeploymentRecord>("/v1/restart", &serde_json::json!({}))
            .await
        {
            Ok(record) => follow(&client, record, *wait, *json).await,
            Err(error) => Err(error),
        },
        Command::Rollback { wait, json } => match client
            .post::<_, DeploymentRecord>("/v1/rollback", &serde_json::json!({}))
            .await
        {
            Ok(record) => follow(&client, record, *wait, *json).await,
            Err(error) => Err(error),
        },
        Command::Deployments { limit, json } => deployments(&client, *limit, *json).await,
        Command::Events {
            after,
            since,
            follow,
            severity,
            limit,
            json,
        } => {
            let since_ms = match since.as_deref().map(super::logs::parse_since).transpose() {
                Ok(since) => since,
                Err(message) => {
                    eprintln!("hostmanager events: {message}");
                    return EXIT_USAGE;
                }
            };
            let filter = EventFilter {
                after: *after,
                since_ms,
                severity: severity.clone(),
                limit: *limit,
            };
            events(&client, &filter, *follow, *json).await
        }
        Command::StopApps => stop_apps(&client, &paths, cli).await,
        Command::Start { wait, json } => start(&client, &paths, *wait, *json).await,
        Command::Health { watch, json } => super::health::health(&client, *watch, *json).await,
        Command::Metrics(command) => return super::health::metrics(command),
        Command::Logs { command } => super::logs::run(&client, command, cli).await,
        Command::Proxy { command } => super::proxy::run(&client, command).await,
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("hostmanager: {error}");
            EXIT_FAILED
        }
    }
}

fn validate(cli: &Cli) -> i32 {
    let (path, required) = cli.config_path();
    if !required && !path.exists() {
        println!(
            "{} does not exist: the agent runs on the documented defaults.",
            path.display()
        );
        return EXIT_OK;
    }
    match config::load(&path, true) {
        Ok(_) => {
            println!("{} is valid.", path.display());
            EXIT_OK
        }
        Err(error @ ConfigError::Invalid { .. }) | Err(error @ ConfigError::Read { .. }) => {
            eprintln!("{error}");
            EXIT_CONFIG
        }
    }
}

async fn status(client: &ControlClient, json: bool) -> Result<i32, ClientError> {
    let report: StatusReport = client.get("/v1/status").await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print!("{}", render::status(&report));
    }
    Ok(EXIT_OK)
}

fn build_request(
    bundle: &str,
    env_files: &[std::path::PathBuf],
    env: &[String],
    sha256: &Option<String>,
    label: &Option<String>,
) -> Result<DeploymentRequest, String> {
    let properties = super::properties::collect(env_files, env, "--env")?;
    // The agent has its own working directory: send local paths absolute.
    let source = if bundle.contains("://") {
        bundle.to_string()
    } else {
        std::fs::canonicalize(bundle)
            .map_err(|error| format!("bundle {bundle}: {error}"))?
            .display()
            .to_string()
    };
    Ok(DeploymentRequest {
        source,
        sha256: sha256.clone(),
        version_label: label.clone(),
        env: properties,
        // Local deployments use the host's own `[platform]`.
        platform_options: Default::default(),
        command_leader: None,
    })
}

/// Prints an accepted job; with `wait`, follows it step by step until it ends.
async fn follow(
    client: &ControlClient,
    record: DeploymentRecord,
    wait: bool,
    json: bool,
) -> Result<i32, ClientError> {
    if !wait {
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(&record).unwrap_or_default()
            );
        } else {
            println!(
                "Deployment {} of {} queued. Follow it: hostmanager events",
                record.id, record.version_label
            );
        }
        return Ok(EXIT_OK);
    }
    if !json {
        println!("{}:", render::title(&record));
    }
    let path = format!("/v1/deployments/{}", record.id);
    let mut printed = 0;
    loop {
        let current: DeploymentRecord = client.get(&path).await?;
        if !json {
            // A step is printed once it finished, so each line carries its outcome.
            let finished = current
                .steps
                .iter()
                .take_while(|s| s.duration_ms.is_some())
                .count();
            for step in &current.steps[printed..finished] {
                println!("{}", render::step(step));
            }
            printed = finished;
        }
        if current.status.is_finished() {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&current).unwrap_or_default()
                );
            } else {
                println!("{}", render::outcome(&current));
            }
            let ok = matches!(
                current.status,
                crate::deploy::DeploymentStatus::Succeeded | crate::deploy::DeploymentStatus::Noop
            );
            return Ok(if ok { EXIT_OK } else { EXIT_FAILED });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn deployments(client: &ControlClient, limit: usize, json: bool) -> Result<i32, ClientError> {
    let records: Vec<DeploymentRecord> = client
        .get(&format!("/v1/deployments?limit={limit}"))
        .await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&records).unwrap_or_default()
        );
    } else {
        for record in &records {
            println!("{}", render::summary(record));
        }
    }
    Ok(EXIT_OK)
}

#[derive(Debug)]
struct EventFilter {
    after: Option<u64>,
    since_ms: Option<i64>,
    severity: Option<String>,
    limit: usize,
}

impl EventFilter {
    fn path(&self, after: Option<u64>, wait_ms: Option<u64>) -> String {
        let mut path = format!("/v1/events?limit={}", self.limit);
        if let Some(after) = after {
            path.push_str(&format!("&after={after}"));
        }
        if let Some(since) = self.since_ms {
            path.push_str(&format!("&since_ms={since}"));
        }
        if let Some(severity) = &self.severity {
            path.push_str(&format!("&severity={severity}"));
        }
        if let Some(wait) = wait_ms {
            path.push_str(&format!("&wait_ms={wait}"));
        }
        path
    }
}

async fn events(
    client: &ControlClient,
    filter: &EventFilter,
    follow: bool,
    json: bool,
) -> Result<i32, ClientError> {
    let mut after = filter.after;
    let mut wait = None;
    loop {
        let events: Vec<Event> = client.get(&filter.path(after, wait)).await?;
        if json && !follow {
            println!(
                "{}",
                serde_json::to_string_pretty(&events).unwrap_or_default()
            );
        } else {
            for event in &events {
                if json {
                    // One JSON document per line while following.
                    println!("{}", serde_json::to_string(event).unwrap_or_default());
                } else {
                    println!("{}", render::event(event));
                }
            }
        }
        if !follow {
            return Ok(EXIT_OK);
        }
        after = events.last().map(|e| e.id).or(after).or(Some(0));
        // Long poll: the agent answers as soon as a matching event is recorded.
        wait = Some(25_000);
    }
}

async fn stop_apps(client: &ControlClient, paths: &Paths, cli: &Cli) -> Result<i32, ClientError> {
    match client
        .post::<_, serde_json::Value>("/v1/stop-apps", &serde_json::json!({}))
        .await
    {
        Ok(_) => {
            println!("Stopped every app process and nginx.");
            Ok(EXIT_OK)
        }
        Err(ClientError::NotRunning(_)) => {
            let (config_path, required) = cli.config_path();
            let config =
                config::load(&config_path, required).unwrap_or_else(|_| config::default_config());
            // First, so that an agent started meanwhile does not start them again.
            let hold = crate::supervise::hold_path(paths);
            if let Err(error) = crate::supervise::set_hold_file(&hold) {
                eprintln!("hostmanager stop-apps: cannot record the stop: {error}");
                return Ok(EXIT_FAILED);
            }
            let stopped = super::offline::stop_everything(paths, &config).await;
            println!("The agent is not running; stopped {stopped} process group(s) directly.");
            Ok(EXIT_OK)
        }
        Err(other) => Err(other),
    }
}

async fn start(
    client: &ControlClient,
    paths: &Paths,
    wait: bool,
    json: bool,
) -> Result<i32, ClientError> {
    match client
        .post::<_, DeploymentRecord>("/v1/start", &serde_json::json!({}))
        .await
    {
        Ok(record) => follow(client, record, wait, json).await,
        Err(ClientError::NotRunning(socket)) => {
            let hold = crate::supervise::hold_path(paths);
            match crate::supervise::clear_hold_file(&hold) {
                Ok(()) => {
                    println!(
                        "The agent is not running ({}); the stop is lifted: the agent starts the serving release when it starts.",
                        socket.display()
                    );
                    Ok(EXIT_OK)
                }
                Err(error) => {
                    eprintln!(
                        "hostmanager start: cannot remove {}: {error}",
                        hold.display()
                    );
                    Ok(EXIT_FAILED)
                }
            }
        }
        Err(other) => Err(other),
    }
}
