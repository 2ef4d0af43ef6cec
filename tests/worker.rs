//! The worker tier with a real agent, real nginx, the sample worker app (examples/worker-app)
//! and SQS from moto_server through the real aws-sdk-sqs (docs/worker.md): what reaches the
//! app, what is deleted, what comes back and when, the dead-letter queue, the connection
//! bound, deployments and a `kill -9` under a stream of messages, and periodic tasks sent by
//! the controller's leader only.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::bundles::{Entry, zip};
use common::fleet::{TestController, enrolled_host};
use common::moto::Moto;
use common::sqs::{
    TestQueue, answers_by_id, create_queue, header, records, records_dir, worker_app_dir,
};
use common::{TestHost, wait_for};
use serde_json::Value;

/// The sample worker app as a bundle of `version`, recording into `records`, with `extra`
/// entries (a cron.yaml, `.ebextensions`).
fn worker_bundle(
    dir: &Path,
    version: &str,
    records: &Path,
    extra: &[Entry<'_>],
) -> std::path::PathBuf {
    let app = worker_app_dir();
    let application = std::fs::read(app.join("application.py")).expect("worker app");
    let procfile = std::fs::read(app.join("Procfile")).expect("Procfile");
    let version_line = format!("{version}\n");
    let properties = format!(
        "option_settings:\n  aws:elasticbeanstalk:application:environment:\n    WORKER_RECORDS: {}\n",
        records.display()
    );
    let mut entries = vec![
        Entry::File("application.py", &application, 0o755),
        Entry::File("Procfile", &procfile, 0o644),
        Entry::File("VERSION", version_line.as_bytes(), 0o644),
        Entry::File(
            ".ebextensions/00-records.config",
            properties.as_bytes(),
            0o644,
        ),
    ];
    // An extra entry with a default's name replaces it (another Procfile).
    let name = |entry: &Entry<'_>| match entry {
        Entry::File(name, ..) => name.to_string(),
        other => format!("{other:?}"),
    };
    entries.retain(|default| !extra.iter().any(|e| name(e) == name(default)));
    entries.extend_from_slice(extra);
    zip(dir, &format!("worker-{version}.zip"), &entries)
}

fn worker_host(moto: &Moto, queue: &TestQueue) -> TestHost {
    TestHost::new()
        .set("aws", "region", "us-east-1")
        .set("aws", "endpoint_url", moto.endpoint())
        .set("worker", "queue_url", queue.url.clone())
        .set("worker", "stats_interval", "1s")
}

fn sqsd_log(host: &TestHost) -> String {
    std::fs::read_to_string(host.path("var/log/aws-sqsd/default.log")).unwrap_or_default()
}

/// Waits until message `id` was answered as `done` says, and returns its answers.
fn wait_answers(file: &Path, id: &str, what: &str, done: impl Fn(&[u64]) -> bool) -> Vec<u64> {
    wait_for(what, Duration::from_secs(60), || {
        let answers = answers_by_id(&records(file)).remove(id).unwrap_or_default();
        done(&answers).then_some(answers)
    })
}

fn record_of<'a>(all: &'a [Value], id: &str) -> Vec<&'a Value> {
    all.iter()
        .filter(|r| header(r, "X-Aws-Sqsd-Msgid") == Some(id))
        .collect()
}

