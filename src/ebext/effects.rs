//! What a bundle's option settings mean on this host, beyond the values themselves: the
//! ones that cannot apply here (refused), the ones that are recorded but change nothing on
//! a host (warned, so no one believes they did), and the infrastructure ones (one note). Pure.

use std::collections::BTreeMap;

use super::options::{NamespaceKind, OptionSetting, classify};
use super::settings::health_check_path;

/// What the host is, as far as the settings care.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostFacts {
    pub proxy_enabled: bool,
    /// `[logs.publish]` is on with a destination.
    pub publishing: bool,
    pub controller: bool,
    /// `[worker] queue_url` is set: the host runs the SQS daemon.
    pub worker: bool,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// Each fails the deployment.
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
    pub notes: Vec<String>,
}

pub fn effects(settings: &[OptionSetting], facts: HostFacts) -> Effects {
    let mut out = Effects::default();
    let mut infrastructure: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut controller: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for s in settings {
        let at = format!("{}: {}:{} = {:?}", s.file, s.namespace, s.option, s.value);
        let value = s.value.as_str();
        match classify(&s.namespace) {
            NamespaceKind::Infrastructure => {
                infrastructure
                    .entry(&s.namespace)
                    .or_default()
                    .push(&s.option);
                continue;
            }
            NamespaceKind::Controller(_) => {
                controller.entry(&s.namespace).or_default().push(&s.option);
                continue;
            }
            _ => {}
        }
        match (s.namespace.as_str(), s.option.as_str()) {
            ("aws:elasticbeanstalk:environment:proxy", "ProxyServer") => match value {
                "nginx" if facts.proxy_enabled => {}
                "none" if !facts.proxy_enabled => {}
                "nginx" => out.problems.push(format!("{at}: this host runs without a proxy (proxy.enabled = false in agent.toml); the bundle cannot switch nginx on")),
                "none" => out.problems.push(format!("{at}: this host serves through nginx (proxy.enabled in agent.toml); the bundle cannot switch it off")),
                "apache" => out.problems.push(format!("{at}: Apache httpd is not supported: hostmanager's proxy is nginx (remove the setting or set nginx)")),
                _ => out.problems.push(format!("{at}: ProxyServer is nginx, apache or none")),
            },
            ("aws:elasticbeanstalk:application", "Application Healthcheck URL") => {
                match health_check_path(value) {
                    Ok(Some(_)) => {}
                    Ok(None) => out.notes.push(format!("{at}: a TCP check: the agent keeps probing health.path of agent.toml")),
                    Err(problem) => out.problems.push(format!("{}: {problem}", s.file)),
                }
            }
            ("aws:elasticbeanstalk:environment:proxy:staticfiles" | "aws:elasticbeanstalk:container:python:staticfiles", url) => {
                if let Some(problem) = hostmanager_protocol::static_mapping_problem(url, value) {
                    out.problems.push(format!("{at}: {problem}"));
                }
            }
            ("aws:elasticbeanstalk:hostmanager", "LogPublicationControl") => match value {
                "true" if !facts.publishing => out.warnings.push(format!("{at}: not applied: publishing logs needs a destination in [logs.publish] of agent.toml (the bucket is the host's, not the bundle's)")),
                "true" | "false" => {}
                _ => out.problems.push(format!("{at}: must be true or false")),
            },
            ("aws:elasticbeanstalk:cloudwatch:logs", option) => match (option, value) {
                ("StreamLogs", "true") => out.warnings.push(format!("{at}: not applied: this agent does not stream logs to CloudWatch Logs (rotated logs are published with [logs.publish])")),
                ("StreamLogs" | "DeleteOnTerminate", "true" | "false") => {}
                ("RetentionInDays", days) if RETENTION_DAYS.contains(&days) => {}
                ("RetentionInDays", _) => out.problems.push(format!("{at}: RetentionInDays is one of {}", RETENTION_DAYS.join(", "))),
                _ => out.problems.push(format!("{at}: must be true or false")),
            },
            ("aws:elasticbeanstalk:healthreporting:system", option) => match (option, value) {
                ("SystemType", "basic" | "enhanced") => {}
                ("SystemType", _) => out.problems.push(format!("{at}: SystemType is basic or enhanced")),
                ("HealthCheckSuccessThreshold", "Ok" | "Warning" | "Degraded" | "Severe") => {}
                ("HealthCheckSuccessThreshold", _) => out.problems.push(format!("{at}: one of Ok, Warning, Degraded, Severe")),
                ("EnhancedHealthAuthEnabled", "true" | "false") => {}
                ("EnhancedHealthAuthEnabled", _) => out.problems.push(format!("{at}: must be true or false")),
                ("ConfigDocument", document) => match serde_json::from_str::<serde_json::Value>(document) {
                    Ok(serde_json::Value::Object(_)) => out.warnings.push(format!("{}: {}:ConfigDocument is recorded but not applied on the host: its health rules are the agent's [health.thresholds] and its metrics [cloudwatch] in agent.toml", s.file, s.namespace)),
                    _ => out.problems.push(format!("{}: {}:ConfigDocument must be a JSON object", s.file, s.namespace)),
                },
                _ => {}
            },
            ("aws:elasticbeanstalk:sqsd", option) => {
                if let Some(numeric) = crate::worker::numeric_option(option) {
                    match value.trim().parse::<u64>() {
                        Ok(n) if (numeric.low..=numeric.high).contains(&n) => {}
                        _ => out.problems.push(format!("{at}: {option} is a whole number from {} to {}", numeric.low, numeric.high)),
                    }
                } else if let Some((key, _, _)) = crate::config::TEXT.iter().find(|(_, o, _)| *o == option) {
                    if let Some(problem) = crate::config::text_problem(key, value) {
                        out.problems.push(format!("{at}: {problem}"));
                    }
                } else {
                    out.warnings.push(format!("{at}: not an option of the SQS daemon (ignored)"));
                }
            }
            ("aws:elasticbeanstalk:xray", "XRayEnabled") => match value {
                "true" => out.warnings.push(format!("{at}: not applied: hostmanager does not run the X-Ray daemon")),
                "false" => {}
                _ => out.problems.push(format!("{at}: must be true or false")),
            },
            _ => {}
        }
    }
    if !facts.worker
        && settings
            .iter()
            .any(|s| s.namespace == "aws:elasticbeanstalk:sqsd")
    {
        out.warnings.push("aws:elasticbeanstalk:sqsd settings ignored: this host is a web server (no [worker] queue_url in agent.toml); the tier is the host's, not the bundle's".to_string());
    }
    if !infrastructure.is_empty() {
        out.notes.push(format!(
            "option settings that apply to the environment's AWS resources, not to this host (not applied): {}",
            listing(&infrastructure)
        ));
    }
    if !controller.is_empty() {
        let why = if facts.controller {
            "set them on the environment through the controller (hostmanager-controller env update --option …), which does not read them from bundles"
        } else {
            "they shape a controller's fleet deployments; a host deploying alone has nothing to apply them to"
        };
        out.notes.push(format!(
            "fleet deployment settings not applied by the host: {}: {why}",
            listing(&controller)
        ));
    }
    out
}

