//! A full disk: the agent's state directory (`var/lib/hostmanager`: state.json, records, the
//! event journal, checkpoints) and its log directory (`var/log`: logs, the rotation spool)
//! each on a small tmpfs the test mounts, filled to the last byte. Writes fail with an event
//! that names the file and the error, no file is left half-written, the app keeps serving,
//! and once space returns deployments, events and rotation work again. Needs root (mount).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::bundles::sample;
use common::crash::{assert_journal_whole, record_of};
use common::{TestHost, is_root, wait_for};
use serde_json::Value;

/// A size-limited tmpfs over a directory, unmounted (lazily: apps may hold files) on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Self {
        std::fs::create_dir_all(path).expect("mountpoint");
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(path)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mount tmpfs on {}: {status}",
            path.display()
        );
        Self(path.to_path_buf())
    }

    /// Fills the filesystem to the last byte with `filler`; returns its path.
    fn fill(&self) -> PathBuf {
        let path = self.0.join("filler");
        let mut file = std::fs::File::create(&path).expect("filler");
        for chunk in [1 << 20, 4096, 1] {
            let bytes = vec![0u8; chunk];
            while file.write_all(&bytes).is_ok() {}
        }
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The host first, then the mounts: dropping stops the apps before the unmount.
struct FullHost {
    host: TestHost,
    state: Tmpfs,
    logs: Tmpfs,
}

/// Every file in `dir` (recursively) that is JSON parses, and no temporary file is left.
fn assert_no_torn_file(dir: &Path, what: &str) {
    for entry in walk(dir) {
        let name = entry
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        assert!(
            !name.contains(".tmp"),
            "{what}: a temporary file is left: {}",
            entry.display()
        );
        if name.ends_with(".json") {
            let bytes = std::fs::read(&entry).expect("read");
            serde_json::from_slice::<Value>(&bytes)
                .unwrap_or_else(|e| panic!("{what}: {} is torn: {e}", entry.display()));
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}

fn event_matching(host: &TestHost, text: &str) -> Option<Value> {
    host.events()
        .into_iter()
        .find(|e| e["message"].as_str().is_some_and(|m| m.contains(text)))
}

/// Requests through nginx all get the serving release's answer.
fn assert_serving(host: &TestHost, body: &str, what: &str) {
    for _ in 0..20 {
        let response = host
            .get("/")
            .unwrap_or_else(|e| panic!("{what}: GET /: {e}"));
        assert_eq!(
            (response.status, response.body.as_str()),
            (200, body),
            "{what}"
        );
    }
}

#[test]
fn a_full_disk_fails_writes_clearly_keeps_serving_and_recovers() {
    assert!(
        is_root(),
        "mounting a small filesystem needs root: run the suite as root"
    );
    let host = TestHost::new()
        .set("logs", "extra_files", vec!["srv/app/*.log"])
        .set("logs", "check_interval", "50ms");
    let state = Tmpfs::mount(&host.path("var/lib/hostmanager"), "8m");
    let logs = Tmpfs::mount(&host.path("var/log"), "8m");
    let mut full = FullHost { host, state, logs };
    let host = &mut full.host;
    host.start();
    let bundles = tempfile::tempdir().expect("tempdir");
    let v1 = host.deploy_ok(&sample(bundles.path(), "v1", &[]));
    let app_log = host.path("srv/app/app.log");
    std::fs::create_dir_all(app_log.parent().expect("parent")).expect("mkdir");
    std::fs::write(&app_log, "line before\n").expect("app log");
    let state_json = host.path("var/lib/hostmanager/state.json");
    let state_before = std::fs::read(&state_json).expect("state.json");

    // The state directory fills: a deployment cannot be recorded, so it is refused, saying why.
    let state_filler = full.state.fill();
    let host = &mut full.host;
    let v2 = sample(bundles.path(), "v2", &[]);
    let refused = host.cli(&["deploy", v2.to_str().expect("utf-8"), "--wait", "--json"]);
    let message = String::from_utf8_lossy(&refused.stderr);
    eprintln!("deployment on a full state disk: {message}");
    assert!(!refused.status.success(), "refused: {message}");
    assert!(
        message.contains("No space left on device") && message.contains("state.json"),
        "the refusal names the file and the error: {message}"
    );
    assert_serving(host, "Hello from v1\n", "a full state disk");
    assert_eq!(host.status()["release"]["deployment_id"], v1["id"]);
    // A rotation cannot save its state: an error event says which file, and the journal,
    // which cannot take it, says so in an event of its own (kept in memory).
    host.cli_ok(&["logs", "rotate"]);
    let said = wait_for("a rotation error event", Duration::from_secs(10), || {
        event_matching(host, "rotating srv/app/app.log")
    });
    eprintln!("rotation on a full state disk: {}", said["message"]);
    let text = said["message"].as_str().unwrap_or_default();
    assert!(
        text.contains("No space left on device") && text.contains("rotation.json"),
        "{text}"
    );
    // The journal's last page may still have room: more events fill it, then it fails.
    let said = wait_for("the journal's error event", Duration::from_secs(30), || {
        let found = event_matching(host, "Cannot write the event journal");
        if found.is_none() {
            host.cli_ok(&["logs", "rotate"]);
        }
        found
    });
    eprintln!("journal on a full state disk: {}", said["message"]);
    assert_eq!(said["severity"], "error", "{said:#}");
    let text = said["message"].as_str().unwrap_or_default();
    assert!(
        text.contains("No space left on device") && text.contains(".jsonl"),
        "{text}"
    );
    assert_eq!(
        std::fs::read(&state_json).expect("state.json"),
        state_before,
        "state.json untouched"
    );
    assert_no_torn_file(&host.path("var/lib/hostmanager"), "a full state disk");
    std::fs::remove_file(&state_filler).expect("free state");

    // The log directory fills: compressing into the spool fails with an event naming the file,
    // the app log's line stays in its live file, and a deployment (whose logs cannot be
    // written) still serves.
    let log_filler = full.logs.fill();
    let host = &mut full.host;
    let events_before = host.events().len();
    host.cli_ok(&["logs", "rotate"]);
    let said = wait_for("a spool error event", Duration::from_secs(10), || {
        host.events().into_iter().skip(events_before).find(|e| {
            e["source"] == "logs"
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("var/log/rotated/"))
        })
    });
    eprintln!("rotation on a full log disk: {}", said["message"]);
    let text = said["message"].as_str().unwrap_or_default();
    assert!(text.contains("No space left on device"), "{text}");
    assert_eq!(
        std::fs::read_to_string(&app_log).expect("app log"),
        "line before\n"
    );
    let record = host.deploy(&sample(bundles.path(), "v2", &[]), &[]);
    eprintln!(
        "deployment on a full log disk: {} {}",
        record["status"], record["message"]
    );
    let body = match record["status"].as_str() {
        Some("succeeded") => "Hello from v2\n",
        _ => "Hello from v1\n",
    };
    assert_serving(host, body, "a full log disk");
    assert_no_torn_file(&host.path("var/lib/hostmanager"), "a full log disk");

    // Space returns: everything resumes.
    std::fs::remove_file(&log_filler).expect("free logs");
    let v3 = host.deploy_ok(&sample(bundles.path(), "v3", &[]));
    assert_serving(host, "Hello from v3\n", "space returned");
    let state: Value =
        serde_json::from_slice(&std::fs::read(&state_json).expect("state")).expect("json");
    assert_eq!(state["current"]["deployment_id"], v3["id"]);
    assert!(
        record_of(host, &v3["id"]).is_some(),
        "the new deployment is recorded"
    );
    wait_for(
        "the journal's recovery event",
        Duration::from_secs(10),
        || event_matching(host, "The event journal is written again"),
    );
    assert_journal_whole(host, "space returned");
    // The events after space returned are on disk: a restarted agent still lists them.
    host.stop_agent(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(15));
    host.start();
    assert!(event_matching(host, "The event journal is written again").is_some());
    // Rotation resumes, and the app log's lines (more than a block: copytruncate cuts whole
    // blocks) are all in the spool or the live file, once each.
    let lines: String = (0..200)
        .map(|n| format!("line {n} {}\n", "z".repeat(60)))
        .collect();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&app_log)
        .and_then(|mut f| f.write_all(lines.as_bytes()))
        .expect("append to the app log");
    host.rotate_logs_and_settle();
    let rotated: Vec<PathBuf> = walk(&host.path("var/log/rotated"))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("_srv_app_app.log-"))
        .collect();
    assert!(
        !rotated.is_empty(),
        "the app log was rotated once space returned"
    );
    let mut text = String::new();
    for path in &rotated {
        let bytes = std::fs::read(path).expect("rotated file");
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut text)
            .expect("a whole gzip file");
    }
    text.push_str(&std::fs::read_to_string(&app_log).expect("app log"));
    assert_eq!(
        text,
        format!("line before\n{lines}"),
        "no app log byte lost or doubled"
    );
    assert_no_torn_file(&host.path("var/lib/hostmanager"), "space returned");
}

