//! Helpers for tests about supervised processes: bundles with a given Procfile, the status of
//! one process, events.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::bundles::{Entry, sample};
use super::{TestHost, wait_for};

/// The sample app with `procfile` instead of its own, zipped into `dir`.
pub fn bundle(dir: &tempfile::TempDir, procfile: &str) -> PathBuf {
    sample(
        dir.path(),
        "v1",
        &[Entry::File("Procfile", procfile.as_bytes(), 0o644)],
    )
}

/// The status of process `name`, once it runs with a pid.
pub fn running(host: &TestHost, name: &str) -> Value {
    wait_for(
        &format!("process {name} running"),
        Duration::from_secs(10),
        || {
            let status = host.status();
            let process = status["processes"]
                .as_array()?
                .iter()
                .find(|p| p["name"] == name && p["state"] == "running" && p["pid"].is_i64())?
                .clone();
            Some(process)
        },
    )
}

pub fn pid_of(process: &Value) -> i32 {
    process["pid"].as_i64().expect("pid") as i32
}

/// The first recorded event for which `matches(event, message)` holds.
pub fn find_event(host: &TestHost, matches: impl Fn(&Value, &str) -> bool) -> Option<Value> {
    host.events()
        .into_iter()
        .find(|e| matches(e, e["message"].as_str().unwrap_or_default()))
}
