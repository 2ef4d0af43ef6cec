//! Host metrics, sampled once per window: CPU split from `/proc/stat` deltas, load average,
//! memory (sysinfo), the use of the filesystem holding the agent's root (statvfs; `/` in
//! production). Per-process CPU and RSS come from the supervisor's own sampler.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sysinfo::System;

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

/// One supervised process with everything in its process group (the Procfile command runs
/// under `sh -c`, so the app itself is a child of the supervised pid).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessUsage {
    pub name: String,
    pub release: u64,
    pub pid: i32,
    /// Percent of ONE core since the previous sample, summed over the group (may exceed 100).
    pub cpu_percent: f64,
    /// Resident memory summed over the group.
    pub rss_bytes: u64,
    /// Processes in the group.
    pub members: u32,
}

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

    /// Samples the host; `processes` are the supervised processes with the CPU and memory the
    /// supervisor measured (one sampler for the whole agent).
    pub fn sample(&mut self, processes: Vec<ProcessUsage>) -> HostSample {
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
            processes,
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
        let first = sampler.sample(Vec::new());
        assert_eq!(first.cpu, None, "a percentage needs two readings");
        let second = sampler.sample(Vec::new());
        assert!(second.memory.total_bytes > 0);
        assert!(second.root_filesystem.expect("statvfs /").total_bytes > 0);
    }
}
