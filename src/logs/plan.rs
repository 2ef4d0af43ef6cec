//! Decisions about log files, without touching them: when a log is due for rotation, how many
//! bytes a copytruncate may cut, what rotated files and S3 objects are called (Elastic
//! Beanstalk's layout), which spooled files to shed over the budget, how long to back off, and
//! the tail report's format. Pure.

use std::time::Duration;

use super::fingerprint::Report;
use crate::events::{NewEvent, Severity};

/// `var/log/nginx/access.log` → `_var_log_nginx_access.log` (Elastic Beanstalk's key naming).
pub fn path_key(relative: &str) -> String {
    format!("/{}", relative.trim_start_matches('/')).replace('/', "_")
}

/// `_var_log_web.stdout.log-1700000000.gz`: sorts by time within one log.
pub fn rotated_name(path_key: &str, epoch: i64) -> String {
    format!("{path_key}-{epoch:010}.gz")
}

/// The inverse of `rotated_name`.
pub fn parse_rotated_name(name: &str) -> Option<(&str, i64)> {
    let stem = name.strip_suffix(".gz")?;
    let (key, epoch) = stem.rsplit_once('-')?;
    if !key.starts_with('_') || epoch.is_empty() || !epoch.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((key, epoch.parse().ok()?))
}

/// Epoch second for the next rotated name of one log: now, but always after the last one, so
/// names stay unique and sorted even for two rotations in one second.
pub fn next_epoch(now_secs: i64, last: Option<i64>) -> i64 {
    last.map_or(now_secs, |last| now_secs.max(last + 1))
}

fn environment_prefix(kind: &str, env_id: &str, instance_id: &str) -> String {
    format!("resources/environments/logs/{kind}/{env_id}/{instance_id}/")
}

pub fn publish_prefix(env_id: &str, instance_id: &str) -> String {
    environment_prefix("publish", env_id, instance_id)
}

pub fn tail_key(env_id: &str, instance_id: &str, name: &str) -> String {
    format!("{}{name}", environment_prefix("tail", env_id, instance_id))
}

pub fn bundle_key(env_id: &str, instance_id: &str, name: &str) -> String {
    format!(
        "{}{name}",
        environment_prefix("bundle", env_id, instance_id)
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotateReason {
    Size,
    Age,
    Requested,
}

/// Whether a log of `size` bytes, last rotated at `last_ms`, is due.
pub fn rotation_due(
    size: u64,
    last_ms: i64,
    now_ms: i64,
    size_limit: u64,
    interval: Duration,
) -> Option<RotateReason> {
    if size == 0 {
        return None;
    }
    if size >= size_limit {
        return Some(RotateReason::Size);
    }
    let interval_ms = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
    (now_ms.saturating_sub(last_ms) >= interval_ms).then_some(RotateReason::Age)
}

/// How many leading bytes of a `size`-byte file a collapse may remove: whole filesystem blocks,
/// and never the end of the file (the kernel's rule for FALLOC_FL_COLLAPSE_RANGE). The rest
/// stays in the live file for the next rotation.
pub fn collapse_length(size: u64, block: u64) -> u64 {
    if block == 0 {
        return 0;
    }
    let aligned = size / block * block;
    if aligned == size {
        aligned.saturating_sub(block)
    } else {
        aligned
    }
}

/// A rotated file in the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolFile {
    pub name: String,
    pub bytes: u64,
    pub epoch: i64,
    /// Lower is shed first.
    pub priority: u8,
    /// Confirmed by the destination (or publishing is off): deleting it loses nothing remote.
    pub published: bool,
}

/// Which files to delete so the spool fits `budget`: published ones first, oldest first; then
/// unpublished ones by priority (lowest first), oldest first.
pub fn plan_shed(files: &[SpoolFile], budget: u64) -> Vec<&SpoolFile> {
    let mut total: u64 = files.iter().map(|f| f.bytes).sum();
    let mut order: Vec<&SpoolFile> = files.iter().collect();
    order.sort_by(|a, b| {
        b.published
            .cmp(&a.published)
            .then(a.priority.cmp(&b.priority))
            .then(a.epoch.cmp(&b.epoch))
            .then(a.name.cmp(&b.name))
    });
    let mut shed = Vec::new();
    for file in order {
        if total <= budget {
            break;
        }
        total -= file.bytes;
        shed.push(file);
    }
    shed
}

/// Capped exponential backoff; `jitter` in [0, 1) spreads retries by ±20 %.
pub fn backoff(attempt: u32, initial: Duration, max: Duration, jitter: f64) -> Duration {
    // Doubled step by step up to the cap: a shifted u32 factor stopped the growth at 2^20
    // (12 days from 1 s), short of a longer `max`. Past 128 doublings any non-zero initial
    // delay overflows a Duration, so the loop is short.
    let base = (0..attempt.min(128))
        .try_fold(initial.min(max), |delay, _| {
            delay.checked_mul(2).filter(|doubled| *doubled < max)
        })
        .unwrap_or(max);
    base.mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0)).min(max)
}

/// The event for a first sighting (with the whole trace) or a summary of repeats.
pub fn severe_event(report: &Report) -> NewEvent {
    let message = match &report.text {
        Some(_) => format!("Severe error in {}: {}", report.file, report.title),
        None => format!(
            "{} more severe error(s) in {}: {} ({} in total)",
            report.occurrences, report.file, report.title, report.total
        ),
    };
    let mut details = serde_json::json!({
        "fingerprint": report.fingerprint,
        "file": report.file,
        "occurrences": report.occurrences,
        "total": report.total,
    });
    if let Some(text) = &report.text {
        details["text"] = serde_json::Value::String(text.clone());
    }
    NewEvent::new(Severity::Error, "logs", message).details(details)
}

