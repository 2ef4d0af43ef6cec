//! Option settings in Elastic Beanstalk's namespaces, keyed `namespace:option`
//! ([`OptionSettings`]): parsing `--option` arguments, validation (every problem at once), and
//! typed views. Ranges and defaults are EB's (`command-options-general.md`, `docs/controller.md`
//! "Deployments"); the policies needing new hosts are refused when the controller has no
//! provisioner.

use std::collections::BTreeMap;

use hostmanager_protocol::{MAX_ENV_BYTES, RESERVED_PREFIX, is_property_name};

use crate::health::Status;
use crate::model::OptionSettings;

pub const COMMAND: &str = "aws:elasticbeanstalk:command";
pub const APPLICATION_ENVIRONMENT: &str = "aws:elasticbeanstalk:application:environment";
pub const ENVIRONMENT: &str = "aws:elasticbeanstalk:environment";
pub const HEALTH_SYSTEM: &str = "aws:elasticbeanstalk:healthreporting:system";
/// The default process behind the load balancer (EB's ALB namespace): health check and
/// deregistration delay.
pub const PROCESS: &str = "aws:elasticbeanstalk:environment:process:default";
pub const TRAFFIC_SPLITTING: &str = "aws:elasticbeanstalk:trafficsplitting";

mod platform;
mod process;

pub use platform::platform_options;
use process::process_option;
pub use process::{DEFAULT_DEREGISTRATION_DELAY_S, ProcessOptions};

/// EB's defaults.
pub const DEFAULT_TIMEOUT_S: u64 = 600;
pub const DEFAULT_BATCH_SIZE: u32 = 100;
pub const DEFAULT_NEW_VERSION_PERCENT: u32 = 10;
/// Minutes.
pub const DEFAULT_EVALUATION_TIME_MIN: u64 = 5;

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
    /// Whether the policy deploys to hosts a provisioner launches for it.
    pub fn needs_new_hosts(self) -> bool {
        matches!(
            self,
            Self::RollingWithAdditionalBatch | Self::Immutable | Self::TrafficSplitting
        )
    }

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
    /// Ours (not EB's): a failed deployment is followed by one that puts the previous version
    /// back over the batches it reached.
    pub auto_rollback: bool,
    /// `aws:elasticbeanstalk:environment:process:default` `DeregistrationDelay`.
    pub drain_timeout_s: u64,
    /// `aws:elasticbeanstalk:trafficsplitting`: the new hosts' share of the traffic during
    /// the evaluation, and how long it lasts (minutes).
    pub new_version_percent: u32,
    pub evaluation_time_min: u64,
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
            auto_rollback: false,
            drain_timeout_s: DEFAULT_DEREGISTRATION_DELAY_S,
            new_version_percent: DEFAULT_NEW_VERSION_PERCENT,
            evaluation_time_min: DEFAULT_EVALUATION_TIME_MIN,
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
        options.auto_rollback = get(COMMAND, "AutoRollback").map(String::as_str) == Some("true");
        options.drain_timeout_s = ProcessOptions::from(settings).deregistration_delay_s;
        if let Some(percent) = get(TRAFFIC_SPLITTING, "NewVersionPercent")
            .and_then(|v| v.parse().ok())
            .filter(|p| (1..=100).contains(p))
        {
            options.new_version_percent = percent;
        }
        if let Some(minutes) = get(TRAFFIC_SPLITTING, "EvaluationTime")
            .and_then(|v| v.parse().ok())
            .filter(|m| (3..=600).contains(m))
        {
            options.evaluation_time_min = minutes;
        }
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
/// `provisioner`: whether this controller can launch hosts (the policies that need new hosts
/// are refused without one).
pub fn validate(settings: &OptionSettings, provisioner: bool) -> Vec<String> {
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
            COMMAND => command_option(key, option, value, batch_type, provisioner, &mut problems),
            TRAFFIC_SPLITTING => match option {
                "NewVersionPercent" => range_option(key, value, 1..=100, "a percentage", &mut problems),
                "EvaluationTime" => range_option(key, value, 3..=600, "minutes", &mut problems),
                _ => problems.push(unknown_option(key, "NewVersionPercent, EvaluationTime")),
            },
            HEALTH_SYSTEM => match option {
                "SystemType" if value != "enhanced" => problems.push(format!(
                    "{key}: {value:?} is not valid; only enhanced (health reporting is always enhanced)"
                )),
                "SystemType" => {}
                "HealthCheckSuccessThreshold" => threshold_option(key, value, &mut problems),
                _ => problems.push(unknown_option(key, "SystemType, HealthCheckSuccessThreshold")),
            },
            PROCESS => process_option(key, option, value, &mut problems),
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
            platform if hostmanager_protocol::PLATFORM_NAMESPACES.contains(&platform) => {
                problems.extend(hostmanager_protocol::platform_option_problem(
                    namespace, option, value,
                ));
            }
            _ => problems.push(format!(
                "{key}: namespace {namespace} is not supported; supported: {COMMAND}, \
                 {APPLICATION_ENVIRONMENT}, {ENVIRONMENT}, {HEALTH_SYSTEM}, {PROCESS}, \
                 {TRAFFIC_SPLITTING}, {}",
                hostmanager_protocol::PLATFORM_NAMESPACES.join(", ")
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

fn range_option(
    key: &str,
    value: &str,
    range: std::ops::RangeInclusive<u64>,
    what: &str,
    problems: &mut Vec<String>,
) {
    if !value.parse::<u64>().is_ok_and(|v| range.contains(&v)) {
        problems.push(format!(
            "{key}: {value:?} is not valid; {what} from {} to {}",
            range.start(),
            range.end()
        ));
    }
}

fn unknown_option(key: &str, known: &str) -> String {
    format!("{key}: unknown option; the namespace's options are {known}")
}

fn command_option(
    key: &str,
    option: &str,
    value: &str,
    batch_type: Option<&str>,
    provisioner: bool,
    problems: &mut Vec<String>,
) {
    match option {
        "DeploymentPolicy" => match DeploymentPolicy::parse(value) {
            // Without a provisioner they cannot run: refused rather than silently degraded.
            Some(policy) if policy.needs_new_hosts() && !provisioner => problems.push(format!(
                "{key}: {} needs new hosts, and this controller has no provisioner \
                 (configure [provisioner] in its config); use AllAtOnce or Rolling",
                policy.as_str()
            )),
            Some(_) => {}
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
        "IgnoreHealthCheck" | "AutoRollback" => {
            if !matches!(value, "true" | "false") {
                problems.push(format!("{key}: {value:?} is not valid; true or false"));
            }
        }
        "HealthCheckSuccessThreshold" => threshold_option(key, value, problems),
        _ => problems.push(unknown_option(
            key,
            "DeploymentPolicy, Timeout, BatchSizeType, BatchSize, IgnoreHealthCheck, HealthCheckSuccessThreshold, AutoRollback",
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
#[path = "options_tests.rs"]
mod tests;
