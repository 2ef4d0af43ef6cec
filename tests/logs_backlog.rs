//! A 1 GiB backlog in a watched log: the agent works through it in bounded memory (its RSS
//! stays far below the backlog) while its control API keeps answering, and reaches the end
//! (a severe line written last is reported); a line longer than 64 KiB is cut and counted.

mod common;

use std::io::Write;
use std::time::Duration;

use common::procs::status_field;
use common::{TestHost, wait_for};

const BACKLOG: u64 = 1 << 30;
/// The agent idles at ~15 MiB; the old tailer held the whole backlog (> 1 GiB) at once.
const RSS_BOUND_KIB: u64 = 200 * 1024;

fn rss_kib(pid: i32) -> u64 {
    let field = status_field(pid, "VmRSS").expect("VmRSS");
    field
        .trim_end_matches("kB")
        .trim()
        .parse()
        .expect("VmRSS in kB")
}

#[test]
fn a_gigabyte_backlog_is_read_in_bounded_memory_while_status_answers() {
    let mut host = TestHost::new().set("logs.watch", "files", vec!["var/log/app/*.log"]);
    // A first run leaves checkpoints: the file that appears after it is read from its start.
    host.start();
    host.stop_agent(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(10));
    let log = host.path("var/log/app/backlog.log");
    std::fs::create_dir_all(log.parent().expect("parent")).expect("mkdir");
    {
        let file = std::fs::File::create(&log).expect("create backlog");
        let mut out = std::io::BufWriter::with_capacity(8 << 20, file);
        let line = format!("{} info request served\n", "x".repeat(1000));
        let mut written = 0u64;
        while written < BACKLOG {
            out.write_all(line.as_bytes()).expect("write backlog");
            written += line.len() as u64;
        }
        // One runaway line without a newline for 100 KiB: cut to 64 KiB and counted.
        out.write_all(&vec![b'y'; 100 << 10])
            .expect("write long line");
        out.write_all(b"\nFATAL the end of the backlog\n")
            .expect("write marker");
        out.flush().expect("flush");
    }

    host.start();
    let pid = host.agent_pid().expect("agent pid");
    let (mut answered, mut peak) = (0u32, 0u64);
    wait_for(
        "the severe line at the end of the backlog",
        Duration::from_secs(600),
        || {
            // Every call answers (cli_ok asserts success) while the backlog is read.
            let status = host.status();
            assert!(status["health"].is_object(), "{status:#}");
            answered += 1;
            peak = peak.max(rss_kib(pid));
            host.events().into_iter().find(|e| {
                e["source"] == "logs"
                    && e["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("FATAL the end of the backlog"))
            })
        },
    );
    peak = peak.max(rss_kib(pid));
    assert!(
        answered >= 2,
        "status was asked during the catch-up ({answered} calls)"
    );
    assert!(
        peak < RSS_BOUND_KIB,
        "the agent's RSS peaked at {peak} KiB while reading a 1 GiB backlog"
    );
    let logs: serde_json::Value =
        serde_json::from_str(&host.cli_ok(&["logs", "status", "--json"])).expect("logs status");
    assert!(
        logs["watched_files"]
            .as_array()
            .is_some_and(|files| files.iter().any(|f| f == "var/log/app/backlog.log")),
        "{logs:#}"
    );
    assert_eq!(logs["truncated_lines"], 1, "{logs:#}");
    std::fs::remove_file(&log).expect("clean up the backlog");
}
