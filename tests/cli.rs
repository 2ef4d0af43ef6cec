//! The binary's exit codes and messages for config validation and usage.

mod common;

use std::process::Command;

use common::BIN;

#[test]
fn validate_lists_every_mistake_and_exits_78() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("agent.toml");
    std::fs::write(
        &path,
        "[app]\nport = \"five\"\n[proxy]\nlisten = \"nowhere\"\n[health]\nintervall = \"5s\"\n",
    )
    .expect("write");
    let output = Command::new(BIN)
        .args(["validate", "--config"])
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("3 problem(s)"), "{stderr}");
    assert!(stderr.contains("app.port: wrong type"), "{stderr}");
    assert!(
        stderr.contains("proxy.listen: \"nowhere\" is not an address"),
        "{stderr}"
    );
    assert!(stderr.contains("health.intervall: unknown key"), "{stderr}");
}

#[test]
fn validate_accepts_the_shipped_configs() {
    let root = env!("CARGO_MANIFEST_DIR");
    for config in ["examples/local/agent.toml", "packaging/agent.toml"] {
        let output = Command::new(BIN)
            .args(["validate", "--config"])
            .arg(format!("{root}/{config}"))
            .output()
            .expect("run");
        assert!(
            output.status.success(),
            "{config}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn bad_usage_exits_64() {
    let output = Command::new(BIN)
        .arg("no-such-command")
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(64));
}

fn unit_text() -> String {
    let unit = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/hostmanager.service");
    std::fs::read_to_string(&unit).expect("unit file")
}

/// What systemd reads for `key` in `[Service]`: the last assignment, comments skipped (a
/// `text.contains` would also accept a commented-out line).
fn service_setting(text: &str, key: &str) -> Option<String> {
    let mut section = "";
    let mut value = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
        } else if section == "[Service]"
            && !line.starts_with('#')
            && !line.starts_with(';')
            && let Some((k, v)) = line.split_once('=')
            && k.trim() == key
        {
            value = Some(v.trim().to_string());
        }
    }
    value
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let text = unit_text();
    // The behaviour each one promises is tested against the running agent:
    // KillMode=process (only the agent gets SIGTERM) by
    // walking_skeleton::sigterm_stops_the_agent_promptly_with_exit_0_and_the_app_keeps_serving,
    // Type=notify by walking_skeleton::the_agent_tells_systemd_it_is_ready.
    for (key, expected) in [
        ("Type", "notify"),
        ("KillMode", "process"),
        ("Restart", "always"),
        ("ExecStartPre", "/usr/bin/hostmanager validate"),
        ("RestartPreventExitStatus", "78"),
    ] {
        assert_eq!(
            service_setting(&text, key).as_deref(),
            Some(expected),
            "[Service] {key}="
        );
    }
    // verify needs the ExecStart binary to exist: point it at the one we built.
    common::systemd::assert_verifies(
        "hostmanager.service",
        &text.replace("/usr/bin/hostmanager", BIN),
    );
}

#[test]
fn the_systemd_unit_sandbox_rates_at_most_5_exposure() {
    let unit = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/hostmanager.service");
    let (exposure, report) = common::systemd::exposure(&unit);
    assert!(exposure <= 5.0, "exposure {exposure}\n{report}");
}

#[test]
fn the_systemd_unit_sandbox_leaves_what_the_apps_need() {
    let text = unit_text();
    // Each would break apps that run fine without the sandbox (the unit says why): /tmp
    // removed under running apps at an agent restart, cgroup limits refused, JITs killed,
    // host metrics unreadable, no user switch.
    for key in [
        "PrivateTmp",
        "ProtectControlGroups",
        "MemoryDenyWriteExecute",
        "ProcSubset",
        "PrivateUsers",
        "User",
        "DynamicUser",
    ] {
        assert_eq!(service_setting(&text, key), None, "[Service] {key}= is set");
    }
    let capabilities = service_setting(&text, "CapabilityBoundingSet").expect("a bounding set");
    for needed in [
        "CAP_SETUID",
        "CAP_SETGID",
        "CAP_CHOWN",
        "CAP_KILL",
        "CAP_NET_BIND_SERVICE",
        "CAP_DAC_OVERRIDE",
    ] {
        assert!(
            capabilities.split_whitespace().any(|c| c == needed),
            "{needed} is missing from {capabilities}"
        );
    }
    assert_eq!(
        service_setting(&text, "NoNewPrivileges").as_deref(),
        Some("yes")
    );
}

/// Runs the CLI against an empty root (no agent: these checks come first) with `stdin`.
fn usage(args: &[&str], stdin: &str) -> (Option<i32>, String) {
    use std::io::Write;
    let root = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(BIN)
        .arg("--root")
        .arg(root.path())
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let output = child.wait_with_output().expect("wait");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_bad_env_file_line_is_a_usage_error_naming_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("app.env");
    std::fs::write(
        &file,
        "# secrets\nDB_PASSWORD=s3cret\n\nnot an assignment\n",
    )
    .expect("write");
    let file = file.to_str().expect("utf-8");
    let (code, stderr) = usage(&["deploy", "/nonexistent.zip", "--env-file", file], "");
    assert_eq!(code, Some(64), "{stderr}");
    assert!(
        stderr.contains(&format!("{file}:4: not KEY=VALUE")),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "{stderr}");

    let (code, stderr) = usage(&["configure", "--env-file", "-"], "A=1\n9LIVES=x\n");
    assert_eq!(code, Some(64), "{stderr}");
    assert!(
        stderr
            .contains("hostmanager configure: standard input:2: \"9LIVES\" is not a property name"),
        "{stderr}"
    );

    let (code, stderr) = usage(&["configure", "--env-file", "/nonexistent/app.env"], "");
    assert_eq!(code, Some(64), "{stderr}");
    assert!(
        stderr.contains("--env-file /nonexistent/app.env: "),
        "{stderr}"
    );
}

#[test]
fn a_valid_env_file_gets_past_the_usage_checks() {
    // With no agent running, a valid file makes the CLI go on to the control socket, and
    // fail there (1), not on its arguments (64).
    let (code, stderr) = usage(
        &["configure", "--env-file", "-", "--set", "B=2"],
        "# ok\nA=1\r\n",
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(!stderr.contains("--env-file"), "{stderr}");
}