#[test]
fn messages_reach_the_app_with_sqsds_headers_and_only_a_200_deletes_them() {
    let moto = Moto::start();
    let queue = create_queue(&moto, "jobs", Some(3));
    let mut host = worker_host(&moto, &queue)
        .set("worker", "http_connections", 3)
        .set("worker", "visibility_timeout", 120)
        .set("worker", "error_visibility_timeout", 1)
        .set("worker", "inactivity_timeout", 2)
        .set("worker", "max_retries", 3);
    host.start();
    let file = records_dir(host.path("").as_path()).join("received.jsonl");
    let tmp = tempfile::tempdir().expect("tmp");
    // The bundle's option settings move the POST to /jobs, over the host's "/".
    let path_config = b"option_settings:\n  aws:elasticbeanstalk:sqsd:\n    HttpPath: /jobs\n";
    let bundle = worker_bundle(
        tmp.path(),
        "v1",
        &file,
        &[Entry::File(
            ".ebextensions/10-sqsd.config",
            path_config,
            0o644,
        )],
    );
    host.deploy_ok(&bundle);

    // A message with attributes: every header, through nginx, then deleted.
    let id = queue.send(
        r#"{"job":"hello"}"#,
        &[("tenant", "acme"), ("my_attr", "underscored")],
    );
    wait_answers(&file, &id, "the first message answered", |a| a == [200]);
    let all = records(&file);
    let record = record_of(&all, &id)[0];
    assert_eq!(record["path"], "/jobs");
    assert_eq!(record["body"], r#"{"job":"hello"}"#);
    assert!(
        header(record, "User-Agent")
            .expect("ua")
            .starts_with("aws-sqsd/"),
        "{record}"
    );
    assert_eq!(header(record, "Content-Type"), Some("application/json"));
    assert_eq!(header(record, "X-Aws-Sqsd-Queue"), Some("jobs"));
    assert_eq!(header(record, "X-Aws-Sqsd-Receive-Count"), Some("1"));
    assert_eq!(header(record, "X-Aws-Sqsd-Path"), Some("/jobs"));
    assert_eq!(header(record, "X-Aws-Sqsd-Attr-tenant"), Some("acme"));
    assert_eq!(
        header(record, "X-Aws-Sqsd-Attr-my_attr"),
        Some("underscored"),
        "nginx must pass '_' in a worker's headers"
    );
    for name in ["X-Aws-Sqsd-First-Received-At", "X-Aws-Sqsd-Sent-At"] {
        let at = header(record, name).unwrap_or_else(|| panic!("{name} missing: {record}"));
        assert!(
            at.len() == 20 && at.ends_with('Z') && at.as_bytes()[10] == b'T',
            "{name}: {at}"
        );
    }
    wait_for(
        "the processed message deleted",
        Duration::from_secs(20),
        || (queue.depth() == (0, 0)).then_some(()),
    );

    // 500 twice: back after the error visibility timeout (1 s, not the 120 s visibility), then 200.
    let failing = queue.send(r#"{"status":500,"until_receive":3}"#, &[]);
    let answers = wait_answers(&file, &failing, "500, 500, then 200", |a| {
        a.last() == Some(&200)
    });
    assert_eq!(answers, [500, 500, 200]);
    let counts: Vec<String> = record_of(&records(&file), &failing)
        .iter()
        .map(|r| {
            header(r, "X-Aws-Sqsd-Receive-Count")
                .unwrap_or("?")
                .to_string()
        })
        .collect();
    assert_eq!(counts, ["1", "2", "3"]);

    // Only exactly 200 deletes: a 204 is an error as on Elastic Beanstalk.
    let no_content = queue.send(r#"{"status":204,"until_receive":2}"#, &[]);
    let answers = wait_answers(&file, &no_content, "204, then 200", |a| {
        a.last() == Some(&200)
    });
    assert_eq!(answers, [204, 200]);

    // A request past the inactivity timeout (2 s) is a failure too: the app's late 200 is lost,
    // the message comes back and is answered in time.
    let slow = queue.send(r#"{"sleep":4,"until_receive":2}"#, &[]);
    wait_for(
        "the slow message answered on its second receive",
        Duration::from_secs(60),
        || {
            record_of(&records(&file), &slow)
                .iter()
                .any(|r| header(r, "X-Aws-Sqsd-Receive-Count") == Some("2"))
                .then_some(())
        },
    );
    wait_for(
        "the timeout in the sqsd log",
        Duration::from_secs(20),
        || {
            sqsd_log(&host)
                .lines()
                .any(|l| l.contains(&format!("socket-err: {slow} (1) timeout")))
                .then_some(())
        },
    );

    // Always failing: after 3 receives SQS's redrive moves it to the dead-letter queue.
    let poison = queue.send(r#"{"status":503,"poison":true}"#, &[]);
    wait_for(
        "the poison message in the dead-letter queue",
        Duration::from_secs(60),
        || {
            queue
                .dead_letter_bodies()
                .iter()
                .any(|b| b.contains("poison"))
                .then_some(())
        },
    );
    assert_eq!(answers_by_id(&records(&file))[&poison], [503, 503, 503]);
    assert!(
        sqsd_log(&host).contains(&format!("http-err: {poison} (3) 503 - ")),
        "{}",
        sqsd_log(&host)
    );

    // No more requests in flight than connections (3), however many messages wait.
    let burst: Vec<String> = (0..12)
        .map(|i| queue.send(&format!(r#"{{"sleep":0.4,"n":{i}}}"#), &[]))
        .collect();
    for id in &burst {
        wait_answers(&file, id, "every burst message answered", |a| a == [200]);
    }
    let all = records(&file);
    let most = burst
        .iter()
        .flat_map(|id| record_of(&all, id))
        .filter_map(|r| r["concurrent"].as_u64())
        .max()
        .expect("records");
    assert!(
        most <= 3,
        "{most} requests at once with http_connections = 3"
    );
    assert!(
        most >= 2,
        "the burst ran one at a time ({most}): the daemon does not use its connections"
    );

    // The failures above are events naming the app's answer, and a health cause while recent.
    let events: Vec<String> = host
        .events()
        .iter()
        .filter(|e| e["source"] == "worker")
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e.contains("HTTP 500 from POST /jobs")),
        "{events:#?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("Worker daemon started: SQS queue jobs")),
        "{events:#?}"
    );
    // Published every second: wait for the counts the records already show.
    let status = wait_for(
        "the worker's totals in status",
        Duration::from_secs(10),
        || {
            let status = host.status();
            let totals = &status["worker"]["totals"];
            (totals["processed"].as_u64() >= Some(15) && totals["failed"].as_u64() >= Some(6))
                .then_some(status)
        },
    );
    let worker = &status["worker"];
    assert_eq!(worker["queue"], "jobs");
    assert!(
        worker["dead_letter"]
            .as_str()
            .expect("redrive policy")
            .contains("maxReceiveCount"),
        "{worker:#}"
    );
    let text = host.cli_ok(&["status"]);
    assert!(text.contains("Worker:     SQS queue jobs"), "{text}");
    let health = host.health();
    let causes = health["causes"].to_string() + &health["pending"].to_string();
    assert!(causes.contains("The worker daemon failed"), "{health:#}");

    // stop-apps holds the intake: a message sent meanwhile is not posted to the stopped app
    // (where it would fail its way into the dead-letter queue); it runs once after start.
    host.cli_ok(&["stop-apps"]);
    wait_for(
        "the intake paused by stop-apps",
        Duration::from_secs(10),
        || {
            sqsd_log(&host)
                .contains("intake paused: the apps are stopped (stop-apps)")
                .then_some(())
        },
    );
    let waiting = queue.send(r#"{"job":"while stopped"}"#, &[]);
    host.cli_ok(&["start"]);
    let answers = wait_answers(
        &file,
        &waiting,
        "the waiting message answered after start",
        |a| a == [200],
    );
    assert_eq!(answers, [200]);
    let log = sqsd_log(&host);
    assert!(
        !log.lines().any(|l| l.contains(&format!("-err: {waiting}"))),
        "the message failed while the apps were stopped:\n{log}"
    );

    // A broken cron.yaml fails the deployment with its line; v1 keeps processing.
    let cron =
        b"version: 1\ncron:\n - name: nightly\n   url: /nightly\n   schedule: \"0 0 L * *\"\n";
    let broken = worker_bundle(
        tmp.path(),
        "v2",
        &file,
        &[Entry::File("cron.yaml", cron, 0o644)],
    );
    let record = host.deploy(&broken, &[]);
    assert_eq!(record["status"], "failed", "{record:#}");
    let message = record["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("cron.yaml line 5: task 1: schedule \"0 0 L * *\""),
        "{message}"
    );
    let after = queue.send(r#"{"job":"after the failed deployment"}"#, &[]);
    wait_answers(&file, &after, "v1 still processing", |a| a == [200]);
}

#[test]
fn deployments_and_a_killed_agent_lose_no_message() {
    let moto = Moto::start();
    let queue = create_queue(&moto, "stream", None);
    let mut host = worker_host(&moto, &queue)
        .set("worker", "http_connections", 5)
        .set("worker", "visibility_timeout", 12)
        .set("worker", "error_visibility_timeout", 0)
        .set("worker", "inactivity_timeout", 10);
    host.start();
    let file = records_dir(host.path("").as_path()).join("received.jsonl");
    let tmp = tempfile::tempdir().expect("tmp");
    host.deploy_ok(&worker_bundle(tmp.path(), "v1", &file, &[]));

    // A job longer than nginx's drain (5 s) running in v1 when v2 deploys (alone in the queue, so it is the request in flight): v1 is stopped
    // only once it is done, so it is not cut and run again.
    let long_job = queue.send(r#"{"sleep":8,"long":true}"#, &[]);
    wait_for("the long job in flight", Duration::from_secs(20), || {
        (host.status()["worker"]["in_flight"].as_u64() >= Some(1)).then_some(())
    });
    // A steady stream while v2 deploys.
    let sending = Arc::new(AtomicBool::new(true));
    let sender = {
        let (queue, sending) = (queue.clone(), sending.clone());
        std::thread::spawn(move || {
            let mut sent = Vec::new();
            while sending.load(Ordering::Relaxed) {
                sent.push(queue.send(&format!(r#"{{"n":{}}}"#, sent.len()), &[]));
                // The stream's pace (about 50 messages a second), not a wait for anything.
                std::thread::sleep(Duration::from_millis(20));
            }
            sent
        })
    };
    wait_for("the stream flowing to v1", Duration::from_secs(30), || {
        records(&file)
            .iter()
            .any(|r| r["version"] == "v1")
            .then_some(())
    });
    let logged_before = sqsd_log(&host).len();
    host.deploy_ok(&worker_bundle(tmp.path(), "v2", &file, &[]));
    // No receive while traffic moved: the intake was held for the cutover and given back.
    wait_for(
        "the intake resumed after the cutover",
        Duration::from_secs(10),
        || {
            let log = sqsd_log(&host).split_off(logged_before);
            let paused = log.find("intake paused")?;
            log[paused..].contains("intake resumed").then_some(())
        },
    );
    wait_for("the stream flowing to v2", Duration::from_secs(30), || {
        let to_v2 = records(&file)
            .iter()
            .filter(|r| r["version"] == "v2")
            .count();
        (to_v2 >= 20).then_some(())
    });
    sending.store(false, Ordering::Relaxed);
    let sent = sender.join().expect("sender");
    assert!(sent.len() >= 20, "only {} messages sent", sent.len());
    let answered = wait_for(
        "every streamed message answered",
        Duration::from_secs(60),
        || {
            let answers = answers_by_id(&records(&file));
            sent.iter()
                .all(|id| answers.contains_key(id))
                .then_some(answers)
        },
    );
    for id in &sent {
        assert_eq!(
            answered[id],
            [200],
            "message {id} ran {} times",
            answered[id].len()
        );
    }
    let long = wait_answers(&file, &long_job, "the long job answered", |a| !a.is_empty());
    assert_eq!(
        long,
        [200],
        "the long job was cut by the deployment and ran again"
    );
    let long_record = record_of(&records(&file), &long_job)[0].clone();
    assert_eq!(long_record["version"], "v1", "{long_record}");

    // kill -9 with requests in flight: their messages come back after the visibility timeout
    // and the agent started again processes them.
    let slow: Vec<String> = (0..4)
        .map(|i| queue.send(&format!(r#"{{"sleep":2,"k":{i}}}"#), &[]))
        .collect();
    wait_for("requests in flight", Duration::from_secs(20), || {
        (host.status()["worker"]["in_flight"].as_u64() >= Some(3)).then_some(())
    });
    host.stop_agent(nix::sys::signal::Signal::SIGKILL, Duration::from_secs(5));
    host.start();
    for id in &slow {
        wait_for(
            "the in-flight message processed after the restart",
            Duration::from_secs(60),
            || {
                record_of(&records(&file), id)
                    .iter()
                    .any(|r| {
                        header(r, "X-Aws-Sqsd-Receive-Count").is_some_and(|c| c != "1")
                            && r["status"] == 200
                    })
                    .then_some(())
            },
        );
    }
    wait_for("nothing left in the queue", Duration::from_secs(30), || {
        (queue.depth() == (0, 0)).then_some(())
    });
}

#[test]
fn only_the_controllers_leader_sends_each_periodic_task_once() {
    let moto = Moto::start();
    let queue = create_queue(&moto, "cron", None);
    let controller = TestController::start(None);
    controller.cli_json(&["env", "create", "workers"]);
    let token = controller.enrollment_token("workers", 2);
    let shared = tempfile::Builder::new()
        .prefix("hm-cron-")
        .tempdir()
        .expect("tmp");
    std::fs::set_permissions(
        shared.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let file = records_dir(shared.path()).join("received.jsonl");
    let mut hosts: Vec<TestHost> = (0..2)
        .map(|i| {
            enrolled_host(&controller, &format!("w-{i}"), &token)
                .set("aws", "region", "us-east-1")
                .set("aws", "endpoint_url", moto.endpoint())
                .set("worker", "queue_url", queue.url.clone())
        })
        .collect();
    for host in &mut hosts {
        host.start();
    }
    let cron = b"version: 1\ncron:\n - name: every-minute\n   url: /tasks/minute\n   schedule: \"* * * * *\"\n";
    let bundle = worker_bundle(
        shared.path(),
        "v1",
        &file,
        &[Entry::File("cron.yaml", cron, 0o644)],
    );
    controller.deploy_wait("workers", &bundle, "v1");
    let leaders: Vec<bool> = wait_for(
        "one leader among the workers",
        Duration::from_secs(30),
        || {
            let flags: Vec<bool> = hosts
                .iter()
                .map(|h| {
                    h.status()["worker"]["periodic"]["leader"]
                        .as_bool()
                        .unwrap_or(false)
                })
                .collect();
            (flags.iter().filter(|l| **l).count() == 1).then_some(flags)
        },
    );
    assert_eq!(leaders.iter().filter(|l| **l).count(), 1);

    // Two runs (each minute): each reaches one app once, with EB's headers and an empty body.
    let runs = wait_for("two runs of the task", Duration::from_secs(150), || {
        let mut by_time: BTreeMap<String, usize> = BTreeMap::new();
        for record in records(&file) {
            if let Some(at) = header(&record, "X-Aws-Sqsd-Scheduled-At") {
                *by_time.entry(at.to_string()).or_default() += 1;
            }
        }
        (by_time.len() >= 2).then_some(by_time)
    });
    for (at, count) in &runs {
        assert_eq!(*count, 1, "the run of {at} arrived {count} times: {runs:?}");
    }
    let all = records(&file);
    let record = all
        .iter()
        .find(|r| header(r, "X-Aws-Sqsd-Taskname").is_some())
        .expect("a periodic task");
    assert_eq!(header(record, "X-Aws-Sqsd-Taskname"), Some("every-minute"));
    assert_eq!(record["path"], "/tasks/minute");
    assert_eq!(record["body"], "");
    let ids: HashSet<&str> = all
        .iter()
        .filter_map(|r| header(r, "X-Aws-Sqsd-Msgid"))
        .collect();
    assert_eq!(ids.len(), all.len(), "a message ran twice");
}

#[test]
fn without_nginx_a_refused_connection_returns_the_message() {
    let moto = Moto::start();
    let queue = create_queue(&moto, "direct", None);
    let mut host = worker_host(&moto, &queue)
        .set("proxy", "enabled", false)
        .set("worker", "error_visibility_timeout", 1);
    host.start();
    let file = records_dir(host.path("").as_path()).join("received.jsonl");
    let down = host.path("worker-records/down");
    // The web process cannot start while `down` exists: nothing listens on its port.
    let procfile = format!(
        "web: if [ -e {} ]; then exit 3; fi; exec python3 application.py\n",
        down.display()
    );
    let tmp = tempfile::tempdir().expect("tmp");
    let bundle = worker_bundle(
        tmp.path(),
        "v1",
        &file,
        &[Entry::File("Procfile", procfile.as_bytes(), 0o644)],
    );
    host.deploy_ok(&bundle);
    let first = queue.send(r#"{"job":"direct"}"#, &[]);
    wait_answers(&file, &first, "a message posted to the web process", |a| {
        a == [200]
    });

    std::fs::write(&down, b"").expect("flag");
    let pid = host.status()["processes"][0]["pid"]
        .as_i64()
        .expect("web pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill web");
    let refused = queue.send(r#"{"job":"while down"}"#, &[]);
    wait_for(
        "the refused POST in the sqsd log",
        Duration::from_secs(30),
        || {
            sqsd_log(&host)
                .lines()
                .any(|l| l.contains(&format!("socket-err: {refused} (1) connection failed")))
                .then_some(())
        },
    );
    std::fs::remove_file(&down).expect("unflag");
    let answers = wait_answers(
        &file,
        &refused,
        "the refused message answered once the app is back",
        |a| a == [200],
    );
    assert_eq!(answers, [200]);
    let record = record_of(&records(&file), &refused)[0].clone();
    assert_ne!(
        header(&record, "X-Aws-Sqsd-Receive-Count"),
        Some("1"),
        "{record}"
    );
}
