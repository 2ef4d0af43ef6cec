//! Bundles laid out as Elastic Beanstalk's platform samples (no Procfile), from
//! `tests/fixtures/platforms/<platform>`, and the checks every platform's test makes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::TestHost;
use super::bundles::{Entry, zip};
use super::load::{Load, assert_every_request_served};

fn fixture_dir(platform: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/platforms")
        .join(platform)
}

/// Every file of the fixture (relative path, content), in name order.
fn fixture_files(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("fixture dir")
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        if path.is_dir() {
            fixture_files(root, &path, out);
        } else {
            let relative = path
                .strip_prefix(root)
                .expect("inside")
                .display()
                .to_string();
            out.push((relative, std::fs::read(&path).expect("fixture file")));
        }
    }
}

/// The fixture of `platform` at `version` plus `extra` files (an extra file replaces the
/// fixture's of the same name; an empty content removes it), zipped into `dir`.
pub fn platform_bundle(
    dir: &Path,
    platform: &str,
    version: &str,
    extra: &[(&str, &[u8])],
) -> PathBuf {
    let root = fixture_dir(platform);
    let mut files = Vec::new();
    fixture_files(&root, &root, &mut files);
    files.push(("VERSION".to_string(), format!("{version}\n").into_bytes()));
    for (name, content) in extra {
        files.retain(|(existing, _)| existing != name);
        if !content.is_empty() {
            files.push((name.to_string(), content.to_vec()));
        }
    }
    let entries: Vec<Entry<'_>> = files
        .iter()
        .map(|(name, content)| Entry::File(name, content, 0o644))
        .collect();
    zip(dir, &format!("{platform}-{version}.zip"), &entries)
}

/// The Java fixture compiled and packed as `app.jar` (javac and jar from the JDK).
pub fn java_jar(dir: &Path) -> Vec<u8> {
    let classes = dir.join("classes");
    std::fs::create_dir_all(&classes).expect("mkdir");
    let source = fixture_dir("java").join("Application.java");
    let javac = Command::new("javac")
        .arg("-d")
        .arg(&classes)
        .arg(&source)
        .output()
        .expect("javac (apt install openjdk-17-jdk-headless)");
    assert!(
        javac.status.success(),
        "javac: {}",
        String::from_utf8_lossy(&javac.stderr)
    );
    let jar = dir.join("app.jar");
    let packed = Command::new("jar")
        .arg("--create")
        .arg("--file")
        .arg(&jar)
        .arg("--main-class")
        .arg("Application")
        .arg("-C")
        .arg(&classes)
        .arg(".")
        .output()
        .expect("jar");
    assert!(
        packed.status.success(),
        "jar: {}",
        String::from_utf8_lossy(&packed.stderr)
    );
    std::fs::read(&jar).expect("app.jar")
}

/// Deploys `next` under continuous load: every request answers `before` or `after`.
pub fn redeploy_under_load(host: &TestHost, next: &Path, before: &str, after: &str) {
    let load = Load::start(host.proxy_port, "/", 2);
    load.run_for(60);
    host.deploy_ok(next);
    load.run_for(60);
    let outcomes = load.finish();
    assert_eq!(host.body("/"), after);
    let valid = BTreeSet::from([before.to_string(), after.to_string()]);
    assert_every_request_served(&outcomes, &valid);
}

/// A deployment that fails in `platform-build` with `expected` in its message, while the
/// release before it keeps serving `serving`.
pub fn build_fails(host: &TestHost, bundle: &Path, expected: &str, serving: &str) {
    let record = host.deploy(bundle, &[]);
    assert_eq!(record["status"], "failed", "{record:#}");
    let message = record["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("platform-build: platform build `"),
        "the failing step and command are named: {message}"
    );
    assert!(
        message.contains(expected),
        "the tool's own words: {message}"
    );
    assert_eq!(host.body("/"), serving, "the old release keeps serving");
}

/// The serving release's platform as `status --json` shows it.
pub fn serving_platform(host: &TestHost) -> serde_json::Value {
    host.status()["release"]["platform"].clone()
}

/// deploy.log's line about deployment `id`'s platform.
pub fn platform_line(host: &TestHost, id: &serde_json::Value) -> String {
    let log =
        std::fs::read_to_string(host.path("var/log/hostmanager/deploy.log")).unwrap_or_default();
    let tag = format!("[deployment {id}] platform ");
    log.lines()
        .find(|l| l.contains(&tag))
        .unwrap_or_else(|| panic!("no platform line for {id} in deploy.log:\n{log}"))
        .to_string()
}
