//! Option settings in Elastic Beanstalk's namespaces, keyed `namespace:option`
//! ([`OptionSettings`]): parsing `--option` arguments, validation (every problem at once), and
//! typed views. Ranges and defaults are EB's (`command-options-general.md`, `docs/controller.md`
//! "Deployments"), except that this controller only runs `AllAtOnce` deployments so far.

use std::collections::BTreeMap;

use hostmanager_protocol::{MAX_ENV_BYTES, RESERVED_PREFIX, is_property_name};

use crate::health::Status;
use crate::model::OptionSettings;

pub const COMMAND: &str = "aws:elasticbeanstalk:command";
pub const APPLICATION_ENVIRONMENT: &str = "aws:elasticbeanstalk:application:environment";
pub const ENVIRONMENT: &str = "aws:elasticbeanstalk:environment";
pub const HEALTH_SYSTEM: &str = "aws:elasticbeanstalk:healthreporting:system";

/// EB's defaults.
pub const DEFAULT_TIMEOUT_S: u64 = 600;
pub const DEFAULT_BATCH_SIZE: u32 = 100;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionArgError {
    #[error("option {0:?}: expected namespace:option=value")]
    MissingEquals(String),
    #[error("option {0:?}: expected namespace:option (the option name follows the last ':')")]
    MissingNamespace(String),
}

/// Splits `aws:elasticbeanstalk:command:Timeout=600` into
/// (`aws:elasticbeanstalk:command:Timeout`, `600`). Namespaces contain colons: the option name
/// is what follows the last colon before the first `=`; the value may contain `=` and `:`.
pub fn parse_option_arg(arg: &str) -> Result<(String, String), OptionArgError> {
    let (key, value) = arg
        .split_once('=')
        .ok_or_else(|| OptionArgError::MissingEquals(arg.to_string()))?;
    match split_key(key) {
        Some(_) => Ok((key.to_string(), value.to_string())),
        None => Err(OptionArgError::MissingNamespace(arg.to_string())),
    }
}

/// (`namespace`, `option`) of a `namespace:option` key; `None` when either part is empty.
pub fn split_key(key: &str) -> Option<(&str, &str)> {
    key.rsplit_once(':')
        .filter(|(namespace, option)| !namespace.is_empty() && !option.is_empty())
}

/// `DeploymentPolicy` values EB knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeploymentPolicy {
    AllAtOnce,
    Rolling,
    RollingWithAdditionalBatch,
    Immutable,
    TrafficSplitting,
}

impl DeploymentPolicy {
    pub const ALL: [DeploymentPolicy; 5] = [
        Self::AllAtOnce,
        Self::Rolling,
        Self::RollingWithAdditionalBatch,
        Self::Immutable,
        Self::TrafficSplitting,
    ];

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|policy| policy.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AllAtOnce => "AllAtOnce",
            Self::Rolling => "Rolling",
            Self::RollingWithAdditionalBatch => "RollingWithAdditionalBatch",
            Self::Immutable => "Immutable",
            Self::TrafficSplitting => "TrafficSplitting",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BatchSizeType {
    Percentage,
    Fixed,
}

/// The typed view of `aws:elasticbeanstalk:command` (and the health threshold, which EB
/// documents under both that namespace and `…:healthreporting:system`). Values that do not
/// parse fall back to EB's defaults: [`validate`] refuses them before they are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandOptions {
    pub policy: DeploymentPolicy,
    pub timeout_s: u64,
    pub batch_size_type: BatchSizeType,
    pub batch_size: u32,
    pub ignore_health_check: bool,
    pub health_threshold: Status,
}

impl Default for CommandOptions {
    fn default() -> Self {
        Self {
            policy: DeploymentPolicy::AllAtOnce,
            timeout_s: DEFAULT_TIMEOUT_S,
            batch_size_type: BatchSizeType::Percentage,
            batch_size: DEFAULT_BATCH_SIZE,
            ignore_health_check: false,
            health_threshold: Status::Ok,
        }
    }
}

