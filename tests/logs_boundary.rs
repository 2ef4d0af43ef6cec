//! The logs module as the app user's adversary sees it: an app that points its "logs" at a
//! root-only file (a symbolic link, a link to a directory, a hard link) or at another user's
//! file gets a warning event naming the path, and the file is never read, rotated, cut,
//! tailed or bundled. Tail reports and bundles are private (0600 in a 0700 directory), and
//! nginx's hourly healthd logs are pruned by age and count, never the current hour nor one
//! the metrics follower has not finished.

mod common;

use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt, lchown, symlink};
use std::path::Path;
use std::time::Duration;

use common::{TestHost, app_user, wait_for};
use serde_json::Value;

/// What the root-only file holds: severe lines, so that a watcher reading it would say so.
fn secret_text() -> String {
    (0..2000)
        .map(|n| format!("ROOT-ONLY-SECRET {n} FATAL do not read me\n"))
        .collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o7777
}

fn gunzip(path: &Path) -> String {
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).expect("open gz"))
        .read_to_string(&mut text)
        .expect("gunzip");
    text
}

fn logs_warnings(host: &TestHost) -> Vec<String> {
    host.events()
        .into_iter()
        .filter(|e| e["source"] == "logs" && e["severity"] == "warning")
        .filter_map(|e| e["message"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn logs_linked_to_root_only_files_are_refused_with_an_event_and_never_read_or_cut() {
    let user = app_user();
    let app = nix::unistd::User::from_name(&user)
        .expect("lookup")
        .expect("app user");
    let mut host = TestHost::new()
        .set(
            "logs",
            "extra_files",
            vec!["srv/app/*.log", "srv/linked/*.log"],
        )
        .set("logs.watch", "files", vec!["srv/watch/*.log"]);
    // Root-only files with known content, in a root-only directory of the test's root.
    let secrets = host.path("secret");
    std::fs::create_dir_all(&secrets).expect("mkdir");
    std::fs::set_permissions(&secrets, PermissionsExt::from_mode(0o700)).expect("chmod");
    let shadow = secrets.join("shadow");
    let in_dir = secrets.join("db.log");
    for file in [&shadow, &in_dir] {
        std::fs::write(file, secret_text()).expect("write secret");
        std::fs::set_permissions(file, PermissionsExt::from_mode(0o600)).expect("chmod");
    }
    let before = std::fs::read(&shadow).expect("read secret");
    // The app's log directories belong to the app user, as on Elastic Beanstalk.
    for dir in ["srv/app", "srv/watch"] {
        std::fs::create_dir_all(host.path(dir)).expect("mkdir");
        std::os::unix::fs::chown(host.path(dir), Some(app.uid.as_raw()), None).expect("chown");
    }
    let good = host.path("srv/app/good.log");
    std::fs::write(&good, "x".repeat(8192) + "\nan honest line\n").expect("write");
    std::os::unix::fs::chown(&good, Some(app.uid.as_raw()), None).expect("chown");
    // 1. A copytruncate source that is a link to a root-only file.
    symlink(&shadow, host.path("srv/app/app.log")).expect("symlink");
    // 2. A watched file that is a link to it.
    symlink(&shadow, host.path("srv/watch/w.log")).expect("symlink");
    // 3. A hard link to it (a second name of the same file).
    std::fs::hard_link(&in_dir, host.path("srv/app/hard.log")).expect("hard link");
    // 4. A directory link the app made, to the root-only directory.
    symlink(&secrets, host.path("srv/linked")).expect("symlink");
    lchown(host.path("srv/linked"), Some(app.uid.as_raw()), None).expect("lchown");
    // 5. Another user's file in the app's directory.
    let other = host.path("srv/app/other.log");
    std::fs::write(&other, secret_text()).expect("write");
    std::os::unix::fs::chown(&other, Some(65534), Some(65534)).expect("chown nobody");
    let refused = [
        ("srv/app/app.log", "symbolic link"),
        ("srv/watch/w.log", "symbolic link"),
        ("srv/app/hard.log", "hard links"),
        ("srv/linked/db.log", "symbolic link owned by uid"),
        ("srv/app/other.log", "is owned by uid 65534"),
    ];
    host.start();

    let warnings = wait_for(
        "a warning event for every refused log",
        Duration::from_secs(15),
        || {
            let warnings = logs_warnings(&host);
            refused
                .iter()
                .all(|(path, why)| {
                    warnings
                        .iter()
                        .any(|w| w.starts_with(&format!("{path} is not read")) && w.contains(why))
                })
                .then_some(warnings)
        },
    );
    assert!(
        warnings.iter().all(|w| !w.contains("ROOT-ONLY-SECRET")),
        "{warnings:#?}"
    );
    // A log that appears now is followed by a later discovery, which meets the refused ones
    // again (reported once: see below).
    let later = host.path("srv/app/later.log");
    std::fs::write(&later, "later\n").expect("write");
    std::os::unix::fs::chown(&later, Some(app.uid.as_raw()), None).expect("chown");
    wait_for("a later discovery", Duration::from_secs(10), || {
        let status: Value =
            serde_json::from_str(&host.cli_ok(&["logs", "status", "--json"])).ok()?;
        let watched = status["watched_files"].as_array()?.clone();
        watched
            .iter()
            .any(|f| f == "srv/app/later.log")
            .then_some(())
    });

    // Rotation (every non-empty log), tail and bundle.
    host.rotate_logs_and_settle();
    let tail: Value =
        serde_json::from_str(&host.cli_ok(&["logs", "tail", "--json"])).expect("tail json");
    let text = tail["text"].as_str().expect("text");
    assert!(
        text.contains("an honest line"),
        "the app's real log is tailed: {text}"
    );
    let job: Value =
        serde_json::from_str(&host.cli_ok(&["logs", "bundle", "--json"])).expect("bundle json");
    assert_eq!(job["state"], "done", "{job:#}");

    // The root-only files are untouched, byte for byte.
    assert_eq!(std::fs::read(&shadow).expect("read"), before);
    assert_eq!(std::fs::read(&in_dir).expect("read"), before);
    assert_eq!(std::fs::read(&other).expect("read"), before);

    // Their content is in no rotated file, tail, bundle or event.
    let rotated: Vec<_> = std::fs::read_dir(host.path("var/log/rotated"))
        .expect("rotated dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(
        rotated
            .iter()
            .any(|p| p.to_string_lossy().contains("_srv_app_good.log-")),
        "the app's real log is rotated: {rotated:?}"
    );
    for path in &rotated {
        assert!(
            !gunzip(path).contains("ROOT-ONLY-SECRET"),
            "{}",
            path.display()
        );
    }
    assert!(!text.contains("ROOT-ONLY-SECRET"), "{text}");
    let bundle = job["path"].as_str().expect("bundle path");
    let mut archive =
        zip::ZipArchive::new(std::fs::File::open(bundle).expect("open bundle")).expect("zip");
    let names: Vec<String> = archive
        .file_names()
        .map(|name| name.expect("entry name").into_owned())
        .collect();
    assert!(names.iter().any(|n| n == "srv/app/good.log"), "{names:?}");
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).expect("entry");
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).expect("read entry");
        assert!(
            !String::from_utf8_lossy(&bytes).contains("ROOT-ONLY-SECRET"),
            "{:?} in the bundle holds the secret",
            entry.name()
        );
    }
    // Once per path and reason, however many times discovery, rotation or a request met it.
    let warnings = logs_warnings(&host);
    let app_log: Vec<&String> = warnings
        .iter()
        .filter(|w| w.starts_with("srv/app/app.log is not read"))
        .collect();
    assert_eq!(app_log.len(), 1, "{warnings:#?}");
    let events = host.events();
    assert!(
        events
            .iter()
            .all(|e| !e.to_string().contains("ROOT-ONLY-SECRET")),
        "an event holds the secret"
    );

    // Private: the tail report and the bundle hold what the logs hold.
    let tail_path = tail["path"].as_str().expect("tail path");
    assert_eq!(mode(Path::new(tail_path)), 0o600);
    assert_eq!(mode(Path::new(bundle)), 0o600);
    assert_eq!(mode(&host.path("var/lib/hostmanager/logs/requests")), 0o700);
    assert_eq!(std::fs::metadata(bundle).expect("meta").uid(), 0);
}

