//! The controller's systemd unit: valid for systemd, and sandboxed far tighter than the agent's
//! (the controller runs no apps, so it needs no capability and writes only its state).

mod common;

use std::path::Path;

use common::fleet::controller_bin;

fn unit() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/hostmanager-controller.service")
}

#[test]
fn the_controller_unit_passes_systemd_analyze_verify() {
    let text = std::fs::read_to_string(unit()).expect("unit file");
    // verify resolves the binaries: point the unit at the one this build made.
    let bin = controller_bin();
    common::systemd::assert_verifies(
        "hostmanager-controller.service",
        &text.replace("/usr/bin/hostmanager-controller", &bin.to_string_lossy()),
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
    let (exposure, report) = common::systemd::exposure(&unit());
    assert!(exposure <= 2.0, "exposure {exposure}\n{report}");
}