const RETENTION_DAYS: &[&str] = &[
    "1", "3", "5", "7", "14", "30", "60", "90", "120", "150", "180", "365", "400", "545", "731",
    "1827", "3653",
];

fn listing(by_namespace: &BTreeMap<&str, Vec<&str>>) -> String {
    by_namespace
        .iter()
        .map(|(namespace, options)| format!("{namespace} ({})", options.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting(namespace: &str, option: &str, value: &str) -> OptionSetting {
        OptionSetting {
            namespace: namespace.into(),
            option: option.into(),
            value: value.into(),
            file: ".ebextensions/01.config".into(),
        }
    }

    #[test]
    fn refusals_warnings_and_one_note_for_the_infrastructure() {
        let facts = HostFacts {
            proxy_enabled: true,
            publishing: false,
            controller: false,
            worker: false,
        };
        let out = effects(
            &[
                setting(
                    "aws:elasticbeanstalk:environment:proxy",
                    "ProxyServer",
                    "apache",
                ),
                setting(
                    "aws:elasticbeanstalk:application",
                    "Application Healthcheck URL",
                    "UDP:1",
                ),
                setting("aws:elasticbeanstalk:cloudwatch:logs", "StreamLogs", "true"),
                setting(
                    "aws:elasticbeanstalk:hostmanager",
                    "LogPublicationControl",
                    "true",
                ),
                setting("aws:elasticbeanstalk:sqsd", "HttpConnections", "500"),
                setting("aws:autoscaling:asg", "MinSize", "2"),
                setting("aws:autoscaling:asg", "MaxSize", "4"),
                setting("aws:ec2:instances", "InstanceTypes", "t3.micro"),
                setting(
                    "aws:elasticbeanstalk:command",
                    "DeploymentPolicy",
                    "Rolling",
                ),
            ],
            facts,
        );
        assert_eq!(out.problems.len(), 3, "{:?}", out.problems);
        assert!(out.problems[0].contains("Apache httpd is not supported"));
        assert!(out.problems[2].contains("HttpConnections is a whole number from 1 to 100"));
        assert_eq!(out.warnings.len(), 3, "{:?}", out.warnings);
        assert_eq!(
            out.notes[0],
            "option settings that apply to the environment's AWS resources, not to this host (not applied): aws:autoscaling:asg (MinSize, MaxSize); aws:ec2:instances (InstanceTypes)"
        );
        assert!(out.notes[1].contains("aws:elasticbeanstalk:command (DeploymentPolicy)"));
    }

    #[test]
    fn a_worker_host_checks_the_daemons_options_and_a_web_server_ignores_them() {
        let sqsd = [
            setting("aws:elasticbeanstalk:sqsd", "WorkerQueueURL", "not a url"),
            setting("aws:elasticbeanstalk:sqsd", "VisibilityTimeout", "60"),
            setting("aws:elasticbeanstalk:sqsd", "Colour", "blue"),
        ];
        let worker = HostFacts {
            worker: true,
            ..HostFacts::default()
        };
        let out = effects(&sqsd, worker);
        assert_eq!(out.problems.len(), 1, "{:?}", out.problems);
        assert!(
            out.problems[0].contains("is not an SQS queue URL"),
            "{:?}",
            out.problems
        );
        assert_eq!(out.warnings.len(), 1, "{:?}", out.warnings);
        assert!(out.warnings[0].contains("Colour"), "{:?}", out.warnings);
        let out = effects(&sqsd[1..2], HostFacts::default());
        assert!(
            out.warnings[0].contains("this host is a web server"),
            "{:?}",
            out.warnings
        );
    }
}
