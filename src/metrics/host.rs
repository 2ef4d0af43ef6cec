//! Host metrics, sampled once per window: CPU split from `/proc/stat` deltas, load average,
//! memory and per-process CPU and RSS (sysinfo), and the use of the filesystem holding the
//! agent's root (statvfs; `/` in production).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use super::cpu::{CpuPercent, CpuTimes, parse_proc_stat};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostSample {
    /// `None` on the first sample (a percentage needs two readings).
    pub cpu: Option<CpuPercent>,
    pub load_average: LoadAverage,
    pub memory: Memory,
    pub root_filesystem: Option<Filesystem>,
    pub processes: Vec<ProcessUsage>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadAverage {
    pub one: f64,
    pub five: f64,
    pub fifteen: f64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    pub total_bytes: u64,
    pub available_bytes: u64,
    pub used_percent: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Filesystem {
    pub path: String,
    pub total_bytes: u64,
    pub available_bytes: u64,
    /// As `df` computes it: used / (used + available to unprivileged users).
    pub used_percent: f64,
}

/// One supervised process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessUsage {
    pub name: String,
    pub release: u64,
    pub pid: i32,
    /// Percent of ONE core since the previous sample (may exceed 100 with threads).
    pub cpu_percent: f64,
    pub rss_bytes: u64,
}

/// A supervised process to measure: (name, release, pid).
pub type Watched<'a> = (&'a str, u64, i32);

#[derive(Debug)]
pub struct HostSampler {
    system: Option<System>,
    previous_cpu: Option<CpuTimes>,
    root: PathBuf,
}

impl HostSampler {
    /// `root` is the agent's root prefix: its filesystem is the one reported.
    pub fn new(root: PathBuf) -> Self {
        let system = System::new()
            .inspect_err(
                |error| tracing::warn!(%error, "sysinfo unavailable: no memory or process metrics"),
            )
            .ok();
        Self {
            system,
            previous_cpu: None,
            root,
        }
    }

    pub fn sample(&mut self, processes: &[Watched<'_>]) -> HostSample {
        let cpu_now = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|text| parse_proc_stat(&text));
        let cpu = match (cpu_now, self.previous_cpu) {
            (Some(now), Some(before)) => now.percent_since(&before),
            _ => None,
        };
        if cpu_now.is_some() {
            self.previous_cpu = cpu_now;
        }
        let load_average = System::load_average()
            .map(|l| LoadAverage {
                one: l.one,
                five: l.five,
                fifteen: l.fifteen,
            })
            .unwrap_or_default();
        HostSample {
            cpu,
            load_average,
            memory: self.memory(),
            root_filesystem: filesystem(&self.root),
            processes: self.processes(processes),
        }
    }

    fn memory(&mut self) -> Memory {
        let Some(system) = self.system.as_mut() else {
            return Memory::default();
        };
        system.refresh_memory();
        let total = system.total_memory();
        let available = system.available_memory();
        Memory {
            total_bytes: total,
            available_bytes: available,
            used_percent: percent(total.saturating_sub(available), total),
        }
    }

    fn processes(&mut self, watched: &[Watched<'_>]) -> Vec<ProcessUsage> {
        let Some(system) = self.system.as_mut() else {
            return Vec::new();
        };
        let pids: Vec<Pid> = watched
            .iter()
            .filter_map(|(_, _, pid)| u32::try_from(*pid).ok().map(Pid::from_u32))
            .collect();
        // Dead pids are forgotten, so a reused pid starts a fresh CPU reading.
        system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&pids),
            true,
            ProcessRefreshKind::nothing().with_cpu().with_memory(),
        );
        watched
            .iter()
            .filter_map(|(name, release, pid)| {
                let process = system.process(Pid::from_u32(u32::try_from(*pid).ok()?))?;
                Some(ProcessUsage {
                    name: name.to_string(),
                    release: *release,
                    pid: *pid,
                    cpu_percent: f64::from(process.cpu_usage()),
                    rss_bytes: process.memory(),
                })
            })
            .collect()
    }
}

fn filesystem(root: &std::path::Path) -> Option<Filesystem> {
    let stats = nix::sys::statvfs::statvfs(root).ok()?;
    let block = stats.fragment_size();
    let total = stats.blocks() * block;
    let free = stats.blocks_free() * block;
    let available = stats.blocks_available() * block;
    Some(Filesystem {
        path: root.display().to_string(),
        total_bytes: total,
        available_bytes: available,
        used_percent: df_used_percent(total, free, available),
    })
}

/// `df`'s Use%: blocks reserved for root count neither as used nor as available.
fn df_used_percent(total: u64, free: u64, available: u64) -> f64 {
    let used = total.saturating_sub(free);
    percent(used, used + available)
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filesystem_use_is_computed_like_df() {
        // 100 blocks, 30 free of which 25 available to users: 70 used of 95 usable.
        assert!((df_used_percent(100, 30, 25) - 73.684).abs() < 0.001);
        assert_eq!(df_used_percent(0, 0, 0), 0.0);
    }

    #[test]
    fn a_real_sample_of_this_host() {
        let mut sampler = HostSampler::new(PathBuf::from("/"));
        let me = i32::try_from(std::process::id()).expect("pid");
        let first = sampler.sample(&[("test", 1, me)]);
        assert_eq!(first.cpu, None, "a percentage needs two readings");
        let second = sampler.sample(&[("test", 1, me), ("gone", 1, i32::MAX)]);
        assert!(second.memory.total_bytes > 0);
        assert!(second.root_filesystem.expect("statvfs /").total_bytes > 0);
        assert_eq!(second.processes.len(), 1, "a missing pid is left out");
        assert!(second.processes[0].rss_bytes > 0);
    }
}