fn hour_file(at: jiff::Timestamp) -> String {
    format!("application.log.{}", at.strftime("%Y-%m-%d-%H"))
}

fn plant(dir: &Path, names: &[String]) {
    for name in names {
        std::fs::write(dir.join(name), "1700000000.000\"/\"200\"0.001\"0.001\"-\n").expect("plant");
    }
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("healthd dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn healthd_logs_are_pruned_by_age_and_count_but_not_the_current_hour_or_unread_ones() {
    let now = jiff::Timestamp::now();
    let hours_ago = |n: i64| hour_file(now - jiff::SignedDuration::from_hours(n));
    let old: Vec<String> = (0..4)
        .map(|h| format!("application.log.2020-01-01-{h:02}"))
        .collect();
    let (current, last_hour) = (hours_ago(0), hours_ago(1));
    let mut host = TestHost::new()
        .set("logs", "check_interval", "200ms")
        .set("logs", "healthd_keep_hours", 3)
        // The follower's position is saved when a window closes: none closes in this test.
        .set("metrics", "window", "1h");
    let dir = host.path("var/log/nginx/healthd");
    std::fs::create_dir_all(&dir).expect("mkdir");
    plant(&dir, &old);
    plant(&dir, &[last_hour.clone(), current.clone()]);
    // The metrics follower has not finished the third old file yet.
    let inode = std::fs::metadata(dir.join(&old[2])).expect("meta").ino();
    let position = host.path("var/lib/hostmanager/metrics/healthd-position.json");
    std::fs::create_dir_all(position.parent().expect("parent")).expect("mkdir");
    std::fs::write(
        &position,
        serde_json::json!({"at": "in_file", "file": old[2], "inode": inode, "offset": 0})
            .to_string(),
    )
    .expect("position");
    host.start();
    let expected = vec![
        old[2].clone(),
        old[3].clone(),
        last_hour.clone(),
        current.clone(),
    ];
    wait_for(
        "the two old files the follower finished pruned",
        Duration::from_secs(10),
        || (listing(&dir) == expected).then_some(()),
    );

    // By count, once the follower is past everything (a fresh position: the newest's end).
    host.stop_agent(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(10));
    std::fs::remove_file(&position).expect("rm position");
    let recent = [hours_ago(5), hours_ago(4), hours_ago(3)];
    plant(&dir, &recent);
    let mut host = host
        .set("logs", "healthd_keep_hours", 48)
        .set("logs", "healthd_keep_files", 3);
    host.start();
    let mut expected = vec![recent[2].clone(), last_hour, current];
    expected.sort();
    wait_for(
        "only the three newest files kept",
        Duration::from_secs(10),
        || (listing(&dir) == expected).then_some(()),
    );
}