impl From<&OptionSettings> for CommandOptions {
    fn from(settings: &OptionSettings) -> Self {
        let get = |namespace: &str, option: &str| settings.get(&format!("{namespace}:{option}"));
        let mut options = Self::default();
        if let Some(policy) =
            get(COMMAND, "DeploymentPolicy").and_then(|v| DeploymentPolicy::parse(v))
        {
            options.policy = policy;
        }
        if let Some(timeout) = get(COMMAND, "Timeout").and_then(|v| v.parse().ok())
            && (1..=3600).contains(&timeout)
        {
            options.timeout_s = timeout;
        }
        if get(COMMAND, "BatchSizeType").map(String::as_str) == Some("Fixed") {
            options.batch_size_type = BatchSizeType::Fixed;
        }
        if let Some(size) = get(COMMAND, "BatchSize").and_then(|v| v.parse().ok())
            && size >= 1
        {
            options.batch_size = size;
        }
        options.ignore_health_check =
            get(COMMAND, "IgnoreHealthCheck").map(String::as_str) == Some("true");
        if let Some(threshold) = get(COMMAND, "HealthCheckSuccessThreshold")
            .or_else(|| get(HEALTH_SYSTEM, "HealthCheckSuccessThreshold"))
            .and_then(|v| threshold(v))
        {
            options.health_threshold = threshold;
        }
        options
    }
}

/// The application's environment properties (`aws:elasticbeanstalk:application:environment`).
pub fn properties(settings: &OptionSettings) -> BTreeMap<String, String> {
    settings
        .iter()
        .filter_map(|(key, value)| {
            let (namespace, name) = split_key(key)?;
            (namespace == APPLICATION_ENVIRONMENT).then(|| (name.to_string(), value.clone()))
        })
        .collect()
}

/// Every problem with `settings`, each naming its `namespace:option` and what is valid.
pub fn validate(settings: &OptionSettings) -> Vec<String> {
    let mut problems = Vec::new();
    let batch_type = settings
        .get(&format!("{COMMAND}:BatchSizeType"))
        .map(String::as_str);
    let mut property_bytes = 0;
    for (key, value) in settings {
        let Some((namespace, option)) = split_key(key) else {
            problems.push(format!(
                "{key}: expected namespace:option (for example {COMMAND}:Timeout)"
            ));
            continue;
        };
        match namespace {
            COMMAND => command_option(key, option, value, batch_type, &mut problems),
            HEALTH_SYSTEM => match option {
                "SystemType" if value != "enhanced" => problems.push(format!(
                    "{key}: {value:?} is not valid; only enhanced (health reporting is always enhanced)"
                )),
                "SystemType" => {}
                "HealthCheckSuccessThreshold" => threshold_option(key, value, &mut problems),
                _ => problems.push(unknown_option(key, "SystemType, HealthCheckSuccessThreshold")),
            },
            ENVIRONMENT => match option {
                "EnvironmentType" => {
                    if !matches!(value.as_str(), "LoadBalanced" | "SingleInstance") {
                        problems.push(format!(
                            "{key}: {value:?} is not valid; one of LoadBalanced, SingleInstance"
                        ));
                    }
                }
                _ => problems.push(unknown_option(key, "EnvironmentType")),
            },
            APPLICATION_ENVIRONMENT => {
                property_bytes += option.len() + value.len() + 2;
                property_option(key, option, value, &mut problems);
            }
            _ => problems.push(format!(
                "{key}: namespace {namespace} is not supported; supported: {COMMAND}, \
                 {APPLICATION_ENVIRONMENT}, {ENVIRONMENT}, {HEALTH_SYSTEM}"
            )),
        }
    }
    if property_bytes > MAX_ENV_BYTES {
        problems.push(format!(
            "{APPLICATION_ENVIRONMENT}: {property_bytes} bytes of properties in total, more than {MAX_ENV_BYTES}"
        ));
    }
    problems
}

fn unknown_option(key: &str, known: &str) -> String {
    format!("{key}: unknown option; the namespace's options are {known}")
}