const RULE: &str = "----------------------------------------";

/// One file of a tail report, in Elastic Beanstalk's format (dashes, path, dashes, lines).
pub fn tail_section(path: &str, lines: &str) -> String {
    let mut out = format!("{RULE}\n{path}\n{RULE}\n");
    if !lines.is_empty() {
        out.push_str(lines);
        out.push('\n');
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_elastic_beanstalk() {
        let key = path_key("var/log/nginx/access.log");
        assert_eq!(key, "_var_log_nginx_access.log");
        let name = rotated_name(&key, 1_700_000_000);
        assert_eq!(name, "_var_log_nginx_access.log-1700000000.gz");
        assert_eq!(
            parse_rotated_name(&name),
            Some(("_var_log_nginx_access.log", 1_700_000_000))
        );
        assert_eq!(parse_rotated_name("notes.gz"), None);
        assert_eq!(parse_rotated_name("_x-12a.gz"), None);
        assert_eq!(
            format!("{}{name}", publish_prefix("e-abc", "i-1")),
            "resources/environments/logs/publish/e-abc/i-1/_var_log_nginx_access.log-1700000000.gz"
        );
        assert_eq!(
            tail_key("e-abc", "i-1", "TailLogs-1.out"),
            "resources/environments/logs/tail/e-abc/i-1/TailLogs-1.out"
        );
        assert!(
            bundle_key("e", "i", "b.zip").starts_with("resources/environments/logs/bundle/e/i/")
        );
    }

    #[test]
    fn epochs_never_repeat() {
        assert_eq!(next_epoch(100, None), 100);
        assert_eq!(next_epoch(100, Some(100)), 101);
        assert_eq!(next_epoch(100, Some(50)), 100);
    }

    #[test]
    fn rotation_by_size_and_age_but_never_empty() {
        let hour = Duration::from_secs(3600);
        assert_eq!(rotation_due(0, 0, i64::MAX, 1, hour), None);
        assert_eq!(rotation_due(10, 0, 1, 10, hour), Some(RotateReason::Size));
        assert_eq!(rotation_due(5, 0, 3_599_999, 10, hour), None);
        assert_eq!(
            rotation_due(5, 0, 3_600_000, 10, hour),
            Some(RotateReason::Age)
        );
    }

    #[test]
    fn collapses_are_whole_blocks_short_of_the_end() {
        assert_eq!(collapse_length(10_000, 4096), 8192);
        assert_eq!(collapse_length(8192, 4096), 4096);
        assert_eq!(collapse_length(4000, 4096), 0);
        assert_eq!(collapse_length(4096, 4096), 0);
    }

    #[test]
    fn shedding_takes_published_then_low_priority_oldest() {
        let file = |name: &str, epoch, priority, published| SpoolFile {
            name: name.into(),
            bytes: 10,
            epoch,
            priority,
            published,
        };
        let files = [
            file("stderr-old", 1, 3, false),
            file("access-new", 5, 0, false),
            file("access-old", 2, 0, false),
            file("done", 9, 3, true),
        ];
        let names: Vec<&str> = plan_shed(&files, 15)
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(names, ["done", "access-old", "access-new"]);
        assert!(plan_shed(&files, 40).is_empty());
    }

    #[test]
    fn backoff_is_capped_with_jitter() {
        let one = Duration::from_secs(1);
        let cap = Duration::from_secs(60);
        assert_eq!(backoff(0, one, cap, 0.5), one);
        assert_eq!(backoff(3, one, cap, 0.5), Duration::from_secs(8));
        assert_eq!(backoff(30, one, cap, 0.99), cap);
        assert!(backoff(2, one, cap, 0.0) >= Duration::from_millis(3200));
    }

    #[test]
    fn severe_events_name_the_file_and_the_error() {
        let mut report = Report {
            fingerprint: "0123456789abcdef".into(),
            title: "ValueError: bad".into(),
            file: "var/log/web.stderr.log".into(),
            occurrences: 1,
            total: 1,
            text: Some("Traceback (most recent call last):\nValueError: bad".into()),
        };
        let first = severe_event(&report);
        assert_eq!(
            first.message,
            "Severe error in var/log/web.stderr.log: ValueError: bad"
        );
        assert_eq!(
            first.details["text"],
            "Traceback (most recent call last):\nValueError: bad"
        );
        report.text = None;
        report.occurrences = 41;
        report.total = 42;
        let summary = severe_event(&report);
        assert_eq!(
            summary.message,
            "41 more severe error(s) in var/log/web.stderr.log: ValueError: bad (42 in total)"
        );
        assert!(summary.details.get("text").is_none());
    }

    #[test]
    fn tail_sections_look_like_elastic_beanstalks() {
        assert_eq!(
            tail_section("/var/log/web.stdout.log", "a\nb"),
            format!("{RULE}\n/var/log/web.stdout.log\n{RULE}\na\nb\n\n")
        );
        assert_eq!(tail_section("/x", ""), format!("{RULE}\n/x\n{RULE}\n\n"));
    }
}

#[cfg(test)]
#[path = "plan_props.rs"]
mod props;
