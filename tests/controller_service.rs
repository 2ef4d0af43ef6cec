//! The controller's systemd unit: valid for systemd, and sandboxed far tighter than the agent's
//! (the controller runs no apps, so it needs no capability and writes only its state).

mod common;

use std::path::Path;
use std::process::Command;

use common::fleet::controller_bin;

fn unit() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/hostmanager-controller.service")
}

#[test]
fn the_controller_unit_passes_systemd_analyze_verify() {
    let text = std::fs::read_to_string(unit()).expect("unit file");
    // verify resolves the binaries: point the unit at the one this build made.
    let bin = controller_bin();
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("hostmanager-controller.service");
    std::fs::write(
        &copy,
        text.replace("/usr/bin/hostmanager-controller", &bin.to_string_lossy()),
    )
    .expect("write");
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze (Debian package systemd)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let problems: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("hostmanager-controller.service"))
        .collect();
    assert!(
        output.status.success() && problems.is_empty(),
        "systemd-analyze verify: {stderr}"
    );
}

#[test]
fn the_controller_unit_runs_unprivileged_in_a_tight_sandbox() {
    let text = std::fs::read_to_string(unit()).expect("unit file");
    for line in [
        "DynamicUser=yes",
        "CapabilityBoundingSet=",
        "NoNewPrivileges=yes",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing");
    }
    let output = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(unit())
        .output()
        .expect("systemd-analyze (Debian package systemd)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find(|l| l.contains("Overall exposure level for hostmanager-controller.service:"))
        .unwrap_or_else(|| {
            panic!(
                "no exposure line:\n{stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    let exposure: f64 = line
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("no number in {line:?}"));
    assert!(exposure <= 2.0, "{line}\n{stdout}");
}
