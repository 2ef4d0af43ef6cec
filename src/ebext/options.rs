//! `option_settings`: both of Elastic Beanstalk's forms (a list of `namespace`/`option_name`/
//! `value` maps, or `namespace: {option: value}`), the default namespace, and what each
//! namespace means on a host: modelled (its options checked by name), infrastructure (the
//! environment's AWS resources, listed once as not applying here), or unknown (refused in
//! EB's words). Pure.

use serde_json::Value;

use super::functions::Resolver;
use super::parse::kind;

/// Environment properties; the namespace of a list entry that names none.
pub const ENVIRONMENT: &str = "aws:elasticbeanstalk:application:environment";

/// One option as a configuration file sets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionSetting {
    pub namespace: String,
    pub option: String,
    pub value: String,
    /// The configuration file (`.ebextensions/01.config`).
    pub file: String,
}

impl OptionSetting {
    pub fn key(&self) -> String {
        format!("{}:{}", self.namespace, self.option)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamespaceKind {
    /// Read on the host; these options exist (empty: any name, e.g. properties, URL paths).
    Host(&'static [&'static str]),
    /// Read by a controller's fleet deployment; nothing on a standalone host.
    Controller(&'static [&'static str]),
    /// The environment's AWS resources: no meaning on a host.
    Infrastructure,
    Unknown,
}

const SQSD: &[&str] = &[
    "WorkerQueueURL",
    "HttpPath",
    "MimeType",
    "HttpConnections",
    "ConnectTimeout",
    "InactivityTimeout",
    "VisibilityTimeout",
    "ErrorVisibilityTimeout",
    "RetentionPeriod",
    "MaxRetries",
];

/// Which kind `namespace` is.
pub fn classify(namespace: &str) -> NamespaceKind {
    use NamespaceKind::*;
    match namespace {
        ENVIRONMENT
        | "aws:elasticbeanstalk:environment:proxy:staticfiles"
        | "aws:elasticbeanstalk:container:python:staticfiles"
        | "aws:elasticbeanstalk:customoption" => Host(&[]),
        "aws:elasticbeanstalk:application" => Host(&["Application Healthcheck URL"]),
        "aws:elasticbeanstalk:environment:proxy" => Host(&["ProxyServer"]),
        "aws:elasticbeanstalk:container:python" => {
            Host(&["WSGIPath", "NumProcesses", "NumThreads"])
        }
        "hostmanager:platform" => Host(&["Name", "JvmOptions", "NpmUseProduction"]),
        "aws:elasticbeanstalk:healthreporting:system" => Host(&[
            "SystemType",
            "ConfigDocument",
            "EnhancedHealthAuthEnabled",
            "HealthCheckSuccessThreshold",
        ]),
        "aws:elasticbeanstalk:cloudwatch:logs" => {
            Host(&["StreamLogs", "DeleteOnTerminate", "RetentionInDays"])
        }
        "aws:elasticbeanstalk:hostmanager" => Host(&["LogPublicationControl"]),
        "aws:elasticbeanstalk:sqsd" => Host(SQSD),
        "aws:elasticbeanstalk:xray" => Host(&["XRayEnabled"]),
        "aws:elasticbeanstalk:command" => Controller(&[
            "DeploymentPolicy",
            "BatchSizeType",
            "BatchSize",
            "Timeout",
            "IgnoreHealthCheck",
        ]),
        "aws:elasticbeanstalk:trafficsplitting" => {
            Controller(&["NewVersionPercent", "EvaluationTime"])
        }
        "aws:elasticbeanstalk:environment"
        | "aws:elasticbeanstalk:monitoring"
        | "aws:elasticbeanstalk:sns:topics"
        | "aws:elasticbeanstalk:cloudwatch:logs:health"
        | "aws:elasticbeanstalk:managedactions"
        | "aws:elasticbeanstalk:managedactions:platformupdate"
        | "aws:elasticbeanstalk:environment:proxy:apache"
        | "aws:cloudformation:template:parameter" => Infrastructure,
        _ if [
            "aws:autoscaling:",
            "aws:ec2:",
            "aws:elb:",
            "aws:elbv2:",
            "aws:rds:",
            "aws:elasticbeanstalk:environment:process:",
        ]
        .iter()
        .any(|prefix| namespace.starts_with(prefix)) =>
        {
            Infrastructure
        }
        _ => Unknown,
    }
}

/// EB's text for an option it does not know.
pub fn unknown_option(namespace: &str, option: &str) -> String {
    format!(
        "Invalid option specification (Namespace: '{namespace}', OptionName: '{option}'): Unknown configuration setting."
    )
}

