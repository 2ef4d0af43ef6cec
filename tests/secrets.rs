//! Secrets stay off the command line and out of every record, event and log: properties
//! given with `--env-file` (a file or standard input) reach the app and nothing else.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::bundles::sample;
use common::{BIN, TestHost};

const STDIN_SECRET: &str = "s3cret-from-stdin";
const FILE_SECRET: &str = "rotated-s3cret-from-file";

/// What `ps` shows of a process: its full command line.
fn ps_args(pid: u32) -> String {
    let output = Command::new("ps")
        .args(["-ww", "-o", "args=", "-p", &pid.to_string()])
        .output()
        .expect("ps (Debian package procps)");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn assert_nowhere(host: &TestHost, secret: &str) {
    let events = serde_json::to_string(&host.events()).expect("json");
    assert!(!events.contains(secret), "an event holds the secret");
    let records = host.cli_ok(&["deployments", "--json"]);
    assert!(!records.contains(secret), "a record holds the secret");
    assert!(
        !host.agent_log().contains(secret),
        "the agent's log holds the secret"
    );
}

#[test]
fn properties_from_stdin_and_from_a_file_reach_the_app_but_no_command_line_record_event_or_log() {
    let mut host = TestHost::new();
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = sample(dir.path(), "v1", &[]);

    let mut deploy = Command::new(BIN)
        .arg("--root")
        .arg(host.path(""))
        .args(["deploy", bundle.to_str().expect("utf-8")])
        .args([
            "--env-file",
            "-",
            "--env",
            "GREETING=hello",
            "--wait",
            "--json",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run deploy");
    // The command line is fixed at exec; the CLI is now waiting for its standard input.
    let shown = ps_args(deploy.id());
    assert!(shown.contains("--env-file -"), "ps shows the CLI: {shown}");
    let mut stdin = deploy.stdin.take().expect("stdin");
    writeln!(stdin, "# from a secret store\nDB_PASSWORD={STDIN_SECRET}").expect("write");
    drop(stdin);
    let output = deploy.wait_with_output().expect("wait");
    let record: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&output.stderr));
    });
    assert_eq!(record["status"], "succeeded", "{record:#}");
    assert_eq!(host.body("/env/DB_PASSWORD"), format!("{STDIN_SECRET}\n"));
    assert_eq!(host.body("/env/GREETING"), "hello\n");
    assert!(!shown.contains(STDIN_SECRET), "{shown}");
    assert!(!record.to_string().contains(STDIN_SECRET));
    assert_nowhere(&host, STDIN_SECRET);

    // configure --env-file sets the keys the file names; the others keep their values.
    let file = dir.path().join("app.env");
    std::fs::write(&file, format!("DB_PASSWORD={FILE_SECRET}\nFEATURE=on\n")).expect("write");
    let output = host.cli_ok(&[
        "configure",
        "--env-file",
        file.to_str().expect("utf-8"),
        "--wait",
        "--json",
    ]);
    let record: serde_json::Value = serde_json::from_str(&output).expect("record");
    assert_eq!(record["status"], "succeeded", "{record:#}");
    assert_eq!(host.body("/env/DB_PASSWORD"), format!("{FILE_SECRET}\n"));
    assert_eq!(host.body("/env/FEATURE"), "on\n");
    assert_eq!(host.body("/env/GREETING"), "hello\n");
    assert!(!output.contains(FILE_SECRET));
    assert_nowhere(&host, FILE_SECRET);
}
