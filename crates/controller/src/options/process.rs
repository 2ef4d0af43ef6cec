//! [`PROCESS`]: how the load balancer checks and drains an environment's hosts (EB's ALB
//! options, with its ranges and defaults).

use super::{OptionSettings, PROCESS, unknown_option};

/// The typed view of [`PROCESS`]: how the load balancer checks and drains the hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessOptions {
    pub health_check_path: String,
    pub interval_s: u64,
    /// `HealthyThresholdCount`: passing checks before a host takes traffic.
    pub rise: u32,
    /// `UnhealthyThresholdCount`: failing checks before it stops.
    pub fall: u32,
    pub deregistration_delay_s: u64,
}

pub const DEFAULT_DEREGISTRATION_DELAY_S: u64 = 20;

impl Default for ProcessOptions {
    /// EB's ALB defaults.
    fn default() -> Self {
        Self {
            health_check_path: "/".into(),
            interval_s: 15,
            rise: 3,
            fall: 5,
            deregistration_delay_s: DEFAULT_DEREGISTRATION_DELAY_S,
        }
    }
}

impl From<&OptionSettings> for ProcessOptions {
    fn from(settings: &OptionSettings) -> Self {
        let get = |option: &str| settings.get(&format!("{PROCESS}:{option}"));
        let mut options = Self::default();
        if let Some(path) = get("HealthCheckPath").filter(|p| health_check_path_ok(p)) {
            options.health_check_path = path.clone();
        }
        let number = |option: &str, range: std::ops::RangeInclusive<u64>| {
            get(option)
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|v| range.contains(v))
        };
        if let Some(v) = number("HealthCheckInterval", 5..=300) {
            options.interval_s = v;
        }
        if let Some(v) = number("HealthyThresholdCount", 2..=10) {
            options.rise = v as u32;
        }
        if let Some(v) = number("UnhealthyThresholdCount", 2..=10) {
            options.fall = v as u32;
        }
        if let Some(v) = number("DeregistrationDelay", 0..=3600) {
            options.deregistration_delay_s = v;
        }
        options
    }
}

/// A path HAProxy's `http-check send` can carry as it is: it goes into its config file.
fn health_check_path_ok(path: &str) -> bool {
    path.starts_with('/')
        && path.len() <= 1024
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._~%-?=&+:@!$,;".contains(&b))
}

pub(super) fn process_option(key: &str, option: &str, value: &str, problems: &mut Vec<String>) {
    let in_range = |range: std::ops::RangeInclusive<u64>| {
        value.parse::<u64>().is_ok_and(|v| range.contains(&v))
    };
    match option {
        "HealthCheckPath" if !health_check_path_ok(value) => problems.push(format!(
            "{key}: {value:?} is not valid; a path starting with '/', of letters, digits and /._~%-?=&+:@!$,;"
        )),
        "HealthCheckPath" => {}
        "DeregistrationDelay" if !in_range(0..=3600) => problems.push(format!(
            "{key}: {value:?} is not valid; seconds from 0 to 3600"
        )),
        "HealthCheckInterval" if !in_range(5..=300) => problems.push(format!(
            "{key}: {value:?} is not valid; seconds from 5 to 300"
        )),
        "HealthyThresholdCount" | "UnhealthyThresholdCount" if !in_range(2..=10) => problems
            .push(format!("{key}: {value:?} is not valid; a count from 2 to 10")),
        "DeregistrationDelay"
        | "HealthCheckInterval"
        | "HealthyThresholdCount"
        | "UnhealthyThresholdCount" => {}
        _ => problems.push(unknown_option(
            key,
            "HealthCheckPath, HealthCheckInterval, HealthyThresholdCount, UnhealthyThresholdCount, DeregistrationDelay",
        )),
    }
}
