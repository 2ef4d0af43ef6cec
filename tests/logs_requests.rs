//! Logs on request, end to end with the sample app behind nginx and a real moto_server: the
//! tail report (Elastic Beanstalk's format and key), the bundle (every current and rotated log,
//! uploaded), nginx's logs rotated with a USR1 reopen, and `events --since/--follow`.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::bundles::sample;
use common::moto::Moto;
use common::{BIN, TestHost, wait_for};
use serde_json::Value;

const BUCKET: &str = "hm-requests";

fn rule() -> String {
    "-".repeat(40)
}

#[test]
fn tail_and_bundle_follow_elastic_beanstalk_and_nginx_reopens_its_logs() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let mut host = TestHost::new()
        .set("aws", "endpoint_url", moto.endpoint())
        .set("aws", "region", "us-east-1")
        .set("logs", "extra_files", vec!["srv/app/*.log"])
        .set("logs.publish", "enabled", true)
        .set("logs.publish", "destination", format!("s3://{BUCKET}"))
        .set("logs.publish", "interval", "200ms");
    host.start();
    let bundles = tempfile::tempdir().expect("tempdir");
    host.deploy_ok(&sample(bundles.path(), "v1", &[]));
    for _ in 0..3 {
        assert_eq!(host.body("/"), "Hello from v1\n");
    }
    let extra = host.path("srv/app/long.log");
    std::fs::create_dir_all(extra.parent().expect("parent")).expect("mkdir");
    let lines: String = (1..=150).map(|n| format!("entry {n}\n")).collect();
    std::fs::write(&extra, lines).expect("write");

    // Tail: one text object, a section per file, the last 100 lines.
    let tail: Value =
        serde_json::from_str(&host.cli_ok(&["logs", "tail", "--json"])).expect("json");
    let text = tail["text"].as_str().expect("text");
    let expected: String = (51..=150).map(|n| format!("entry {n}\n")).collect();
    assert!(
        text.contains(&format!(
            "{r}\n/srv/app/long.log\n{r}\n{expected}\n",
            r = rule()
        )),
        "{text}"
    );
    for file in [
        "/var/log/web.stdout.log",
        "/var/log/nginx/access.log",
        "/var/log/nginx/error.log",
    ] {
        assert!(
            text.contains(&format!("{r}\n{file}\n{r}\n", r = rule())),
            "{file} in {text}"
        );
    }
    assert!(
        text.contains("GET / HTTP"),
        "access log lines are in the tail: {text}"
    );
    let key = tail["key"].as_str().expect("uploaded");
    let name = tail["name"].as_str().expect("name");
    assert!(
        name.starts_with("TailLogs-") && name.ends_with(".out"),
        "{name}"
    );
    assert_eq!(
        key,
        format!("resources/environments/logs/tail/e-local/i-test/{name}")
    );
    assert_eq!(moto.get(BUCKET, key).expect("tail object"), text.as_bytes());
    assert_eq!(
        std::fs::read_to_string(tail["path"].as_str().expect("path")).expect("local"),
        text
    );
    let printed = host.cli_ok(&["logs", "tail"]);
    assert!(printed.starts_with(&rule()), "{printed}");

    // nginx's logs are renamed, nginx reopens them on USR1, the old lines are rotated.
    let access = host.path("var/log/nginx/access.log");
    let before = std::fs::read_to_string(&access).expect("access log");
    host.cli_ok(&["logs", "rotate"]);
    assert_eq!(host.body("/status/201"), "status 201 from v1\n");
    let after = wait_for(
        "nginx to log into the new access.log",
        Duration::from_secs(10),
        || {
            let text = std::fs::read_to_string(&access).ok()?;
            text.contains("GET /status/201").then_some(text)
        },
    );
    assert!(
        !after.contains("GET / HTTP"),
        "the new file starts empty: {after}"
    );
    let rotated = wait_for(
        "the old access.log compressed",
        Duration::from_secs(20),
        || {
            std::fs::read_dir(host.path("var/log/rotated"))
                .ok()?
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .find(|n| n.starts_with("_var_log_nginx_access.log-") && n.ends_with(".gz"))
        },
    );
    let mut old = String::new();
    flate2::read::GzDecoder::new(
        std::fs::File::open(host.path(&format!("var/log/rotated/{rotated}"))).expect("gz"),
    )
    .read_to_string(&mut old)
    .expect("gunzip");
    assert!(
        old.starts_with(&before),
        "the rotated file holds the old lines"
    );

    // Bundle: a zip of every current and rotated log, uploaded.
    let job: Value = serde_json::from_str(&host.cli_ok(&["logs", "bundle", "--upload", "--json"]))
        .expect("json");
    assert_eq!(job["state"], "done", "{job:#}");
    let key = job["key"].as_str().expect("uploaded");
    let name = job["name"].as_str().expect("name");
    assert!(
        name.starts_with("BundleLogs-") && name.ends_with(".zip"),
        "{name}"
    );
    assert_eq!(
        key,
        format!("resources/environments/logs/bundle/e-local/i-test/{name}")
    );
    let zipped = moto.get(BUCKET, key).expect("bundle object");
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zipped)).expect("zip");
    let names: Vec<String> = archive
        .file_names()
        .map(|name| name.expect("entry name").into_owned())
        .collect();
    for expected in [
        "var/log/web.stdout.log",
        "var/log/nginx/access.log",
        "var/log/hostmanager/deploy.log",
        "srv/app/long.log",
        &format!("var/log/rotated/{rotated}"),
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    let mut long = String::new();
    archive
        .by_name("srv/app/long.log")
        .expect("entry")
        .read_to_string(&mut long)
        .expect("read");
    assert_eq!(long, std::fs::read_to_string(&extra).expect("extra"));
    let printed = host.cli_ok(&["logs", "bundle"]);
    assert!(printed.contains("BundleLogs-"), "{printed}");
}

#[test]
fn events_since_and_follow() {
    let mut host = TestHost::new().set("logs.watch", "files", vec!["var/log/app/*.log"]);
    host.start();
    let recent: Vec<Value> =
        serde_json::from_str(&host.cli_ok(&["events", "--since", "10m", "--json"])).expect("json");
    assert!(recent.iter().any(|e| e["source"] == "agent"), "{recent:?}");
    let future: Vec<Value> = serde_json::from_str(&host.cli_ok(&[
        "events",
        "--since",
        "2999-01-01T00:00:00Z",
        "--json",
    ]))
    .expect("json");
    assert!(future.is_empty());
    assert_eq!(
        host.cli(&["events", "--since", "soonish"]).status.code(),
        Some(64)
    );

    let mut follower = Command::new(BIN)
        .arg("--root")
        .arg(host.root.path())
        .args(["events", "--follow", "--json", "--severity", "error"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("follow");
    let stdout = follower.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let log = host.path("var/log/app/crash.log");
    std::fs::create_dir_all(log.parent().expect("parent")).expect("mkdir");
    std::fs::write(&log, "FATAL the disk is on fire\n").expect("write");
    let line = rx
        .recv_timeout(Duration::from_secs(15))
        .expect("a followed event");
    let event: Value = serde_json::from_str(&line).expect("one JSON event per line");
    assert_eq!(event["source"], "logs");
    assert!(
        event["message"]
            .as_str()
            .is_some_and(|m| m.contains("FATAL the disk is on fire"))
    );
    let _ = follower.kill();
    let _ = follower.wait();
}
