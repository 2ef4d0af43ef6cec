//! The walking skeleton end to end: real agent binary, real nginx, real app processes.

mod common;

use std::time::Duration;

use common::bundles::{Entry, sample, zip};
use common::{TestHost, wait_for};

#[test]
fn deploys_v1_then_v2_through_nginx_and_reports_ok() {
    let mut host = TestHost::new();
    host.start();
    let bundles = tempfile::tempdir().expect("tempdir");

    let first = host.deploy_ok(&sample(bundles.path(), "v1", &[]));
    assert_eq!(host.body("/"), "Hello from v1\n");
    let second = host.deploy_ok(&sample(bundles.path(), "v2", &[]));
    assert_eq!(host.body("/"), "Hello from v2\n");
    assert!(second["id"].as_u64() > first["id"].as_u64());

    let status = wait_for("health Ok", Duration::from_secs(10), || {
        let status = host.status();
        (status["health"]["status"] == "Ok").then_some(status)
    });
    assert_eq!(status["release"]["version_label"], "sample-v2");
    assert_eq!(status["release"]["deployment_id"], second["id"]);
    assert_eq!(
        status["proxy"]["url"],
        format!("http://127.0.0.1:{}/", host.proxy_port)
    );
    let processes = status["processes"].as_array().expect("processes");
    assert_eq!(
        processes.len(),
        1,
        "the old release's web process was stopped: {processes:?}"
    );
    assert_eq!(processes[0]["name"], "web");
    assert_eq!(processes[0]["state"], "running");
    assert_eq!(
        processes[0]["port"], host.alternate_port,
        "the second release runs on the other port"
    );

    let text = host.cli_ok(&["status"]);
    assert!(text.contains("Health:     Ok (Green)"), "{text}");
    assert!(
        text.contains(&format!("sample-v2 (deployment {}", second["id"])),
        "{text}"
    );
}

#[test]
fn environment_properties_reach_the_app_but_not_the_agents_environment() {
    let mut host = TestHost::new();
    host.start();
    let bundles = tempfile::tempdir().expect("tempdir");
    let record = host.deploy(
        &sample(bundles.path(), "v1", &[]),
        &["--env", "GREETING=hello", "--env", "DB_PASSWORD=s3cret"],
    );
    assert_eq!(record["status"], "succeeded", "{record:#}");
    assert_eq!(host.body("/env/GREETING"), "hello\n");
    assert_eq!(
        host.body("/env/HOSTMANAGER_LOG"),
        "\n",
        "the agent's own environment does not leak into the app"
    );
    assert_eq!(host.body("/env/PORT"), format!("{}\n", host.app_port));
    // Secrets: stored 0600, never in records or events.
    let env_file = host.path(&format!(
        "var/lib/hostmanager/deployments/{}.env.json",
        record["id"]
    ));
    let mode = std::fs::metadata(&env_file)
        .expect("env file")
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    assert!(!record.to_string().contains("s3cret"));
    assert!(
        !serde_json::to_string(&host.events())
            .expect("json")
            .contains("s3cret")
    );
    assert!(!host.agent_log().contains("s3cret"));
}

#[test]
fn hostile_bundles_are_rejected_with_their_reason_and_v1_keeps_serving() {
    let mut host = TestHost::new().set("bundle", "max_unpacked_mib", 1);
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    host.deploy_ok(&sample(dir.path(), "v1", &[]));
    let big = vec![b'x'; 2 << 20];
    let cases: Vec<(&str, std::path::PathBuf, &str)> = vec![
        (
            "zip-slip",
            zip(
                dir.path(),
                "slip.zip",
                &[Entry::File("../../evil.txt", b"x", 0o644)],
            ),
            "escapes the release directory",
        ),
        (
            "absolute",
            zip(
                dir.path(),
                "abs.zip",
                &[Entry::File("/tmp/evil.txt", b"x", 0o644)],
            ),
            "absolute path",
        ),
        (
            "symlink",
            zip(dir.path(), "link.zip", &[Entry::Symlink("etc", "/etc")]),
            "points outside the release directory",
        ),
        (
            "oversize",
            zip(
                dir.path(),
                "big.zip",
                &[Entry::File("big.bin", &big, 0o644)],
            ),
            "max_unpacked_mib",
        ),
        (
            "bad Procfile",
            sample(
                dir.path(),
                "v-bad",
                &[Entry::File(
                    "Procfile",
                    b"web: python3 application.py\nthis is not a process\n",
                    0o644,
                )],
            ),
            "Procfile line 2",
        ),
    ];
    for (case, bundle, reason) in cases {
        let record = host.deploy(&bundle, &[]);
        assert_eq!(record["status"], "failed", "{case}: {record:#}");
        let message = record["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(reason),
            "{case}: {message:?} should contain {reason:?}"
        );
        assert_eq!(
            host.body("/"),
            "Hello from v1\n",
            "{case}: v1 keeps serving"
        );
    }
    assert!(!host.path("evil.txt").exists() && !std::path::Path::new("/tmp/evil.txt").exists());
    let events = host.events();
    let errors: Vec<_> = events
        .iter()
        .filter(|e| e["severity"] == "error" && e["source"] == "deploy")
        .collect();
    assert_eq!(
        errors.len(),
        5,
        "one error event per rejected bundle: {errors:#?}"
    );
    assert!(errors.iter().all(|e| {
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("keeps serving"))
    }));
}

