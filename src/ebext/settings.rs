//! The settings a release runs with, layer by layer: the host's (`agent.toml` and defaults,
//! in Elastic Beanstalk's namespaces) < the bundle's `.ebextensions` (a later file wins) <
//! the deployment's (`--env`, a controller's options). Computed once at deploy time and kept
//! with the release, so a rollback brings back its settings. Property values are secrets:
//! only their names and origins are kept here. Pure.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::options::{ENVIRONMENT, OptionSetting};
use crate::config::{Config, default_config};

pub const HEALTHCHECK_URL: &str = "aws:elasticbeanstalk:application:Application Healthcheck URL";
pub const PROXY_SERVER: &str = "aws:elasticbeanstalk:environment:proxy:ProxyServer";
pub const LOG_PUBLICATION: &str = "aws:elasticbeanstalk:hostmanager:LogPublicationControl";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setting {
    pub value: String,
    /// `default`, `agent.toml`, the configuration file (`.ebextensions/01.config`), or the
    /// deployment's origin (`deployment request`, `controller`, `hostmanager configure`).
    pub origin: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseSettings {
    /// `namespace:option` → value and origin (environment properties are not in here).
    pub options: BTreeMap<String, Setting>,
    /// Environment property name → origin (the values are in the release's 0600 file).
    pub properties: BTreeMap<String, String>,
    /// Whether this host ran the leader-only container commands.
    #[serde(default)]
    pub command_leader: bool,
    /// The release's `cron.yaml`, checked at deploy time (a worker host's only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub periodic_tasks: Vec<crate::worker::cron::PeriodicTask>,
}

impl ReleaseSettings {
    /// `key` set from `origin`, over what a lower layer set.
    pub fn set(&mut self, key: String, value: String, origin: &str) {
        self.options.insert(
            key,
            Setting {
                value,
                origin: origin.to_string(),
            },
        );
    }

    pub fn value(&self, key: &str) -> Option<&str> {
        self.options.get(key).map(|s| s.value.as_str())
    }

    /// The `.ebextensions` settings over this (properties by name only).
    pub fn apply_bundle(&mut self, settings: &[OptionSetting]) {
        for setting in settings {
            if setting.namespace == ENVIRONMENT {
                self.properties
                    .insert(setting.option.clone(), setting.file.clone());
            } else {
                self.set(setting.key(), setting.value.clone(), &setting.file);
            }
        }
    }

    /// The path the health checks probe, when a layer above the host's sets one: from
    /// `Application Healthcheck URL` (`/path`, `HTTP:port/path`, `HTTPS:port/path`); `TCP:port`
    /// checks no path, so the host's path stays.
    pub fn health_path(&self) -> Option<String> {
        let setting = self.options.get(HEALTHCHECK_URL)?;
        if setting.origin == "default" || setting.origin == "agent.toml" {
            return None;
        }
        health_check_path(&setting.value).ok().flatten()
    }
}

/// The path of an `Application Healthcheck URL`, `None` for a TCP check; `Err` says why the
/// value is not one.
pub fn health_check_path(url: &str) -> Result<Option<String>, String> {
    let url = url.trim();
    if url.is_empty() {
        return Ok(None);
    }
    if url.starts_with('/') {
        return valid_path(url).map(Some);
    }
    let (scheme, rest) = url.split_once(':').unwrap_or((url, ""));
    let (port, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, ""),
    };
    if port.parse::<u16>().is_err() {
        return Err(format!(
            "{url:?} is not a health check URL (/path, HTTP:port/path, HTTPS:port/path or TCP:port)"
        ));
    }
    match scheme.to_ascii_uppercase().as_str() {
        "TCP" => Ok(None),
        "HTTP" | "HTTPS" if path.is_empty() => Ok(Some("/".to_string())),
        "HTTP" | "HTTPS" => valid_path(path).map(Some),
        _ => Err(format!(
            "{url:?} is not a health check URL (/path, HTTP:port/path, HTTPS:port/path or TCP:port)"
        )),
    }
}

fn valid_path(path: &str) -> Result<String, String> {
    if path
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == ';')
    {
        return Err(format!("{path:?} is not a URL path"));
    }
    Ok(path.to_string())
}

