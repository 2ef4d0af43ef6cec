//! `[logs]`, `[logs.watch]` and `[logs.publish]` → `LogsConfig`. Pure.

use std::path::PathBuf;
use std::time::Duration;

use super::model::{LogsConfig, PublishConfig, PublishDestination, WatchConfig};
use super::parse::{at_least_one, positive};
use super::reader::Section;

pub(super) fn logs(mut s: Section) -> LogsConfig {
    let rotate_size_bytes = size_kib(&mut s, "rotate_size_kib", 10 * 1024);
    let rotate_interval = positive(&mut s, "rotate_interval", Duration::from_secs(3600));
    let check_interval = positive(&mut s, "check_interval", Duration::from_secs(10));
    let reopen_timeout = positive(&mut s, "reopen_timeout", Duration::from_secs(5));
    let extra_files = globs(&mut s, "extra_files");
    let spool_budget_bytes = at_least_one(&mut s, "spool_budget_mib", 1024).saturating_mul(1 << 20);
    let tail_lines = s.get("tail_lines", 100usize);
    if tail_lines == 0 {
        s.problem("tail_lines", "must be at least 1");
    }
    let healthd_keep_hours = at_least_one(&mut s, "healthd_keep_hours", 24);
    let healthd_keep_files = at_least_one(&mut s, "healthd_keep_files", 48);
    let watch = watch(s.section("watch"));
    let publish = publish(s.section("publish"));
    s.finish();
    LogsConfig {
        healthd_keep_hours,
        healthd_keep_files,
        rotate_size_bytes,
        rotate_interval,
        check_interval,
        reopen_timeout,
        extra_files,
        spool_budget_bytes,
        tail_lines,
        watch,
        publish,
    }
}

fn watch(mut s: Section) -> WatchConfig {
    let enabled = s.get("enabled", true);
    let default_patterns = s.get("default_patterns", true);
    let patterns: Vec<String> = s.get("patterns", Vec::new());
    for (index, pattern) in patterns.iter().enumerate() {
        if let Err(error) = regex::Regex::new(pattern) {
            let first = error
                .to_string()
                .lines()
                .last()
                .unwrap_or_default()
                .trim()
                .to_string();
            s.problem(
                "patterns",
                format!("pattern {index} ({pattern:?}) is not a regular expression: {first}"),
            );
        }
    }
    let files = globs(&mut s, "files");
    let group_idle = positive(&mut s, "group_idle", Duration::from_millis(50));
    let event_interval = positive(&mut s, "event_interval", Duration::from_secs(60));
    let max_events_per_minute = s.get("max_events_per_minute", 20u32);
    if max_events_per_minute == 0 {
        s.problem("max_events_per_minute", "must be at least 1");
    }
    let health_window = positive(&mut s, "health_window", Duration::from_secs(300));
    s.finish();
    WatchConfig {
        enabled,
        default_patterns,
        patterns,
        files,
        group_idle,
        event_interval,
        max_events_per_minute,
        health_window,
    }
}

fn publish(mut s: Section) -> PublishConfig {
    let enabled = s.get("enabled", false);
    let text: Option<String> = s.optional("destination");
    let given = text.is_some();
    let destination = match text {
        None => None,
        Some(text) => match parse_destination(&text) {
            Ok(destination) => Some(destination),
            Err(message) => {
                s.problem("destination", message);
                None
            }
        },
    };
    if enabled && !given {
        s.problem(
            "destination",
            "publishing is enabled but no destination is set (\"s3://bucket\" or a directory)",
        );
    }
    let interval = positive(&mut s, "interval", Duration::from_secs(60));
    let retry_initial = positive(&mut s, "retry_initial", Duration::from_secs(1));
    let retry_max = positive(&mut s, "retry_max", Duration::from_secs(300));
    if retry_max < retry_initial {
        s.problem("retry_max", "must be at least logs.publish.retry_initial");
    }
    let concurrency = s.get("concurrency", 4usize);
    if !(1..=64).contains(&concurrency) {
        s.problem(
            "concurrency",
            format!("{concurrency} must be between 1 and 64"),
        );
    }
    let multipart_threshold_bytes =
        at_least_one(&mut s, "multipart_threshold_mib", 64).saturating_mul(1 << 20);
    let part_size_mib = at_least_one(&mut s, "part_size_mib", 16);
    if !(5..=5120).contains(&part_size_mib) {
        s.problem(
            "part_size_mib",
            format!("{part_size_mib} must be between 5 and 5120 (S3's part size limits)"),
        );
    }
    let flush_on_stop = s.get("flush_on_stop", true);
    s.finish();
    PublishConfig {
        enabled,
        flush_on_stop,
        destination,
        interval,
        retry_initial,
        retry_max,
        concurrency,
        multipart_threshold_bytes,
        part_size_bytes: part_size_mib.clamp(5, 5120) << 20,
    }
}