#[test]
fn an_nginx_override_that_fails_nginx_t_is_rejected_and_the_old_config_keeps_serving() {
    let mut host = TestHost::new();
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    host.deploy_ok(&sample(dir.path(), "v1", &[]));
    let generation_before = host.status()["proxy"]["generation"].clone();
    let broken = sample(
        dir.path(),
        "v2",
        &[Entry::File(
            ".platform/nginx/conf.d/broken.conf",
            b"add_header X-Broken;\n",
            0o644,
        )],
    );
    let record = host.deploy(&broken, &[]);
    assert_eq!(record["status"], "failed", "{record:#}");
    let message = record["message"].as_str().expect("message");
    assert!(message.starts_with("proxy-config:"), "{message}");
    assert!(
        message.contains("invalid number of arguments in \"add_header\""),
        "nginx's own words: {message}"
    );
    assert_eq!(host.body("/"), "Hello from v1\n");
    assert_eq!(host.status()["proxy"]["generation"], generation_before);
    let event = host
        .events()
        .into_iter()
        .find(|e| e["severity"] == "error" && e["deployment_id"] == record["id"])
        .expect("an error event for the deployment");
    assert!(
        event["message"]
            .as_str()
            .expect("text")
            .contains("add_header"),
        "{event:#}"
    );
}

#[test]
fn a_killed_app_is_restarted_and_status_shows_why_while_it_is_down() {
    // The first restart after a stable run is immediate by default; delay it to see the outage.
    let mut host = TestHost::new()
        .set("supervise", "restart_delay", "3s")
        .set("supervise", "restart_backoff_initial", "3s")
        .set("supervise", "restart_backoff_max", "3s");
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    host.deploy_ok(&sample(dir.path(), "v1", &[]));
    let pid = wait_for("a running web process", Duration::from_secs(5), || {
        host.status()["processes"][0]["pid"].as_i64()
    });
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill app");

    let down = wait_for(
        "status to show the web process down",
        Duration::from_secs(10),
        || {
            let status = host.status();
            let causes = status["health"]["causes"].to_string();
            causes
                .contains("Process web is not running")
                .then_some(status)
        },
    );
    assert_eq!(down["health"]["status"], "Severe");
    assert_eq!(down["processes"][0]["state"], "backoff");

    let restarted = wait_for(
        "the web process to come back",
        Duration::from_secs(15),
        || {
            let status = host.status();
            let new_pid = status["processes"][0]["pid"].as_i64()?;
            (new_pid != pid && status["processes"][0]["state"] == "running").then_some(status)
        },
    );
    assert_eq!(restarted["processes"][0]["restarts"], 1);
    wait_for("the app to answer again", Duration::from_secs(10), || {
        host.get("/").ok().filter(|r| r.status == 200)
    });
    let warned = host.events().iter().any(|e| {
        e["source"] == "supervise" && e["message"].as_str().is_some_and(|m| m.contains("SIGKILL"))
    });
    assert!(warned, "an event says how the process ended");
}

#[test]
fn the_app_runs_as_the_app_user_in_its_own_session_never_as_root() {
    let mut host = TestHost::new();
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    host.deploy_ok(&sample(dir.path(), "v1", &[]));
    let pid = host.status()["processes"][0]["pid"].as_i64().expect("pid");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let uid: u32 = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .expect("Uid line")
        .split_whitespace()
        .next()
        .expect("uid")
        .parse()
        .expect("number");
    let expected = nix::unistd::User::from_name(&common::app_user())
        .expect("lookup")
        .expect("user")
        .uid
        .as_raw();
    assert_eq!(uid, expected);
    if common::is_root() {
        assert_ne!(uid, 0, "apps never run as root");
    }
    let sid = nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(pid as i32))).expect("sid");
    assert_eq!(
        sid.as_raw(),
        pid as i32,
        "the app leads its own session and process group"
    );
}

#[test]
fn sigterm_stops_the_agent_promptly_with_exit_0_and_the_app_keeps_serving() {
    let mut host = TestHost::new();
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    host.deploy_ok(&sample(dir.path(), "v1", &[]));
    let status = host.stop_agent(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "agent log:\n{}", host.agent_log());
    assert_eq!(
        host.body("/"),
        "Hello from v1\n",
        "apps and nginx outlive the agent"
    );
    let output = host.cli(&["status"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.lines().count(),
        1,
        "one line when the agent is down: {stderr}"
    );
    assert!(stderr.contains("not running"), "{stderr}");
}

#[test]
fn the_agent_tells_systemd_it_is_ready() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket_path = dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).expect("bind notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut host = TestHost::new();
    host.start_with_env(&[("NOTIFY_SOCKET", socket_path.to_str().expect("utf-8"))]);
    let mut buffer = [0u8; 256];
    let read = socket
        .recv(&mut buffer)
        .expect("a notification from the agent");
    assert_eq!(
        std::str::from_utf8(&buffer[..read]).expect("text").trim(),
        "READY=1"
    );
}
