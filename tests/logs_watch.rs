//! The severe-error watcher end to end: the real agent follows files that real processes write
//! (a Python traceback, a Java stack trace, a Rust panic), groups each trace into one event,
//! and fingerprints an error storm into one counted entry with few events and a health cause.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{TestHost, wait_for};
use serde_json::Value;

fn host() -> TestHost {
    let mut host = TestHost::new()
        .set("logs.watch", "files", vec!["var/log/app/*.log"])
        .set("logs.watch", "event_interval", "1h");
    host.start();
    std::fs::create_dir_all(host.path("var/log/app")).expect("mkdir");
    host
}

/// Runs `program args` with its stderr appended to `log` (as a supervised app's is).
fn run_into(log: &Path, program: &str, args: &[&str]) {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open log");
    let status = Command::new(program)
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .stdout(Stdio::null())
        .stderr(file)
        .status()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(!status.success(), "{program} was meant to fail");
}

fn severe_events(host: &TestHost) -> Vec<Value> {
    host.events()
        .into_iter()
        .filter(|e| e["source"] == "logs" && e["severity"] == "error")
        .collect()
}

fn event_for<'a>(events: &'a [Value], file: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["details"]["file"] == file)
        .collect()
}

const JAVA_WRITER: &str = r#"
import sys
sys.stderr.write("""2026-01-01 10:00:00 INFO starting
Exception in thread "main" java.lang.IllegalStateException: order 1234 cannot ship
	at com.example.Orders.ship(Orders.java:42)
	at com.example.Main.main(Main.java:7)
Caused by: java.io.IOException: connection reset by 10.0.0.9
	at com.example.Net.read(Net.java:88)
	... 2 more
2026-01-01 10:00:01 INFO still here
""")
sys.exit(1)
"#;

#[test]
fn python_java_and_rust_traces_are_one_event_each_with_the_whole_trace() {
    let host = host();
    let app = host.path("var/log/app");
    let script = app.join("loader.py");
    let code = "def load(n):\n    raise ValueError(f'bad input {n}')\n\nload(42)\n";
    std::fs::write(&script, code).expect("write script");
    run_into(
        &app.join("python.log"),
        "python3",
        &[script.to_str().expect("utf-8")],
    );
    run_into(&app.join("java.log"), "python3", &["-c", JAVA_WRITER]);
    let panicker = app.join("panicker");
    let source = app.join("panicker.rs");
    std::fs::write(
        &source,
        "fn main() { let v: Vec<u32> = Vec::new(); let i = std::env::args().count() + 4; println!(\"{}\", v[i]); }\n",
    )
    .expect("write rust source");
    let built = Command::new("rustc")
        .args(["-O", "-o"])
        .arg(&panicker)
        .arg(&source)
        .status()
        .expect("rustc");
    assert!(built.success());
    run_into(
        &app.join("rust.log"),
        panicker.to_str().expect("utf-8"),
        &[],
    );

    let events = wait_for("three severe events", Duration::from_secs(15), || {
        let events = severe_events(&host);
        (events.len() >= 3).then_some(events)
    });
    assert_eq!(events.len(), 3, "one event per trace: {events:#?}");

    let python = event_for(&events, "var/log/app/python.log");
    assert_eq!(python.len(), 1);
    let text = python[0]["details"]["text"].as_str().expect("text");
    assert!(
        text.starts_with("Traceback (most recent call last):"),
        "{text}"
    );
    assert!(
        text.contains("raise ValueError(f'bad input {n}')"),
        "{text}"
    );
    assert!(text.ends_with("ValueError: bad input 42"), "{text}");
    assert!(
        python[0]["message"]
            .as_str()
            .expect("message")
            .contains("ValueError: bad input 42")
    );

    let java = event_for(&events, "var/log/app/java.log");
    assert_eq!(java.len(), 1);
    let text = java[0]["details"]["text"].as_str().expect("text");
    assert_eq!(text.lines().count(), 6, "{text}");
    assert!(text.contains("Caused by: java.io.IOException"), "{text}");
    assert!(text.ends_with("... 2 more"), "{text}");

    let rust = event_for(&events, "var/log/app/rust.log");
    assert_eq!(rust.len(), 1);
    let text = rust[0]["details"]["text"].as_str().expect("text");
    assert!(text.contains("panicked at"), "{text}");
    assert!(text.contains("index out of bounds"), "{text}");
    assert!(text.contains("stack backtrace:"), "{text}");
    assert!(
        text.lines().count() > 3,
        "the backtrace is part of the event: {text}"
    );
}

#[test]
fn a_thousand_identical_errors_are_one_fingerprint_counted_and_rate_limited() {
    let host = host();
    let log = host.path("var/log/app/storm.log");
    let storm = "import sys\nfor n in range(1000):\n    sys.stderr.write(f'2026-01-01 10:00:{n % 60:02} FATAL cannot reach db at 10.0.0.7:5432 (attempt {n})\\n')\n    sys.stderr.flush()\nsys.exit(3)\n";
    run_into(&log, "python3", &["-c", storm]);

    let entry = wait_for(
        "a fingerprint counted 1000 times",
        Duration::from_secs(15),
        || {
            let errors: Vec<Value> =
                serde_json::from_str(&host.cli_ok(&["logs", "errors", "--json"])).expect("json");
            errors.into_iter().find(|e| e["count"] == 1000)
        },
    );
    let errors: Vec<Value> =
        serde_json::from_str(&host.cli_ok(&["logs", "errors", "--json"])).expect("json");
    assert_eq!(errors.len(), 1, "one fingerprint: {errors:#?}");
    assert_eq!(entry["exemplars"].as_array().map(Vec::len), Some(3));
    assert!(
        entry["title"]
            .as_str()
            .expect("title")
            .contains("FATAL cannot reach db")
    );

    let events = event_for(&severe_events(&host), "var/log/app/storm.log")
        .into_iter()
        .cloned()
        .collect::<Vec<_>>();
    assert_eq!(
        events.len(),
        1,
        "rate limited to the first sighting: {events:#?}"
    );

    let status = wait_for(
        "the severe-error health cause",
        Duration::from_secs(10),
        || {
            let status = host.status();
            let causes = status["health"]["causes"].as_array()?.clone();
            causes.into_iter().find(|c| {
                c["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("1000 severe errors in the last 5 minutes"))
            })
        },
    );
    assert_eq!(status["status"], "Warning");
    let message = status["message"].as_str().expect("message");
    assert!(
        message.starts_with("1000 severe errors in the last 5 minutes: "),
        "{message}"
    );
    assert!(message.contains("FATAL cannot reach db"), "{message}");
}
