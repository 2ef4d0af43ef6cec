//! Publication of rotated logs to a real moto_server: Elastic Beanstalk's keys with the right
//! bytes, an outage in the middle, the spool's disk budget, and kill -9 of the agent while it
//! rotates and uploads. Every check is on bytes: gunzip every object and compare with what the
//! writer wrote.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::moto::Moto;
use common::{TestHost, wait_for};
use serde_json::Value;

const BUCKET: &str = "hm-logs";
const PREFIX: &str = "resources/environments/logs/publish/e-local/i-test/";

fn host(moto: &Moto, bucket: &str) -> TestHost {
    TestHost::new()
        .set("aws", "endpoint_url", moto.endpoint())
        .set("aws", "region", "us-east-1")
        .set("logs", "extra_files", vec!["srv/app/*.log"])
        .set("logs", "rotate_size_kib", 8)
        .set("logs", "check_interval", "50ms")
        .set("logs.publish", "enabled", true)
        .set("logs.publish", "destination", format!("s3://{bucket}"))
        .set("logs.publish", "interval", "200ms")
        .set("logs.publish", "retry_initial", "100ms")
        .set("logs.publish", "retry_max", "500ms")
}

/// Appends numbered lines to `path` through one O_APPEND descriptor, `per_second` of them.
fn writer(path: &Path, first: usize, count: usize, pause_every: usize) -> Child {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    let script = format!(
        "import time\nwith open({path:?}, 'a') as out:\n    for n in range({first}, {end}):\n        out.write(f'line {{n}} ' + 'z' * 50 + '\\n')\n        out.flush()\n        if n % {pause_every} == 0:\n            time.sleep(0.01)\n",
        path = path.to_str().expect("utf-8"),
        end = first + count,
    );
    Command::new("python3")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn writer")
}

/// Creates `path` empty and waits until the agent follows it, so rotation sees it from the start.
fn follow(host: &TestHost, path: &Path) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, "").expect("create log");
    let relative = path
        .strip_prefix(host.root.path())
        .expect("under the root")
        .to_str()
        .expect("utf-8")
        .to_string();
    wait_for(
        "the agent to follow the log",
        Duration::from_secs(10),
        || {
            let watched = log_status(host)["watched_files"].as_array()?.clone();
            watched.iter().any(|f| *f == *relative).then_some(())
        },
    );
}

fn gunzip(bytes: &[u8]) -> String {
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut text)
        .expect("gunzip");
    text
}

fn log_status(host: &TestHost) -> Value {
    serde_json::from_str(&host.cli_ok(&["logs", "status", "--json"])).expect("status json")
}

/// Every published object of `key` (a path key), by name, gunzipped.
fn objects(moto: &Moto, bucket: &str, key: &str) -> BTreeMap<String, String> {
    moto.keys(bucket, PREFIX)
        .into_iter()
        .filter(|k| k.starts_with(&format!("{PREFIX}{key}-")))
        .map(|k| {
            let text = gunzip(&moto.get(bucket, &k).expect("object"));
            (k, text)
        })
        .collect()
}

/// Waits until the spool has nothing left to upload and no rotation is half done.
fn wait_until_published(host: &TestHost) {
    host.rotate_logs_and_settle();
    wait_for("the spool to drain", Duration::from_secs(60), || {
        (log_status(host)["pending_files"] == 0).then_some(())
    });
    // The last rotation may have been compressed after the status was taken: check again.
    wait_for("the spool to stay drained", Duration::from_secs(30), || {
        (log_status(host)["pending_files"] == 0).then_some(())
    });
}

