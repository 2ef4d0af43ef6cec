//! Keeps nginx's hourly healthd logs (`var/log/nginx/healthd/application.log.YYYY-MM-DD-HH`,
//! UTC) bounded. nginx opens a new file every hour and never deletes one; Elastic Beanstalk's
//! hourly cron deletes every file but the current hour's. Here a file goes once it is older
//! than `healthd_keep_hours` or beyond the newest `healthd_keep_files`, but never the current
//! hour's (or a later one), the newest, or one the metrics follower has not finished reading
//! (its saved checkpoint, `var/lib/hostmanager/metrics/healthd-position.json`: deleting it would lose requests
//! from a published window).

use std::path::Path;

use crate::metrics::Checkpoint;
use crate::metrics::{HEALTHD_PREFIX as PREFIX, is_hour_file};

/// `application.log.YYYY-MM-DD-HH` for the hour `at` falls in (UTC).
fn hour_name(at: jiff::Timestamp) -> String {
    format!("{PREFIX}{}", at.strftime("%Y-%m-%d-%H"))
}

/// Whether the follower (at `checkpoint`) is done with `name`.
fn finished(name: &str, checkpoint: Option<&Checkpoint>) -> bool {
    match checkpoint {
        // No follower position (metrics never ran, or it is unreadable and the follower starts
        // over at the end of the newest file too): only the other rules apply.
        None => true,
        Some(Checkpoint::InFile { file, .. }) => name < file.as_str(),
        Some(Checkpoint::After { file }) => name <= file.as_str(),
    }
}

/// Which of `names` (a directory listing) to delete. Pure.
pub fn to_prune(
    names: &[String],
    now: jiff::Timestamp,
    checkpoint: Option<&Checkpoint>,
    keep_hours: u64,
    keep_files: u64,
) -> Vec<String> {
    let mut hours: Vec<&String> = names.iter().filter(|n| is_hour_file(n)).collect();
    hours.sort();
    let current = hour_name(now);
    let hours_back = i64::try_from(keep_hours.saturating_mul(3600)).unwrap_or(i64::MAX);
    // A file is older than `keep_hours` once its hour ended that long ago.
    let oldest_kept = now
        .checked_sub(jiff::SignedDuration::from_secs(
            hours_back.saturating_sub(3600),
        ))
        .map(hour_name)
        .unwrap_or_default();
    let newest = hours.last().copied();
    let deletable = |name: &String| {
        name.as_str() < current.as_str() && Some(name) != newest && finished(name, checkpoint)
    };
    let mut pruned: Vec<String> = Vec::new();
    let mut kept = Vec::new();
    for name in hours {
        if deletable(name) && name.as_str() < oldest_kept.as_str() {
            pruned.push(name.clone());
        } else {
            kept.push(name);
        }
    }
    let mut excess = (kept.len() as u64).saturating_sub(keep_files);
    for name in kept {
        if excess == 0 {
            break;
        }
        if deletable(name) {
            pruned.push(name.clone());
            excess -= 1;
        }
    }
    pruned
}

/// Deletes what `to_prune` says in `dir`; returns the names deleted (blocking: run it on the
/// logs thread).
pub fn prune(dir: &Path, checkpoint_path: &Path, keep_hours: u64, keep_files: u64) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let names: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    let checkpoint: Option<Checkpoint> = crate::fsutil::read_json(checkpoint_path).ok().flatten();
    let doomed = to_prune(
        &names,
        jiff::Timestamp::now(),
        checkpoint.as_ref(),
        keep_hours,
        keep_files,
    );
    doomed
        .into_iter()
        .filter(|name| std::fs::remove_file(dir.join(name)).is_ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(hours: &[&str]) -> Vec<String> {
        hours.iter().map(|h| format!("{PREFIX}{h}")).collect()
    }

    fn at(text: &str) -> jiff::Timestamp {
        text.parse().expect("timestamp")
    }

    #[test]
    fn old_files_go_and_the_current_hour_stays() {
        let listing = names(&[
            "2026-03-01-08",
            "2026-03-01-09",
            "2026-03-01-10",
            "2026-03-01-11",
            "2026-03-01-12",
        ]);
        let mut all = listing.clone();
        all.push("application.log.2026-03-01-07.gz".into());
        all.push("other".into());
        let now = at("2026-03-01T12:30:00Z");
        // Two hours kept: the current one and the one before.
        let pruned = to_prune(&all, now, None, 2, 48);
        assert_eq!(
            pruned,
            names(&["2026-03-01-08", "2026-03-01-09", "2026-03-01-10"])
        );
        // By count: the three newest.
        let pruned = to_prune(&listing, now, None, 48, 3);
        assert_eq!(pruned, names(&["2026-03-01-08", "2026-03-01-09"]));
        // Never the current hour, whatever the keys say.
        let pruned = to_prune(&listing, now, None, 1, 1);
        assert_eq!(pruned.len(), 4);
        assert!(!pruned.contains(&format!("{PREFIX}2026-03-01-12")));
    }

    #[test]
    fn files_the_follower_has_not_finished_are_kept() {
        let listing = names(&["2026-03-01-08", "2026-03-01-09", "2026-03-01-10"]);
        let now = at("2026-03-02T12:00:00Z");
        let in_file = Checkpoint::InFile {
            file: format!("{PREFIX}2026-03-01-09"),
            inode: 1,
            offset: 10,
        };
        let pruned = to_prune(&listing, now, Some(&in_file), 1, 1);
        assert_eq!(pruned, names(&["2026-03-01-08"]));
        let after = Checkpoint::After {
            file: format!("{PREFIX}2026-03-01-09"),
        };
        let pruned = to_prune(&listing, now, Some(&after), 1, 1);
        assert_eq!(pruned, names(&["2026-03-01-08", "2026-03-01-09"]));
        // The newest file stays even when it is old and finished (nginx may still write it
        // after a clock jump; the follower is at its end).
        let done = Checkpoint::After {
            file: format!("{PREFIX}2026-03-01-10"),
        };
        assert_eq!(to_prune(&listing, now, Some(&done), 1, 1).len(), 2);
    }
}

#[cfg(test)]
#[path = "healthd_props.rs"]
mod props;
