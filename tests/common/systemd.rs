//! systemd-analyze on the repository's unit files (Debian package systemd).

use std::path::Path;
use std::process::Command;

/// `systemd-analyze verify` of `text` saved as `name`; panics with what it reported about the
/// unit. `verify` resolves ExecStart's binary, so callers point `text` at a built one.
pub fn assert_verifies(name: &str, text: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join(name);
    std::fs::write(&copy, text).expect("write unit");
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze (Debian package systemd)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let problems: Vec<&str> = stderr.lines().filter(|l| l.contains(name)).collect();
    assert!(
        output.status.success() && problems.is_empty(),
        "systemd-analyze verify: {stderr}"
    );
}

/// The overall exposure `systemd-analyze security --offline` gives the unit (0 best, 10 worst),
/// with its report for failure messages.
pub fn exposure(unit: &Path) -> (f64, String) {
    let name = unit
        .file_name()
        .expect("unit name")
        .to_string_lossy()
        .to_string();
    let output = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(unit)
        .output()
        .expect("systemd-analyze (Debian package systemd)");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let line = stdout
        .lines()
        .find(|l| l.contains(&format!("Overall exposure level for {name}:")))
        .unwrap_or_else(|| {
            panic!(
                "no exposure line:\n{stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    let exposure = line
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("no number in {line:?}"));
    (exposure, stdout)
}