fn command_option(
    key: &str,
    option: &str,
    value: &str,
    batch_type: Option<&str>,
    problems: &mut Vec<String>,
) {
    match option {
        "DeploymentPolicy" => match DeploymentPolicy::parse(value) {
            Some(DeploymentPolicy::AllAtOnce) => {}
            // EB-valid, but they need batches or new hosts this controller does not run yet:
            // refused rather than silently degraded.
            Some(other) => problems.push(format!(
                "{key}: {} is a valid Elastic Beanstalk policy, but this controller does not run it yet; use AllAtOnce",
                other.as_str()
            )),
            None => problems.push(format!(
                "{key}: {value:?} is not valid; one of AllAtOnce, Rolling, RollingWithAdditionalBatch, Immutable, TrafficSplitting"
            )),
        },
        "Timeout" => {
            if !value.parse::<u64>().is_ok_and(|s| (1..=3600).contains(&s)) {
                problems.push(format!("{key}: {value:?} is not valid; seconds from 1 to 3600"));
            }
        }
        "BatchSizeType" => {
            if !matches!(value, "Percentage" | "Fixed") {
                problems.push(format!("{key}: {value:?} is not valid; one of Percentage, Fixed"));
            }
        }
        "BatchSize" => {
            let size = value.parse::<u32>().ok();
            if batch_type == Some("Fixed") {
                if size.is_none_or(|s| s < 1) {
                    problems.push(format!(
                        "{key}: {value:?} is not valid; an instance count of at least 1 (BatchSizeType Fixed)"
                    ));
                }
            } else if !size.is_some_and(|s| (1..=100).contains(&s)) {
                problems.push(format!(
                    "{key}: {value:?} is not valid; a percentage from 1 to 100 (BatchSizeType Percentage)"
                ));
            }
        }
        "IgnoreHealthCheck" => {
            if !matches!(value, "true" | "false") {
                problems.push(format!("{key}: {value:?} is not valid; true or false"));
            }
        }
        "HealthCheckSuccessThreshold" => threshold_option(key, value, problems),
        _ => problems.push(unknown_option(
            key,
            "DeploymentPolicy, Timeout, BatchSizeType, BatchSize, IgnoreHealthCheck, HealthCheckSuccessThreshold",
        )),
    }
}

/// EB's `HealthCheckSuccessThreshold` values: Ok, Warning, Degraded, Severe.
fn threshold(value: &str) -> Option<Status> {
    match value {
        "Ok" => Some(Status::Ok),
        "Warning" => Some(Status::Warning),
        "Degraded" => Some(Status::Degraded),
        "Severe" => Some(Status::Severe),
        _ => None,
    }
}

fn threshold_option(key: &str, value: &str, problems: &mut Vec<String>) {
    if threshold(value).is_none() {
        problems.push(format!(
            "{key}: {value:?} is not valid; one of Ok, Warning, Degraded, Severe"
        ));
    }
}

