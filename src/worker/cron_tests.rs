use super::*;

fn ts(text: &str) -> jiff::Timestamp {
    text.parse().expect("timestamp")
}

#[test]
fn the_documented_file_reads_with_its_tasks_in_order() {
    let text = "version: 1\ncron:\n - name: \"backup-job\"\n   url: \"/backup\"\n   schedule: \"0 */12 * * *\"\n - name: audit\n   url: /audit?full=1\n   schedule: \"@hourly\"\n   description: ignored\n";
    let file = parse(text).expect("valid");
    assert_eq!(file.tasks.len(), 2);
    assert_eq!(file.tasks[0].name, "backup-job");
    assert_eq!(file.tasks[1].url, "/audit?full=1");
    assert!(file.warnings.is_empty(), "{:?}", file.warnings);
}

#[test]
fn every_problem_names_its_line() {
    let text = "version: 2\ncron:\n - name: a\n   url: /a\n - name: b\n   url: http://elsewhere/b\n   schedule: \"61 * * * *\"\n - url: /c\n   schedule: \"0 0 L * *\"\n";
    let problems = parse(text).expect_err("invalid");
    let joined = problems.join("\n");
    assert!(
        joined.contains("cron.yaml line 1: Not supported version 2"),
        "{joined}"
    );
    assert!(joined.contains("cron.yaml line 3: task 1: Failed of parsing file 'cron.yaml', because: schedule is missing"), "{joined}");
    assert!(
        joined.contains("cron.yaml line 6: task 2: url \"http://elsewhere/b\""),
        "{joined}"
    );
    assert!(
        joined.contains("cron.yaml line 7: task 2: schedule \"61 * * * *\""),
        "{joined}"
    );
    assert!(
        joined.contains(
            "cron.yaml line 8: task 3: Failed of parsing file 'cron.yaml', because: name is missing"
        ),
        "{joined}"
    );
    assert!(
        joined.contains("cron.yaml line 9: task 3: schedule \"0 0 L * *\""),
        "{joined}"
    );
    assert_eq!(problems.len(), 6, "{joined}");
}

#[test]
fn empty_versionless_and_broken_files_are_refused() {
    assert!(parse("  \n").expect_err("empty")[0].contains("the file is empty"));
    assert!(
        parse("cron:\n - name: a\n   url: /\n   schedule: \"* * * * *\"\n")
            .expect_err("no version")[0]
            .contains("Cannot find 'version' attribute")
    );
    assert!(
        parse("version: 1\ncron: [\n").expect_err("syntax")[0].contains("Failed of parsing file")
    );
    assert!(
        parse("version: 1\ncron: every minute\n").expect_err("not a list")[0].contains("line 2")
    );
}

#[test]
fn a_duplicate_name_replaces_the_earlier_task_with_a_warning() {
    let text = "version: 1\ncron:\n - name: a\n   url: /one\n   schedule: \"* * * * *\"\n - name: a\n   url: /two\n   schedule: \"* * * * *\"\n";
    let file = parse(text).expect("valid");
    assert_eq!(file.tasks.len(), 1);
    assert_eq!(file.tasks[0].url, "/two");
    assert!(file.warnings[0].contains("line 6"), "{:?}", file.warnings);
}

#[test]
fn schedules_follow_sqsds_rules() {
    for good in [
        "* * * * *",
        "*/5 1-5 * jan-mar mon,FRI",
        "0 0 * * 7",
        "0 12 1-31/2 * *",
        "@daily",
        "@WEEKLY",
    ] {
        assert!(parse_schedule(good).is_ok(), "{good}");
    }
    for bad in [
        "@reboot",
        "* * * *",
        "* * * * * * *",
        "0 0 L * *",
        "0 0 * * 5#3",
        "0 0 ? * *",
        "5/10 * * * *",
        "0 0 15W * *",
        "@often",
        "0 0 * * frix",
    ] {
        assert!(parse_schedule(bad).is_err(), "{bad}");
    }
    let (_, warning) = parse_schedule("*/30 * * * * *").expect("six fields");
    assert!(warning.expect("warned").contains("sixth field"));
}

#[test]
fn a_sixth_field_is_ignored_so_it_means_minutes() {
    let (cron, _) = parse_schedule("*/30 * * * * *").expect("valid");
    let next = next_after(&cron, ts("2026-01-01T00:00:00Z")).expect("next");
    assert_eq!(next, ts("2026-01-01T00:30:00Z"));
}

#[test]
fn day_of_month_or_day_of_week_either_matches_in_utc() {
    // The 13th of the month or any Friday (Vixie cron's rule).
    let (cron, _) = parse_schedule("0 0 13 * fri").expect("valid");
    // 2026-02-06 is a Friday, before the 13th.
    let next = next_after(&cron, ts("2026-02-01T00:00:00Z")).expect("next");
    assert_eq!(next, ts("2026-02-06T00:00:00Z"));
}

#[test]
fn a_missed_run_is_due_once_within_the_grace_window() {
    let (cron, _) = parse_schedule("*/10 * * * *").expect("valid");
    let grace = jiff::SignedDuration::from_secs(300);
    let last = ts("2026-01-01T00:00:00Z");
    assert_eq!(due(&cron, last, ts("2026-01-01T00:09:59Z"), grace), None);
    assert_eq!(
        due(&cron, last, ts("2026-01-01T00:10:00Z"), grace),
        Some(ts("2026-01-01T00:10:00Z"))
    );
    // Sent late, within the window.
    assert_eq!(
        due(&cron, last, ts("2026-01-01T00:14:00Z"), grace),
        Some(ts("2026-01-01T00:10:00Z"))
    );
    // Too late: skipped.
    assert_eq!(due(&cron, last, ts("2026-01-01T00:16:00Z"), grace), None);
    // Already sent: not twice.
    assert_eq!(
        due(
            &cron,
            ts("2026-01-01T00:10:00Z"),
            ts("2026-01-01T00:14:00Z"),
            grace
        ),
        None
    );
}

#[test]
fn the_scheduled_time_attribute_is_rubys_time_to_s() {
    assert_eq!(
        scheduled_time_attribute(ts("2017-03-22T23:10:00Z")),
        "2017-03-22 23:10:00 UTC"
    );
}
