//! `hostmanager config [--effective]` and `hostmanager get-config`: a release's settings
//! with their origins, and Elastic Beanstalk's get-config for hooks and scripts. get-config
//! reads the deployment's own 0600 files (it works in a hook while the deployment runs, and
//! without an agent); the answer's shape is pure (`answer`).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::commands::{EXIT_CONFIG, EXIT_FAILED, EXIT_OK};
use super::{Cli, GetConfigKind};
use crate::config::{self, Config};
use crate::ebext::ReleaseSettings;
use crate::local_api::{ControlClient, StatusReport};
use crate::paths::Paths;

pub async fn show(
    cli: &Cli,
    paths: &Paths,
    client: &ControlClient,
    effective: bool,
    json: bool,
) -> i32 {
    let config = match load_config(cli) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let (settings, note) = if effective {
        match client.get::<StatusReport>("/v1/status").await {
            Ok(report) => match report.release.and_then(|r| r.settings) {
                Some(settings) => (settings, None),
                None => (
                    crate::ebext::host_layer(&config),
                    Some("no release with recorded settings serves: the host's settings"),
                ),
            },
            Err(error) => {
                eprintln!(
                    "hostmanager: the agent is not answering on {}: {error}",
                    paths.control_socket().display()
                );
                return EXIT_FAILED;
            }
        }
    } else {
        (crate::ebext::host_layer(&config), None)
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&settings).unwrap_or_default()
        );
    } else {
        if let Some(note) = note {
            println!("({note})");
        }
        print!("{}", render(&settings));
    }
    EXIT_OK
}

/// One line a setting: `namespace:option = value  (origin)`; properties by name only.
pub fn render(settings: &ReleaseSettings) -> String {
    let mut out = String::new();
    for (key, setting) in &settings.options {
        out.push_str(&format!(
            "{key} = {}  ({})\n",
            setting.value, setting.origin
        ));
    }
    for (name, origin) in &settings.properties {
        out.push_str(&format!(
            "{}:{name} = (hidden)  ({origin})\n",
            crate::ebext::ENVIRONMENT
        ));
    }
    out.push_str(&format!("command leader: {}\n", settings.command_leader));
    for task in &settings.periodic_tasks {
        out.push_str(&format!(
            "periodic task {}: {:?} → {}  (cron.yaml)\n",
            task.name, task.schedule, task.url
        ));
    }
    out
}

pub fn get_config(
    cli: &Cli,
    paths: &Paths,
    kind: GetConfigKind,
    key: Option<&str>,
    namespace: Option<&str>,
    option: Option<&str>,
) -> i32 {
    let config = match load_config(cli) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let facts = match read_facts(paths, &config) {
        Ok(facts) => facts,
        Err(error) => {
            eprintln!("get-config: {error}");
            return EXIT_FAILED;
        }
    };
    match answer(&facts, kind, key, namespace, option) {
        Ok(text) => {
            println!("{text}");
            EXIT_OK
        }
        Err(error) => {
            eprintln!("get-config: {error}");
            EXIT_FAILED
        }
    }
}

/// What get-config answers from.
pub struct Facts {
    pub env: BTreeMap<String, String>,
    pub settings: ReleaseSettings,
    pub container: BTreeMap<String, String>,
}

fn read_facts(paths: &Paths, config: &Config) -> Result<Facts, String> {
    // In a hook (or a command it runs): the deployment running it; else the serving release.
    let id = match std::env::var("HOSTMANAGER_DEPLOYMENT_ID")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        Some(id) => id,
        None => {
            let state: Option<crate::deploy::AgentState> =
                crate::fsutil::read_json(&paths.state_file())
                    .map_err(|e| format!("{}: {e}", paths.state_file().display()))?;
            state
                .and_then(|s| s.current)
                .map(|c| c.deployment_id)
                .ok_or("no release serves yet and this is not a deployment's hook")?
        }
    };
    let read = |path: std::path::PathBuf| -> Result<Option<Value>, String> {
        crate::fsutil::read_json(&path).map_err(|e| format!("{}: {e}", path.display()))
    };
    let env: BTreeMap<String, String> = read(crate::deploy::env_file(paths, id))?
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    let settings: ReleaseSettings = match read(crate::deploy::settings_file(paths, id))? {
        Some(value) => serde_json::from_value(value)
            .map_err(|e| format!("settings of deployment {id}: {e}"))?,
        None => crate::ebext::host_layer(config),
    };
    let proxy = settings
        .value(crate::ebext::PROXY_SERVER)
        .unwrap_or("nginx")
        .to_string();
    let container = BTreeMap::from([
        (
            "app_deploy_dir".to_string(),
            paths.current_link().display().to_string(),
        ),
        (
            "app_staging_dir".to_string(),
            paths.staging_link().display().to_string(),
        ),
        ("app_user".to_string(), config.app.user.clone()),
        (
            "environment_name".to_string(),
            config.environment.name.clone(),
        ),
        ("environment_id".to_string(), config.environment.id.clone()),
        ("proxy_server".to_string(), proxy),
    ]);
    Ok(Facts {
        env,
        settings,
        container,
    })
}

