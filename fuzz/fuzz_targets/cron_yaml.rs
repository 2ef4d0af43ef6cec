//! A worker bundle's `cron.yaml` (`worker/cron.rs`): YAML, then every task's schedule.
//! An accepted file's tasks have unique names, a path on this host, and a schedule that
//! parses again (the scheduler re-reads it from the release) and moves forward in time.
#![no_main]

use hostmanager::worker::cron::{PeriodicTask, due, next_after, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = match parse(text) {
        Ok(file) => file,
        Err(problems) => {
            assert!(!problems.is_empty());
            assert!(
                problems.iter().all(|p| p.starts_with("cron.yaml")),
                "{problems:?}"
            );
            return;
        }
    };
    let now = jiff::Timestamp::from_second(1_700_000_000).expect("time");
    for (i, task) in file.tasks.iter().enumerate() {
        assert!(
            file.tasks[..i].iter().all(|t| t.name != task.name),
            "unique names"
        );
        assert!(
            !task.url.contains("://") && !task.url.starts_with("//"),
            "{:?}",
            task.url
        );
        let cron = task.cron().expect("an accepted schedule parses again");
        if let Some(next) = next_after(&cron, now) {
            assert!(next > now, "{:?}: {next} after {now}", task.schedule);
            // The run at `next` is due at `next`, once.
            let grace = jiff::SignedDuration::from_secs(60);
            assert_eq!(
                due(&cron, now, next, grace),
                Some(next),
                "{:?}",
                task.schedule
            );
            assert_eq!(due(&cron, next, next, grace), None);
        }
    }
    // Tasks are kept with the release as JSON.
    let json = serde_json::to_string(&file.tasks).expect("serialize");
    let again: Vec<PeriodicTask> = serde_json::from_str(&json).expect("parse");
    assert_eq!(again, file.tasks);
});