/// The options of one file's `option_settings`, functions resolved, each checked against its
/// namespace: the valid ones, and every problem with the others.
pub fn option_settings(
    file: &str,
    value: &Value,
    resolver: &Resolver,
) -> (Vec<OptionSetting>, Vec<String>) {
    let mut raw = Vec::new();
    let mut problems = Vec::new();
    match value {
        Value::Array(entries) => {
            for (i, entry) in entries.iter().enumerate() {
                let Value::Object(entry) = entry else {
                    problems.push(format!(
                        "Each option setting in configuration file {file} must be a map (entry {} is {})",
                        i + 1,
                        kind(entry)
                    ));
                    continue;
                };
                let text = |key: &str| entry.get(key).and_then(Value::as_str);
                let namespace = text("namespace").unwrap_or(ENVIRONMENT);
                match (text("option_name"), entry.get("value")) {
                    (Some(option), Some(value)) => {
                        raw.push((namespace.to_string(), option.to_string(), value.clone()));
                    }
                    (Some(option), None) => {
                        raw.push((namespace.to_string(), option.to_string(), Value::Null));
                    }
                    (None, _) => problems.push(format!(
                        "{file}: option_settings entry {} has no option_name",
                        i + 1
                    )),
                }
            }
        }
        Value::Object(namespaces) => {
            for (namespace, options) in namespaces {
                let Value::Object(options) = options else {
                    problems.push(format!(
                        "{file}: option_settings.{namespace} must be a map of option: value (it is {})",
                        kind(options)
                    ));
                    continue;
                };
                for (option, value) in options {
                    raw.push((namespace.clone(), option.clone(), value.clone()));
                }
            }
        }
        Value::Null => {}
        other => problems.push(format!(
            "{file}: option_settings must be a list or a map (it is {})",
            kind(other)
        )),
    }
    let mut settings = Vec::new();
    for (namespace, option, value) in raw {
        let at = format!("{file}: option_settings {namespace}:{option}");
        if let NamespaceKind::Host(names) | NamespaceKind::Controller(names) = classify(&namespace)
            && !names.is_empty()
            && !names.contains(&option.as_str())
        {
            problems.push(unknown_option(&namespace, &option));
            continue;
        }
        if classify(&namespace) == NamespaceKind::Unknown {
            problems.push(unknown_option(&namespace, &option));
            continue;
        }
        match resolver
            .resolve(&value, &at)
            .and_then(|v| scalar_text(&v, &at))
        {
            Ok(value) => settings.push(OptionSetting {
                namespace,
                option,
                value,
                file: file.to_string(),
            }),
            Err(problem) => problems.push(problem),
        }
    }
    (settings, problems)
}

/// Option values are strings: numbers and booleans are written as text, as EB stores them.
fn scalar_text(value: &Value, at: &str) -> Result<String, String> {
    match value {
        Value::String(text) => Ok(text.clone()),
        Value::Number(number) => Ok(number.to_string()),
        Value::Bool(flag) => Ok(flag.to_string()),
        Value::Null => Ok(String::new()),
        other => Err(format!(
            "{at}: the value must be a string, number or boolean (it is {})",
            kind(other)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings(value: Value) -> Result<Vec<OptionSetting>, Vec<String>> {
        let (settings, problems) =
            option_settings(".ebextensions/01.config", &value, &Resolver::default());
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(problems)
        }
    }

    #[test]
    fn both_forms_and_the_default_namespace_give_the_same_settings() {
        let list = settings(json!([
            {"option_name": "DEBUG", "value": false},
            {"namespace": "aws:elasticbeanstalk:application", "option_name": "Application Healthcheck URL", "value": "/health"},
            {"namespace": "aws:elasticbeanstalk:container:python", "option_name": "NumThreads", "value": 4},
        ]))
        .expect("valid");
        let map = settings(json!({
            "aws:elasticbeanstalk:application:environment": {"DEBUG": false},
            "aws:elasticbeanstalk:application": {"Application Healthcheck URL": "/health"},
            "aws:elasticbeanstalk:container:python": {"NumThreads": 4},
        }))
        .expect("valid");
        let keys = |s: &[OptionSetting]| {
            let mut k: Vec<_> = s.iter().map(|s| (s.key(), s.value.clone())).collect();
            k.sort();
            k
        };
        assert_eq!(keys(&list), keys(&map));
        assert!(keys(&list).contains(&(format!("{ENVIRONMENT}:DEBUG"), "false".to_string())));
        assert!(keys(&list).contains(&(
            "aws:elasticbeanstalk:container:python:NumThreads".to_string(),
            "4".to_string()
        )));
    }

    #[test]
    fn unknown_options_and_namespaces_are_refused_in_ebs_words_every_one_at_once() {
        let problems = settings(json!([
            {"namespace": "aws:elasticbeanstalk:container:nodejs", "option_name": "NodeCommand", "value": "npm start"},
            {"namespace": "aws:elasticbeanstalk:application", "option_name": "HealthcheckURL", "value": "/"},
            "DEBUG=1",
            {"namespace": "aws:autoscaling:asg", "option_name": "MinSize", "value": 2},
            {"option_name": "X", "value": {"a": 1}},
        ]))
        .expect_err("refused");
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert_eq!(
            problems[0],
            "Each option setting in configuration file .ebextensions/01.config must be a map (entry 3 is a string)"
        );
        assert!(problems.contains(&"Invalid option specification (Namespace: 'aws:elasticbeanstalk:container:nodejs', OptionName: 'NodeCommand'): Unknown configuration setting.".to_string()));
        assert!(problems.contains(&unknown_option(
            "aws:elasticbeanstalk:application",
            "HealthcheckURL"
        )));
        assert!(problems.iter().any(|p| p.ends_with("the value must be a string, number or boolean (it is a map)")));
        assert_eq!(
            classify("aws:autoscaling:asg"),
            NamespaceKind::Infrastructure
        );
        assert_eq!(
            classify("aws:elbv2:listener:443"),
            NamespaceKind::Infrastructure
        );
    }
}