/// The numbers of every line, in order, asserting the prefix and that none repeats or is missing.
fn assert_lines(text: &str, count: usize) {
    let numbers: Vec<usize> = text
        .lines()
        .map(|l| {
            l.strip_prefix("line ")
                .and_then(|rest| rest.split(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("unexpected line {l:?}"))
        })
        .collect();
    let expected: Vec<usize> = (0..count).collect();
    assert!(
        numbers == expected,
        "{} lines; first difference at {:?}",
        numbers.len(),
        numbers.iter().zip(&expected).position(|(a, b)| a != b)
    );
}

#[test]
fn rotated_files_appear_under_elastic_beanstalk_keys_with_their_bytes() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let mut host = host(&moto, BUCKET);
    host.start();
    let log = host.path("srv/app/app.log");
    follow(&host, &log);
    assert!(writer(&log, 0, 3000, 100).wait().expect("writer").success());
    wait_until_published(&host);

    let published = objects(&moto, BUCKET, "_srv_app_app.log");
    assert!(
        published.len() >= 2,
        "several rotations: {:?}",
        published.keys()
    );
    for key in published.keys() {
        let name = key.strip_prefix(PREFIX).expect("prefix");
        let epoch = name
            .strip_prefix("_srv_app_app.log-")
            .and_then(|rest| rest.strip_suffix(".gz"))
            .expect("<path_key>-<epoch>.gz");
        assert!(
            epoch.len() == 10 && epoch.bytes().all(|b| b.is_ascii_digit()),
            "{name}"
        );
        // The local copy in the spool is the same file.
        let local = std::fs::read(host.path(&format!("var/log/rotated/{name}"))).expect("local");
        assert_eq!(moto.get(BUCKET, key).expect("object"), local, "{name}");
    }
    let mut text: String = published.values().cloned().collect();
    text.push_str(&std::fs::read_to_string(&log).expect("live log"));
    assert_lines(&text, 3000);
    assert_eq!(log_status(&host)["destination"], format!("s3://{BUCKET}"));
}

#[test]
fn an_outage_loses_nothing_duplicates_nothing_and_keeps_the_spool_in_budget() {
    let mut moto = Moto::start();
    moto.create_bucket(BUCKET);
    let mut host = host(&moto, BUCKET).set("logs", "spool_budget_mib", 1);
    host.start();
    let log = host.path("srv/app/app.log");
    follow(&host, &log);
    assert!(writer(&log, 0, 2000, 100).wait().expect("writer").success());
    wait_until_published(&host);
    let before = objects(&moto, BUCKET, "_srv_app_app.log");
    assert!(!before.is_empty());

    moto.stop();
    let mut during = writer(&log, 2000, 4000, 50);
    let mut rotations = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while during.try_wait().expect("writer").is_none() {
        assert!(
            Instant::now() < deadline,
            "the writer did not finish in 60 s"
        );
        host.cli_ok(&["logs", "rotate"]);
        rotations += 1;
        let status = log_status(&host);
        assert!(
            status["spool_bytes"].as_u64() <= Some(1 << 20),
            "the spool stays within its budget: {status:#}"
        );
        // Paces the rotations while the writer runs (a load pattern, not a synchronisation).
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(during.wait().expect("writer").success());
    host.cli_ok(&["logs", "rotate"]);
    let status = wait_for(
        "uploads to fail during the outage",
        Duration::from_secs(30),
        || {
            let status = log_status(&host);
            (status["publish_failures"].as_u64() > Some(0)).then_some(status)
        },
    );
    assert!(status["pending_files"].as_u64() > Some(0), "{status:#}");
    assert!(
        status["spool_bytes"].as_u64() <= Some(1 << 20),
        "{status:#}"
    );
    assert!(rotations >= 2);

    moto.restart();
    moto.create_bucket(BUCKET);
    wait_until_published(&host);
    let after = objects(&moto, BUCKET, "_srv_app_app.log");
    for key in after.keys() {
        assert!(!before.contains_key(key), "{key} was uploaded twice");
    }
    let mut all = before;
    all.extend(after);
    let mut text: String = all.values().cloned().collect();
    text.push_str(&std::fs::read_to_string(&log).expect("live log"));
    assert_lines(&text, 6000);
    assert_eq!(log_status(&host)["shed_files"], 0);
}

#[test]
fn over_budget_the_oldest_unpublished_files_are_shed_with_an_event() {
    let moto = Moto::start();
    // No bucket: every upload fails and the spool only grows.
    let mut host = host(&moto, "hm-missing").set("logs", "spool_budget_mib", 1);
    host.start();
    let log = host.path("srv/app/noise.log");
    follow(&host, &log);
    // Incompressible lines, so the gzipped spool passes the 1 MiB budget quickly.
    let script = format!(
        "import os, base64, time\nwith open({:?}, 'a') as out:\n    for n in range(400):\n        out.write(f'line {{n}} ' + base64.b64encode(os.urandom(6000)).decode() + '\\n')\n        out.flush()\n        time.sleep(0.005)\n",
        log.to_str().expect("utf-8")
    );
    let mut noisy = Command::new("python3")
        .arg("-c")
        .arg(script)
        .spawn()
        .expect("spawn");
    assert!(noisy.wait().expect("writer").success());
    host.cli_ok(&["logs", "rotate"]);

    let event = wait_for("a shedding event", Duration::from_secs(30), || {
        host.events().into_iter().find(|e| {
            e["source"] == "logs"
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("Log spool over its budget"))
        })
    });
    assert_eq!(event["severity"], "warning");
    let shed: Vec<String> = event["details"]["shed"]
        .as_array()
        .expect("shed list")
        .iter()
        .map(|v| v.as_str().expect("name").to_string())
        .collect();
    let mut kept: Vec<String> = std::fs::read_dir(host.path("var/log/rotated"))
        .expect("spool")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".gz") && !n.starts_with('.'))
        .collect();
    kept.sort();
    assert!(!kept.is_empty());
    for name in &shed {
        assert!(
            name < &kept[0],
            "{name} was shed but is newer than kept {}",
            kept[0]
        );
    }
    let status = wait_for("the shed counters", Duration::from_secs(10), || {
        let status = log_status(&host);
        (status["shed_files"].as_u64() >= Some(shed.len() as u64)).then_some(status)
    });
    assert!(status["shed_bytes"].as_u64() > Some(0));
    assert!(
        status["spool_bytes"].as_u64() <= Some(1 << 20),
        "{status:#}"
    );
}

