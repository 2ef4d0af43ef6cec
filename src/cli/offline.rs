//! `stop-apps` when no agent runs: the persisted process table and nginx's pid file say what
//! to stop; each process is checked by pid AND start time first, so a reused pid is never hit.

use std::time::Duration;

use nix::sys::signal::Signal;
use serde::Deserialize;

use crate::config::Config;
use crate::paths::Paths;
use crate::proxy::NginxRunner;
use crate::supervise::{Watched, group_gone};

#[derive(Debug, Deserialize)]
struct Entry {
    spec: EntrySpec,
    pid: Option<i32>,
    start_time: u64,
}

#[derive(Debug, Deserialize)]
struct EntrySpec {
    name: String,
}

/// Stops every recorded app process group and this root's nginx; returns how many stopped.
pub async fn stop_everything(paths: &Paths, config: &Config) -> usize {
    let entries: Vec<Entry> = crate::fsutil::read_json(&paths.processes_file())
        .ok()
        .flatten()
        .unwrap_or_default();
    let mut stopped = 0;
    for entry in entries {
        let Some(pid) = entry.pid else { continue };
        let Ok(Some(process)) = Watched::adopt(pid, entry.start_time) else {
            continue;
        };
        // Each process with its own stop signal and deadline.
        let settings = config.supervise.settings(&entry.spec.name);
        let _ = process.signal_group(settings.stop_signal.signal());
        let gone = tokio::time::timeout(settings.stop_timeout, async {
            process.exited().await;
            group_gone(process.pgid()).await;
        })
        .await;
        if gone.is_err() {
            let _ = process.signal_group(Signal::SIGKILL);
        }
        stopped += 1;
    }
    let _ = std::fs::write(paths.processes_file(), "[]");
    crate::supervise::remove_cgroups(paths.root());
    let runner = NginxRunner::new(config.proxy.nginx_binary.clone(), paths.nginx_dir());
    if let Some(master) = runner.master() {
        let _ = runner.signal(master, Signal::SIGQUIT);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while runner.master().is_some() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stopped += 1;
    }
    stopped
}
