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

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let unit = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/hostmanager.service");
    let text = std::fs::read_to_string(&unit).expect("unit file");
    for required in [
        "Type=notify",
        "KillMode=process",
        "Restart=always",
        "ExecStartPre=/usr/bin/hostmanager validate",
    ] {
        assert!(text.contains(required), "unit lacks {required}");
    }
    // verify needs the ExecStart binary to exist: point it at the one we built.
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("hostmanager.service");
    std::fs::write(&copy, text.replace("/usr/bin/hostmanager", BIN)).expect("write");
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze (Debian package systemd)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let problems: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("hostmanager.service"))
        .collect();
    assert!(
        output.status.success() && problems.is_empty(),
        "systemd-analyze verify: {stderr}"
    );
}
