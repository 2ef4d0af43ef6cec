//! Rotation while real processes keep writing: a writer that keeps its O_APPEND descriptor
//! (copytruncate) and one that reopens its file for every line (rename-and-create). Every line
//! ends up exactly once in the rotated files plus the live one, and the watcher sees every
//! severe line exactly once across the rotations.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{TestHost, wait_for};

const LINES: usize = 20_000;

/// Keeps one descriptor open in append mode, like an app's stdout.
const KEEP_OPEN: &str = r#"
import sys, time
with open(sys.argv[1], "a") as out:
    for n in range(int(sys.argv[2])):
        word = "FATAL" if n % 100 == 0 else "info"
        out.write(f"keep {n} {word} " + "x" * 60 + "\n")
        out.flush()
        if n % 50 == 0:
            time.sleep(0.005)
"#;

/// Opens the file for every line, like the agent's own logs.
const REOPEN: &str = r#"
import sys, time
for n in range(int(sys.argv[2])):
    with open(sys.argv[1], "a") as out:
        out.write(f"reopen {n} " + "y" * 60 + "\n")
    if n % 50 == 0:
        time.sleep(0.005)
"#;

fn writer(script: &str, path: &Path, lines: usize) -> Child {
    Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(path)
        .arg(lines.to_string())
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn writer")
}

fn gunzip(path: &Path) -> String {
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).expect("open gz"))
        .read_to_string(&mut text)
        .expect("gunzip");
    text
}

/// The rotated files of one log, oldest first, then the live file: the whole history.
fn history(host: &TestHost, key: &str, live: &Path) -> (String, usize) {
    let mut names: Vec<String> = std::fs::read_dir(host.path("var/log/rotated"))
        .expect("rotated dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("{key}-")) && n.ends_with(".gz"))
        .collect();
    names.sort();
    let mut text: String = names
        .iter()
        .map(|n| gunzip(&host.path(&format!("var/log/rotated/{n}"))))
        .collect();
    text.push_str(&std::fs::read_to_string(live).unwrap_or_default());
    (text, names.len())
}

fn assert_every_line_once(text: &str, prefix: &str) {
    let numbers: Vec<usize> = text
        .lines()
        .map(|line| {
            let mut words = line.split(' ');
            assert_eq!(words.next(), Some(prefix), "unexpected line {line:?}");
            words.next().and_then(|n| n.parse().ok()).expect("number")
        })
        .collect();
    let expected: Vec<usize> = (0..LINES).collect();
    assert!(
        numbers == expected,
        "{prefix}: {} lines, first difference at {:?}",
        numbers.len(),
        numbers.iter().zip(&expected).position(|(a, b)| a != b)
    );
}

#[test]
fn rotation_while_writing_keeps_every_line_exactly_once() {
    let mut host = TestHost::new()
        .set("logs", "extra_files", vec!["srv/app/*.log"])
        .set("logs", "rotate_size_kib", 16)
        .set("logs", "check_interval", "20ms")
        .set("logs", "reopen_timeout", "3s");
    host.start();
    let keep = host.path("srv/app/keep.log");
    let reopen = host.path("var/log/hostmanager/reopen.log");
    std::fs::create_dir_all(keep.parent().expect("parent")).expect("mkdir");
    // The files exist before the writers start, so the agent follows them from the start.
    std::fs::write(&keep, "").expect("create");
    std::fs::write(&reopen, "").expect("create");
    wait_for(
        "the agent to follow srv/app/keep.log",
        Duration::from_secs(10),
        || {
            let status: serde_json::Value =
                serde_json::from_str(&host.cli_ok(&["logs", "status", "--json"])).ok()?;
            let watched = status["watched_files"].as_array()?.clone();
            watched
                .iter()
                .any(|f| f == "srv/app/keep.log")
                .then_some(())
        },
    );

    let mut writers = [
        writer(KEEP_OPEN, &keep, LINES),
        writer(REOPEN, &reopen, LINES),
    ];
    for child in &mut writers {
        assert!(child.wait().expect("writer").success());
    }
    host.rotate_logs_and_settle();

    let (text, rotations) = history(&host, "_srv_app_keep.log", &keep);
    assert!(rotations >= 3, "copytruncate rotated {rotations} times");
    assert_every_line_once(&text, "keep");
    let (text, rotations) = history(&host, "_var_log_hostmanager_reopen.log", &reopen);
    assert!(rotations >= 3, "rename rotated {rotations} times");
    assert_every_line_once(&text, "reopen");

    let fatal = wait_for("every FATAL line counted", Duration::from_secs(10), || {
        let errors: Vec<serde_json::Value> =
            serde_json::from_str(&host.cli_ok(&["logs", "errors", "--json"])).ok()?;
        let entry = errors
            .into_iter()
            .find(|e| e["title"].as_str().is_some_and(|t| t.contains("FATAL")))?;
        (entry["count"].as_u64()? >= (LINES / 100) as u64).then_some(entry)
    });
    assert_eq!(
        fatal["count"].as_u64(),
        Some((LINES / 100) as u64),
        "the watcher saw every severe line exactly once across rotations"
    );
}

#[test]
fn a_writer_that_keeps_a_renamed_log_open_loses_nothing() {
    // Like a long hook writing to hooks.log through an inherited descriptor.
    let mut host = TestHost::new()
        .set("logs", "rotate_size_kib", 8)
        .set("logs", "check_interval", "20ms")
        .set("logs", "reopen_timeout", "200ms");
    host.start();
    let held = host.path("var/log/hostmanager/held.log");
    std::fs::write(&held, "").expect("create");
    let mut child = writer(KEEP_OPEN, &held, LINES);
    let warning = wait_for("the held-file warning", Duration::from_secs(30), || {
        host.events().into_iter().find(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.contains("still writes to the old file"))
        })
    });
    assert_eq!(warning["severity"], "warning");
    assert!(child.wait().expect("writer").success());
    host.rotate_logs_and_settle();
    let (text, rotations) = history(&host, "_var_log_hostmanager_held.log", &held);
    assert!(rotations >= 1);
    assert_every_line_once(&text, "keep");
}