/// The host's layer: what `agent.toml` (or its defaults) says in Elastic Beanstalk's
/// namespaces, each with whether the file set it.
pub fn host_layer(config: &Config) -> ReleaseSettings {
    let defaults = default_config();
    let mut layer = ReleaseSettings::default();
    let origin = |same: bool| if same { "default" } else { "agent.toml" };
    layer.set(
        HEALTHCHECK_URL.to_string(),
        config.health.path.clone(),
        origin(config.health.path == defaults.health.path),
    );
    let proxy = if config.proxy.enabled {
        "nginx"
    } else {
        "none"
    };
    layer.set(
        PROXY_SERVER.to_string(),
        proxy.to_string(),
        origin(config.proxy.enabled == defaults.proxy.enabled),
    );
    let publish = &config.logs.publish;
    let publishing = publish.enabled && publish.destination.is_some();
    layer.set(
        LOG_PUBLICATION.to_string(),
        publishing.to_string(),
        origin(!publishing),
    );
    let platform = &config.platform;
    let python = &platform.python;
    let same_python = python == &defaults.platform.python;
    for (option, value) in [
        ("WSGIPath", python.wsgi_path.clone()),
        ("NumProcesses", python.processes.to_string()),
        ("NumThreads", python.threads.to_string()),
    ] {
        layer.set(
            format!("aws:elasticbeanstalk:container:python:{option}"),
            value,
            origin(same_python),
        );
    }
    for (url, dir) in &platform.static_files {
        layer.set(
            format!("aws:elasticbeanstalk:environment:proxy:staticfiles:{url}"),
            dir.clone(),
            "agent.toml",
        );
    }
    if let Some(sqsd) = &config.worker.sqsd {
        let defaults = crate::config::NUMERIC;
        for (option, value) in sqsd.options() {
            let same = match defaults.iter().find(|o| o.option == option) {
                Some(numeric) => value == numeric.default.to_string(),
                None => crate::config::TEXT
                    .iter()
                    .any(|(_, o, default)| *o == option && *default == value),
            };
            layer.set(
                format!("{}:{option}", crate::config::SQSD_NAMESPACE),
                value,
                origin(same),
            );
        }
    }
    let name = match platform.name {
        crate::config::PlatformChoice::Auto => "auto".to_string(),
        crate::config::PlatformChoice::Fixed(name) => name.to_string(),
    };
    layer.set(
        "hostmanager:platform:Name".to_string(),
        name,
        origin(platform.name == defaults.platform.name),
    );
    layer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_check_urls_give_their_path_and_tcp_none() {
        assert_eq!(health_check_path("/health"), Ok(Some("/health".into())));
        assert_eq!(
            health_check_path("HTTP:80/up?x=1"),
            Ok(Some("/up?x=1".into()))
        );
        assert_eq!(health_check_path("HTTPS:443"), Ok(Some("/".into())));
        assert_eq!(health_check_path("TCP:80"), Ok(None));
        assert!(health_check_path("UDP:80/x").is_err());
        assert!(health_check_path("HTTP:x/").is_err());
        assert!(health_check_path("/a b").is_err());
    }

    #[test]
    fn the_bundles_layer_is_over_the_hosts_and_only_it_changes_the_health_path() {
        let mut settings = host_layer(&default_config());
        assert_eq!(settings.options[HEALTHCHECK_URL].origin, "default");
        assert_eq!(
            settings.health_path(),
            None,
            "the host's own path is the config's"
        );
        settings.apply_bundle(&[
            OptionSetting {
                namespace: "aws:elasticbeanstalk:application".into(),
                option: "Application Healthcheck URL".into(),
                value: "HTTP:80/health".into(),
                file: ".ebextensions/01.config".into(),
            },
            OptionSetting {
                namespace: ENVIRONMENT.into(),
                option: "SECRET".into(),
                value: "hunter2".into(),
                file: ".ebextensions/02.config".into(),
            },
        ]);
        assert_eq!(settings.health_path().as_deref(), Some("/health"));
        assert_eq!(
            settings.options[HEALTHCHECK_URL].origin,
            ".ebextensions/01.config"
        );
        assert_eq!(settings.properties["SECRET"], ".ebextensions/02.config");
        let shown = serde_json::to_string(&settings).expect("json");
        assert!(
            !shown.contains("hunter2"),
            "property values are never in the settings"
        );
    }
}