/// The text get-config prints.
pub fn answer(
    facts: &Facts,
    kind: GetConfigKind,
    key: Option<&str>,
    namespace: Option<&str>,
    option: Option<&str>,
) -> Result<String, String> {
    let one = |map: &BTreeMap<String, String>, what: &str| -> Result<String, String> {
        match key {
            Some(key) => map
                .get(key)
                .cloned()
                .ok_or_else(|| format!("no {what} {key:?}")),
            None => Ok(serde_json::to_string(map).unwrap_or_default()),
        }
    };
    match kind {
        GetConfigKind::Environment => one(&facts.env, "environment property"),
        GetConfigKind::Container => one(&facts.container, "container key"),
        GetConfigKind::Platformconfig => {
            let map = BTreeMap::from([
                ("AppUser".to_string(), facts.container["app_user"].clone()),
                (
                    "AppDeployDir".to_string(),
                    facts.container["app_deploy_dir"].clone(),
                ),
                (
                    "AppStagingDir".to_string(),
                    facts.container["app_staging_dir"].clone(),
                ),
                (
                    "ProxyServer".to_string(),
                    facts.container["proxy_server"].clone(),
                ),
                (
                    "EnvironmentName".to_string(),
                    facts.container["environment_name"].clone(),
                ),
            ]);
            one(&map, "platformconfig field")
        }
        GetConfigKind::Optionsettings => {
            let mut tree: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
            for (key, setting) in &facts.settings.options {
                if let Some((ns, opt)) = split_key(key) {
                    tree.entry(ns.to_string())
                        .or_default()
                        .insert(opt.to_string(), setting.value.clone());
                }
            }
            if !facts.env.is_empty() {
                tree.insert(crate::ebext::ENVIRONMENT.to_string(), facts.env.clone());
            }
            match (namespace, option) {
                (Some(ns), Some(opt)) => tree
                    .get(ns)
                    .and_then(|o| o.get(opt))
                    .cloned()
                    .ok_or_else(|| format!("option {ns}:{opt} is not set")),
                (Some(ns), None) => {
                    Ok(json!(tree.get(ns).cloned().unwrap_or_default()).to_string())
                }
                (None, Some(_)) => Err("--option needs --namespace".to_string()),
                (None, None) => Ok(json!(tree).to_string()),
            }
        }
    }
}

/// `namespace:option`: the option is after the last `:` except for static-file paths
/// (`…:staticfiles:/static`), whose option is the path.
fn split_key(key: &str) -> Option<(&str, &str)> {
    match key.find(":/") {
        Some(at) => Some((&key[..at], &key[at + 1..])),
        None => key.rsplit_once(':'),
    }
}

fn load_config(cli: &Cli) -> Result<Config, i32> {
    let (path, required) = cli.config_path();
    if !required && !path.exists() {
        return Ok(config::default_config());
    }
    config::load(&path, true).map_err(|error| {
        eprintln!("{error}");
        EXIT_CONFIG
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        let mut settings = ReleaseSettings::default();
        settings.set(
            "aws:elasticbeanstalk:application:Application Healthcheck URL".into(),
            "/health".into(),
            ".ebextensions/01.config",
        );
        settings.set(
            "aws:elasticbeanstalk:environment:proxy:staticfiles:/static".into(),
            "static".into(),
            "default",
        );
        Facts {
            env: BTreeMap::from([("DB".to_string(), "postgres://x".to_string())]),
            settings,
            container: BTreeMap::from([
                ("app_deploy_dir".to_string(), "/var/app/current".to_string()),
                (
                    "app_staging_dir".to_string(),
                    "/var/app/staging".to_string(),
                ),
                ("app_user".to_string(), "webapp".to_string()),
                ("environment_name".to_string(), "web".to_string()),
                ("proxy_server".to_string(), "nginx".to_string()),
            ]),
        }
    }

    #[test]
    fn get_config_answers_as_ebs_does() {
        let f = facts();
        assert_eq!(
            answer(&f, GetConfigKind::Environment, None, None, None).expect("answers"),
            r#"{"DB":"postgres://x"}"#
        );
        assert_eq!(
            answer(&f, GetConfigKind::Environment, Some("DB"), None, None).expect("answers"),
            "postgres://x"
        );
        assert!(answer(&f, GetConfigKind::Environment, Some("NOPE"), None, None).is_err());
        assert_eq!(
            answer(
                &f,
                GetConfigKind::Container,
                Some("app_deploy_dir"),
                None,
                None
            )
            .expect("answers"),
            "/var/app/current"
        );
        assert_eq!(
            answer(
                &f,
                GetConfigKind::Optionsettings,
                None,
                Some("aws:elasticbeanstalk:application"),
                Some("Application Healthcheck URL")
            )
            .expect("answers"),
            "/health"
        );
        let all: Value = serde_json::from_str(
            &answer(&f, GetConfigKind::Optionsettings, None, None, None).expect("answers"),
        )
        .expect("answers");
        assert_eq!(
            all["aws:elasticbeanstalk:environment:proxy:staticfiles"]["/static"],
            "static"
        );
        assert_eq!(
            all["aws:elasticbeanstalk:application:environment"]["DB"],
            "postgres://x"
        );
        assert_eq!(
            answer(
                &f,
                GetConfigKind::Platformconfig,
                Some("AppUser"),
                None,
                None
            )
            .expect("answers"),
            "webapp"
        );
    }
}