fn property_option(key: &str, name: &str, value: &str, problems: &mut Vec<String>) {
    if !is_property_name(name) {
        problems.push(format!(
            "{key}: property names are letters, digits and '_', not starting with a digit"
        ));
    } else if name == "PORT" {
        problems.push(format!(
            "{key}: PORT is set by the agent (the port nginx proxies to)"
        ));
    } else if name.starts_with(RESERVED_PREFIX) {
        problems.push(format!(
            "{key}: names starting with {RESERVED_PREFIX} are reserved for the agent"
        ));
    }
    if value.contains('\0') {
        problems.push(format!("{key}: the value contains a NUL byte"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> OptionSettings {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn option_name_is_after_the_last_colon_before_equals() {
        let (key, value) = parse_option_arg("aws:elasticbeanstalk:command:Timeout=600")
            .expect("the test sets it up");
        assert_eq!(
            (key.as_str(), value.as_str()),
            ("aws:elasticbeanstalk:command:Timeout", "600")
        );
        assert_eq!(split_key(&key), Some((COMMAND, "Timeout")));
        let (key, value) =
            parse_option_arg("aws:elasticbeanstalk:application:environment:URL=a=b:c")
                .expect("the test sets it up");
        assert_eq!(split_key(&key), Some((APPLICATION_ENVIRONMENT, "URL")));
        assert_eq!(value, "a=b:c");
        assert!(matches!(
            parse_option_arg("Timeout=1"),
            Err(OptionArgError::MissingNamespace(_))
        ));
        assert!(matches!(
            parse_option_arg("a:b"),
            Err(OptionArgError::MissingEquals(_))
        ));
        assert!(parse_option_arg("a:=1").is_err());
    }

    #[test]
    fn valid_settings_have_no_problems() {
        let ok = settings(&[
            ("aws:elasticbeanstalk:command:DeploymentPolicy", "AllAtOnce"),
            ("aws:elasticbeanstalk:command:Timeout", "3600"),
            ("aws:elasticbeanstalk:command:BatchSizeType", "Percentage"),
            ("aws:elasticbeanstalk:command:BatchSize", "30"),
            ("aws:elasticbeanstalk:command:IgnoreHealthCheck", "false"),
            (
                "aws:elasticbeanstalk:command:HealthCheckSuccessThreshold",
                "Warning",
            ),
            (
                "aws:elasticbeanstalk:healthreporting:system:HealthCheckSuccessThreshold",
                "Ok",
            ),
            (
                "aws:elasticbeanstalk:healthreporting:system:SystemType",
                "enhanced",
            ),
            (
                "aws:elasticbeanstalk:environment:EnvironmentType",
                "SingleInstance",
            ),
            (
                "aws:elasticbeanstalk:application:environment:DB_URL",
                "postgres://x",
            ),
            ("aws:elasticbeanstalk:application:environment:_X1", ""),
        ]);
        assert_eq!(validate(&ok), Vec::<String>::new());
    }

    #[test]
    fn every_problem_is_reported_at_once_naming_its_option() {
        let bad = settings(&[
            ("aws:elasticbeanstalk:command:DeploymentPolicy", "Rolling"),
            ("aws:elasticbeanstalk:command:Timeout", "0"),
            ("aws:elasticbeanstalk:command:BatchSizeType", "Half"),
            ("aws:elasticbeanstalk:command:BatchSize", "101"),
            ("aws:elasticbeanstalk:command:IgnoreHealthCheck", "yes"),
            (
                "aws:elasticbeanstalk:command:HealthCheckSuccessThreshold",
                "Info",
            ),
            ("aws:elasticbeanstalk:command:Colour", "red"),
            (
                "aws:elasticbeanstalk:healthreporting:system:SystemType",
                "basic",
            ),
            (
                "aws:elasticbeanstalk:environment:EnvironmentType",
                "Cluster",
            ),
            ("aws:elasticbeanstalk:application:environment:1X", "a"),
            ("aws:elasticbeanstalk:application:environment:PORT", "80"),
            (
                "aws:elasticbeanstalk:application:environment:HOSTMANAGER_ROOT",
                "/",
            ),
            ("aws:autoscaling:asg:MaxSize", "4"),
        ]);
        let problems = validate(&bad);
        assert_eq!(problems.len(), 13, "{problems:#?}");
        let has = |needle: &str| problems.iter().any(|p| p.contains(needle));
        assert!(has(
            "DeploymentPolicy: Rolling is a valid Elastic Beanstalk policy, but this controller does not run it yet"
        ));
        assert!(has("Timeout: \"0\" is not valid; seconds from 1 to 3600"));
        assert!(has(
            "BatchSizeType: \"Half\" is not valid; one of Percentage, Fixed"
        ));
        assert!(has(
            "BatchSize: \"101\" is not valid; a percentage from 1 to 100"
        ));
        assert!(has(
            "IgnoreHealthCheck: \"yes\" is not valid; true or false"
        ));
        assert!(has(
            "HealthCheckSuccessThreshold: \"Info\" is not valid; one of Ok, Warning, Degraded, Severe"
        ));
        assert!(has("aws:elasticbeanstalk:command:Colour: unknown option"));
        assert!(has("SystemType: \"basic\" is not valid; only enhanced"));
        assert!(has(
            "EnvironmentType: \"Cluster\" is not valid; one of LoadBalanced, SingleInstance"
        ));
        assert!(has("environment:1X: property names are letters"));
        assert!(has("environment:PORT: PORT is set by the agent"));
        assert!(has(
            "HOSTMANAGER_ROOT: names starting with HOSTMANAGER_ are reserved"
        ));
        assert!(has(
            "aws:autoscaling:asg:MaxSize: namespace aws:autoscaling:asg is not supported"
        ));
    }

    #[test]
    fn every_other_policy_is_refused_as_not_yet_run() {
        for policy in DeploymentPolicy::ALL.into_iter().skip(1) {
            let problems = validate(&settings(&[(
                "aws:elasticbeanstalk:command:DeploymentPolicy",
                policy.as_str(),
            )]));
            assert_eq!(problems.len(), 1);
            assert!(problems[0].contains("does not run it yet"), "{problems:?}");
        }
        let problems = validate(&settings(&[(
            "aws:elasticbeanstalk:command:DeploymentPolicy",
            "Blue",
        )]));
        assert!(problems[0].contains("is not valid; one of AllAtOnce, Rolling"));
    }

    #[test]
    fn fixed_batch_size_is_a_count() {
        let fixed = settings(&[
            ("aws:elasticbeanstalk:command:BatchSizeType", "Fixed"),
            ("aws:elasticbeanstalk:command:BatchSize", "250"),
        ]);
        assert!(validate(&fixed).is_empty());
        let zero = settings(&[
            ("aws:elasticbeanstalk:command:BatchSizeType", "Fixed"),
            ("aws:elasticbeanstalk:command:BatchSize", "0"),
        ]);
        assert!(validate(&zero)[0].contains("at least 1 (BatchSizeType Fixed)"));
    }

    #[test]
    fn properties_are_limited_in_total_size() {
        let big = "x".repeat(40 * 1024);
        let mut two = OptionSettings::new();
        two.insert(format!("{APPLICATION_ENVIRONMENT}:A"), big.clone());
        two.insert(format!("{APPLICATION_ENVIRONMENT}:B"), big);
        let problems = validate(&two);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("more than 65536"), "{problems:?}");
    }

    #[test]
    fn typed_view_has_ebs_defaults() {
        let options = CommandOptions::from(&OptionSettings::new());
        assert_eq!(options, CommandOptions::default());
        assert_eq!(options.policy, DeploymentPolicy::AllAtOnce);
        assert_eq!(options.timeout_s, 600);
        assert!(!options.ignore_health_check);
        assert_eq!(options.health_threshold, Status::Ok);
        assert_eq!(options.batch_size_type, BatchSizeType::Percentage);
        assert_eq!(options.batch_size, 100);
    }

    #[test]
    fn typed_view_reads_settings_and_either_threshold_namespace() {
        let options = CommandOptions::from(&settings(&[
            ("aws:elasticbeanstalk:command:Timeout", "120"),
            ("aws:elasticbeanstalk:command:IgnoreHealthCheck", "true"),
            ("aws:elasticbeanstalk:command:BatchSizeType", "Fixed"),
            ("aws:elasticbeanstalk:command:BatchSize", "2"),
            (
                "aws:elasticbeanstalk:healthreporting:system:HealthCheckSuccessThreshold",
                "Warning",
            ),
        ]));
        assert_eq!(options.timeout_s, 120);
        assert!(options.ignore_health_check);
        assert_eq!(options.batch_size_type, BatchSizeType::Fixed);
        assert_eq!(options.batch_size, 2);
        assert_eq!(options.health_threshold, Status::Warning);
        // The command namespace wins when both are set.
        let both = CommandOptions::from(&settings(&[
            (
                "aws:elasticbeanstalk:command:HealthCheckSuccessThreshold",
                "Degraded",
            ),
            (
                "aws:elasticbeanstalk:healthreporting:system:HealthCheckSuccessThreshold",
                "Warning",
            ),
        ]));
        assert_eq!(both.health_threshold, Status::Degraded);
    }

    #[test]
    fn properties_are_the_application_environment_namespace() {
        let all = settings(&[
            (
                "aws:elasticbeanstalk:application:environment:DB_URL",
                "postgres://x",
            ),
            ("aws:elasticbeanstalk:command:Timeout", "60"),
        ]);
        let props = properties(&all);
        assert_eq!(props.len(), 1);
        assert_eq!(props["DB_URL"], "postgres://x");
    }
}
