//! `kill -9` of the agent at random instants while it rotates logs every few milliseconds and
//! publishes them to a real moto_server: after the restarts, what was published plus the live
//! log hold every line the writer wrote exactly once (no byte lost, none duplicated).
//! The seed is printed; `CRASH_SEED=<n>` replays a run.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::moto::Moto;
use common::{TestHost, wait_for};
use serde_json::Value;

const BUCKET: &str = "hm-logs";
const PREFIX: &str = "resources/environments/logs/publish/e-local/i-test/";
const KILLS: usize = 12;

fn log_status(host: &TestHost) -> Value {
    serde_json::from_str(&host.cli_ok(&["logs", "status", "--json"])).expect("status json")
}

fn gunzip(bytes: &[u8]) -> String {
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut text)
        .expect("a whole gzip object");
    text
}

/// How many times each line number appears in `text`.
fn counts(text: &str) -> BTreeMap<usize, usize> {
    let mut seen = BTreeMap::new();
    for line in text.lines() {
        let n = line
            .strip_prefix("line ")
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("a torn or foreign line {line:?}"));
        *seen.entry(n).or_insert(0) += 1;
    }
    seen
}

#[test]
fn kills_at_random_instants_of_rotation_and_publication_lose_and_duplicate_nothing() {
    let mut rng = common::crash::seeded_rng();
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let mut host = TestHost::new()
        .set("aws", "endpoint_url", moto.endpoint())
        .set("aws", "region", "us-east-1")
        .set("logs", "extra_files", vec!["srv/app/*.log"])
        .set("logs", "rotate_size_kib", 4)
        .set("logs", "check_interval", "10ms")
        .set("logs.publish", "enabled", true)
        .set("logs.publish", "destination", format!("s3://{BUCKET}"))
        .set("logs.publish", "interval", "50ms")
        .set("logs.publish", "retry_initial", "100ms")
        .set("logs.publish", "retry_max", "500ms");
    host.start();
    let log = host.path("srv/app/app.log");
    std::fs::create_dir_all(log.parent().expect("parent")).expect("mkdir");
    std::fs::write(&log, "").expect("create log");
    wait_for(
        "the agent to follow the log",
        Duration::from_secs(10),
        || {
            let watched = log_status(&host)["watched_files"].as_array()?.clone();
            watched.iter().any(|f| f == "srv/app/app.log").then_some(())
        },
    );
    // Writes until told to stop (paced: 40 lines, then 10 ms), then says how many lines it wrote.
    let stop = host.path("stop-writing");
    let script = format!(
        "import os, time\nn = 0\nwith open({log:?}, 'a') as out:\n    while not os.path.exists({stop:?}):\n        out.write(f'line {{n}} ' + 'z' * 50 + '\\n')\n        out.flush()\n        n += 1\n        if n % 40 == 0:\n            time.sleep(0.01)\nprint(n)\n",
        log = log.to_str().expect("utf-8"),
        stop = stop.to_str().expect("utf-8"),
    );
    let writer = Command::new("python3")
        .arg("-c")
        .arg(script)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn writer");
    let mut instants = Vec::new();
    for round in 0..KILLS {
        let before = log_status(&host)["rotations"].as_u64().unwrap_or(0);
        wait_for("a rotation", Duration::from_secs(30), || {
            (log_status(&host)["rotations"].as_u64().unwrap_or(0) > before).then_some(())
        });
        let delay = Duration::from_millis(rng.u64(0..300));
        // The pace: the random instant of the kill amid rotations and uploads.
        std::thread::sleep(delay);
        let status = host.stop_agent(nix::sys::signal::Signal::SIGKILL, Duration::from_secs(10));
        assert!(!status.success(), "round {round}: killed");
        instants.push(delay);
        host.start();
    }
    std::fs::write(&stop, "").expect("stop the writer");
    let output = writer.wait_with_output().expect("writer");
    assert!(output.status.success());
    let total: usize = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("count");
    host.rotate_logs_and_settle();
    wait_for("the spool to drain", Duration::from_secs(60), || {
        (log_status(&host)["pending_files"] == 0).then_some(())
    });
    let keys: Vec<String> = moto
        .keys(BUCKET, PREFIX)
        .into_iter()
        .filter(|k| k.starts_with(&format!("{PREFIX}_srv_app_app.log-")))
        .collect();
    let mut text: String = keys
        .iter()
        .map(|k| gunzip(&moto.get(BUCKET, k).expect("object")))
        .collect();
    text.push_str(&std::fs::read_to_string(&log).expect("live log"));
    let seen = counts(&text);
    let lost: Vec<usize> = (0..total).filter(|n| !seen.contains_key(n)).collect();
    let duplicated: Vec<usize> = seen
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(n, _)| *n)
        .collect();
    let line_bytes = "line 0 ".len() + 50 + 1;
    eprintln!(
        "{KILLS} kills at {instants:?}; {total} lines in {} objects; lost {} (~{} bytes), duplicated {}",
        keys.len(),
        lost.len(),
        lost.len() * line_bytes,
        duplicated.len()
    );
    assert!(
        keys.len() >= KILLS,
        "rotations were published: {}",
        keys.len()
    );
    assert!(
        lost.is_empty(),
        "lines lost: {:?}",
        &lost[..lost.len().min(10)]
    );
    assert!(
        duplicated.is_empty(),
        "lines duplicated: {:?}",
        &duplicated[..duplicated.len().min(10)]
    );
    assert_eq!(seen.len(), total, "no line beyond what was written");
}