#[test]
fn kill_9_while_rotating_and_uploading_loses_and_duplicates_nothing() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let mut host =
        host(&moto, BUCKET)
            .set("logs", "rotate_size_kib", 4)
            .set("logs", "check_interval", "10ms");
    host.start();
    let log = host.path("srv/app/app.log");
    follow(&host, &log);
    // Writes until told to stop, however slow the machine, then says how many lines it wrote.
    let stop = host.path("stop-writing");
    let script = format!(
        "import os, time\nn = 0\nwith open({log:?}, 'a') as out:\n    while not os.path.exists({stop:?}):\n        out.write(f'line {{n}} ' + 'z' * 50 + '\\n')\n        out.flush()\n        n += 1\n        if n % 40 == 0:\n            time.sleep(0.01)\nprint(n)\n",
        log = log.to_str().expect("utf-8"),
        stop = stop.to_str().expect("utf-8"),
    );
    let child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn writer");
    for round in 0..4 {
        // Rotations run every few milliseconds while the writer writes: a kill lands amid one.
        wait_for("some rotations", Duration::from_secs(30), || {
            (log_status(&host)["rotations"].as_u64() >= Some(3)).then_some(())
        });
        let status = host.stop_agent(nix::sys::signal::Signal::SIGKILL, Duration::from_secs(10));
        assert!(!status.success(), "round {round}: killed");
        host.start();
    }
    std::fs::write(&stop, "").expect("stop the writer");
    let output = child.wait_with_output().expect("writer");
    assert!(output.status.success());
    let total: usize = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("line count");
    wait_until_published(&host);
    let published = objects(&moto, BUCKET, "_srv_app_app.log");
    let mut text: String = published.values().cloned().collect();
    text.push_str(&std::fs::read_to_string(&log).expect("live log"));
    assert_lines(&text, total);
}

#[test]
fn stopping_the_agent_publishes_what_the_logs_hold() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let mut host = host(&moto, BUCKET).set("logs", "rotate_size_kib", 10240);
    host.start();
    let log = host.path("srv/app/app.log");
    follow(&host, &log);
    assert!(writer(&log, 0, 400, 1000).wait().expect("writer").success());
    assert!(
        objects(&moto, BUCKET, "_srv_app_app.log").is_empty(),
        "nothing rotated before the stop"
    );
    let status = host.stop_agent(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(30));
    assert_eq!(status.code(), Some(0));
    let published = objects(&moto, BUCKET, "_srv_app_app.log");
    assert!(!published.is_empty(), "the stop published the log");
    let mut text: String = published.values().cloned().collect();
    let live = std::fs::read_to_string(&log).expect("live log");
    assert!(
        live.len() < 4096,
        "at most the last partial block stays behind: {} bytes",
        live.len()
    );
    text.push_str(&live);
    assert_lines(&text, 400);
}