/// The state disk fills in the middle of a deployment (a predeploy hook fills it): the
/// deployment cannot write its commit and fails, naming the file; the old release serves,
/// nothing is torn, and the next deployment, once there is room, succeeds.
#[test]
fn a_disk_that_fills_during_a_deployment_fails_it_and_the_old_release_serves() {
    assert!(
        is_root(),
        "mounting a small filesystem needs root: run the suite as root"
    );
    let host = TestHost::new();
    let state = Tmpfs::mount(&host.path("var/lib/hostmanager"), "8m");
    let logs = Tmpfs::mount(&host.path("var/log"), "64m");
    let mut full = FullHost { host, state, logs };
    let host = &mut full.host;
    host.start();
    let bundles = tempfile::tempdir().expect("tempdir");
    let v1 = host.deploy_ok(&sample(bundles.path(), "v1", &[]));
    let filler = host.path("var/lib/hostmanager/filler");
    let hook = format!(
        "#!/bin/sh\nhead -c 64M /dev/zero > {} 2>/dev/null || true\n",
        filler.display()
    );
    let entry = common::bundles::Entry::File(
        ".platform/hooks/predeploy/01_fill.sh",
        hook.as_bytes(),
        0o755,
    );
    let record = host.deploy(&sample(bundles.path(), "v2", &[entry]), &[]);
    eprintln!(
        "deployment filling the disk: {} {}",
        record["status"], record["message"]
    );
    assert_ne!(record["status"], "succeeded", "{record:#}");
    let message = record["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("No space left on device") && message.contains("var/lib/hostmanager"),
        "the failure names the file and the error: {message}"
    );
    assert_serving(host, "Hello from v1\n", "a disk filled during a deployment");
    assert_eq!(host.status()["release"]["deployment_id"], v1["id"]);
    assert_no_torn_file(
        &host.path("var/lib/hostmanager"),
        "a disk filled during a deployment",
    );
    std::fs::remove_file(&filler).expect("free state");
    let v3 = host.deploy_ok(&sample(bundles.path(), "v3", &[]));
    assert_serving(host, "Hello from v3\n", "space returned");
    assert_no_torn_file(&host.path("var/lib/hostmanager"), "space returned");
    // What could not be written while the disk was full is on disk now: a restarted agent
    // still knows the failed deployment as failed and serves v3.
    host.stop_agent(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(15));
    host.start();
    let failed = record_of(host, &record["id"]).expect("the failed deployment's record");
    assert_eq!(
        failed["status"], record["status"],
        "after a restart: {failed:#}"
    );
    assert_serving(host, "Hello from v3\n", "after a restart");
    assert_eq!(host.status()["release"]["deployment_id"], v3["id"]);
}