/// `s3://bucket`, `file:///dir`, or a directory (under the root).
pub fn parse_destination(text: &str) -> Result<PublishDestination, String> {
    if let Some(rest) = text.strip_prefix("s3://") {
        let bucket = rest.trim_end_matches('/');
        let valid = (3..=63).contains(&bucket.len())
            && bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        return if valid {
            Ok(PublishDestination::S3 {
                bucket: bucket.to_string(),
            })
        } else {
            Err(format!(
                "{text:?}: the bucket must be 3-63 lowercase letters, digits, '-' or '.' (a key prefix is not supported: keys follow Elastic Beanstalk's layout)"
            ))
        };
    }
    let path = text.strip_prefix("file://").unwrap_or(text);
    if path.is_empty() || text.contains("://") && !text.starts_with("file://") {
        return Err(format!(
            "{text:?} is not \"s3://bucket\", \"file:///dir\" or a directory"
        ));
    }
    Ok(PublishDestination::Local(PathBuf::from(path)))
}

fn size_kib(s: &mut Section, key: &str, default: u64) -> u64 {
    at_least_one(s, key, default).saturating_mul(1024)
}

fn globs(s: &mut Section, key: &str) -> Vec<String> {
    let patterns: Vec<String> = s.get(key, Vec::new());
    for pattern in &patterns {
        if let Err(error) = glob::Pattern::new(pattern) {
            s.problem(key, format!("{pattern:?} is not a glob: {error}"));
        }
        if pattern.split('/').any(|part| part == "..") {
            s.problem(key, format!("{pattern:?} must not contain '..'"));
        }
    }
    patterns
}

#[cfg(test)]
mod tests {
    use crate::config::parse_config;

    use super::*;

    #[test]
    fn defaults_follow_elastic_beanstalk() {
        let logs = crate::config::default_config().logs;
        assert_eq!(logs.rotate_size_bytes, 10 << 20);
        assert_eq!(logs.rotate_interval, Duration::from_secs(3600));
        assert_eq!(logs.tail_lines, 100);
        assert_eq!((logs.healthd_keep_hours, logs.healthd_keep_files), (24, 48));
        assert!(logs.watch.enabled);
        assert!(!logs.publish.enabled);
        assert_eq!(logs.publish.part_size_bytes, 16 << 20);
    }

    #[test]
    fn every_logs_mistake_is_listed() {
        let text = "[logs]\nextra_files = [\"../etc/*\"]\nhealthd_keep_hours = 0\n[logs.watch]\npatterns = [\"(unclosed\"]\n[logs.publish]\nenabled = true\ndestination = \"s3://A\"\npart_size_mib = 1\n";
        let problems = parse_config(text).expect_err("broken");
        let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "logs.extra_files",
                "logs.healthd_keep_hours",
                "logs.watch.patterns",
                "logs.publish.destination",
                "logs.publish.part_size_mib"
            ]
        );
    }

    #[test]
    fn destinations() {
        assert_eq!(
            parse_destination("s3://my-bucket/"),
            Ok(PublishDestination::S3 {
                bucket: "my-bucket".into()
            })
        );
        assert_eq!(
            parse_destination("file:///srv/logs"),
            Ok(PublishDestination::Local("/srv/logs".into()))
        );
        assert_eq!(
            parse_destination("var/published"),
            Ok(PublishDestination::Local("var/published".into()))
        );
        assert!(parse_destination("https://x").is_err());
    }
}
