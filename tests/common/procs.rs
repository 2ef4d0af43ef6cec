//! Reads `/proc` to assert facts about real processes (owner, groups, limits, parents).

use std::path::Path;

pub use hostmanager::supervise::read_stat as stat;

/// Running (a zombie has exited already).
pub fn alive(pid: i32) -> bool {
    stat(pid).is_some_and(|s| !s.is_zombie())
}

/// Gone from the process table entirely: exited AND reaped.
pub fn reaped(pid: i32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

/// A line of `/proc/<pid>/status`, e.g. `status_field(pid, "Uid")` → `"999\t999\t999\t999"`.
pub fn status_field(pid: i32, field: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .map(|value| value.trim().to_string())
}

/// Soft and hard value of a limit in `/proc/<pid>/limits`, e.g. `limit(pid, "Max open files")`.
pub fn limit(pid: i32, name: &str) -> Option<(String, String)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = text.lines().find(|line| line.starts_with(name))?;
    let mut values = line[name.len()..].split_whitespace();
    Some((values.next()?.to_string(), values.next()?.to_string()))
}

/// Live members of process group `pgid`.
pub fn group_members(pgid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| stat(*pid).is_some_and(|s| s.pgid == pgid && !s.is_zombie()))
        .collect()
}

/// CPU time (user + system) the process has used, in seconds.
pub fn cpu_seconds(pid: i32) -> f64 {
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100);
    stat(pid).map_or(0.0, |s| (s.utime + s.stime) as f64 / ticks as f64)
}

/// Live processes of hooks run by the agent rooted at `root` whose command line names `script`.
/// Scoped by the `HOSTMANAGER_ROOT` every hook inherits, so parallel tests' hooks do not count.
pub fn hook_processes(root: &Path, script: &str) -> Vec<i32> {
    let wanted = format!("HOSTMANAGER_ROOT={}", root.display());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let read =
                |name: &str| std::fs::read(format!("/proc/{pid}/{name}")).unwrap_or_default();
            let names_script = String::from_utf8_lossy(&read("cmdline")).contains(script);
            names_script
                && read("environ")
                    .split(|b| *b == 0)
                    .any(|var| var == wanted.as_bytes())
                && alive(*pid)
        })
        .collect()
}
