//! The `[metrics]` and `[cloudwatch]` sections and the threshold levels of `[health]`. Pure.

use std::time::Duration;

use super::model::*;
use super::parse::positive;
use super::reader::Section;

/// `{ warning = 1, degraded = 10, severe = 25 }`: percentages, each optional, in that order.
pub(super) fn levels(s: &mut Section, key: &str, default: Levels) -> Levels {
    let Some(levels) = s.optional::<Levels>(key) else {
        return default;
    };
    let given: Vec<f64> = [levels.warning, levels.degraded, levels.severe]
        .into_iter()
        .flatten()
        .collect();
    if given.iter().any(|p| !(0.0..=100.0).contains(p)) {
        s.problem(key, "every level must be a percentage from 0 to 100");
        return default;
    }
    if given.windows(2).any(|pair| pair[0] > pair[1]) {
        s.problem(
            key,
            "levels must not decrease from warning to degraded to severe",
        );
        return default;
    }
    levels
}

pub(super) fn metrics(mut s: Section) -> MetricsConfig {
    let mut window = positive(&mut s, "window", Duration::from_secs(10));
    if window < Duration::from_millis(100) {
        // Each window reads the log, samples /proc and writes the position: not every moment.
        s.problem("window", "must be at least 100ms");
        window = Duration::from_secs(10);
    }
    s.finish();
    MetricsConfig { window }
}

pub(super) fn cloudwatch(mut s: Section) -> CloudWatchConfig {
    let enabled = s.get("enabled", false);
    let namespace = s.get("namespace", "HostManager".to_string());
    let namespace_ok = (1..=255).contains(&namespace.len())
        && namespace
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_/#: ".contains(c))
        && !namespace.starts_with(':');
    if !namespace_ok {
        s.problem(
            "namespace",
            format!("{namespace:?} must be 1-255 letters, digits or . - _ / # : and spaces"),
        );
    } else if namespace.starts_with("AWS/") {
        s.problem(
            "namespace",
            format!("{namespace:?}: CloudWatch rejects custom metrics in AWS/ namespaces"),
        );
    }
    let period = positive(&mut s, "period", Duration::from_secs(60));
    let seconds = period.as_secs();
    let period_ok = period.subsec_nanos() == 0
        && ([1, 5, 10, 30].contains(&seconds) || (seconds >= 60 && seconds.is_multiple_of(60)));
    if !period_ok {
        s.problem(
            "period",
            format!(
                "{} must be 1s, 5s, 10s, 30s (high resolution) or a multiple of 60s",
                humantime::format_duration(period)
            ),
        );
    }
    let buffer = s.get("buffer", 10_000usize);
    if buffer == 0 {
        s.problem("buffer", "must be at least 1");
    }
    let timeout = positive(&mut s, "timeout", Duration::from_secs(10));
    s.finish();
    CloudWatchConfig {
        enabled,
        namespace,
        period,
        buffer,
        timeout,
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse::{default_config, parse_config};
    use super::*;

    #[test]
    fn metrics_health_thresholds_and_cloudwatch_are_checked() {
        let config = default_config();
        assert_eq!(config.metrics.window, Duration::from_secs(10));
        assert!(!config.cloudwatch.enabled);
        assert_eq!(config.cloudwatch.namespace, "HostManager");
        assert_eq!(config.health.status_change_after, 3);
        assert_eq!(config.health.thresholds, HealthThresholds::DEFAULT);
        let text =
            "[health]\nrequests_4xx = {}\ncpu = { warning = 80 }\n[cloudwatch]\nperiod = \"10s\"\n";
        let config = parse_config(text).expect("valid");
        assert_eq!(
            config.health.thresholds.requests_4xx,
            Levels::new(None, None, None)
        );
        assert_eq!(
            config.health.thresholds.cpu,
            Levels::new(Some(80.0), None, None)
        );
        let text = "[health]\nstatus_change_after = 0\nrequests_5xx = { warning = 20, degraded = 10 }\ncpu = { warn = 1 }\nroot_filesystem = { severe = 120 }\n[metrics]\nwindow = \"50ms\"\n[cloudwatch]\nnamespace = \"AWS/ElasticBeanstalk\"\nperiod = \"45s\"\nbuffer = 0\n";
        let problems = parse_config(text).expect_err("broken");
        let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "health.status_change_after",
                "health.requests_5xx",
                "health.cpu",
                "health.root_filesystem",
                "metrics.window",
                "cloudwatch.namespace",
                "cloudwatch.period",
                "cloudwatch.buffer"
            ]
        );
    }
}
