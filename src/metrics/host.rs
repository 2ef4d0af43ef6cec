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
        // Supervised processes lead their own process group: its members are the app.
        let groups = group_members(watched.iter().map(|(_, _, pid)| *pid));
        let pids: Vec<Pid> = groups
            .iter()
            .flat_map(|(_, members)| members.iter())
            .filter_map(|pid| u32::try_from(*pid).ok().map(Pid::from_u32))
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
                let members = groups
                    .iter()
                    .find(|(leader, _)| leader == pid)?
                    .1
                    .as_slice();
                let mut usage = ProcessUsage {
                    name: name.to_string(),
                    release: *release,
                    pid: *pid,
                    cpu_percent: 0.0,
                    rss_bytes: 0,
                    members: 0,
                };
                for member in members {
                    let Some(process) = u32::try_from(*member)
                        .ok()
                        .and_then(|m| system.process(Pid::from_u32(m)))
                    else {
                        continue;
                    };
                    usage.cpu_percent += f64::from(process.cpu_usage());
                    usage.rss_bytes += process.memory();
                    usage.members += 1;
                }
                (usage.members > 0).then_some(usage)
            })
            .collect()
    }
}

/// For each group leader, the pids of its process group (from `/proc/<pid>/stat`).
fn group_members(leaders: impl Iterator<Item = i32>) -> Vec<(i32, Vec<i32>)> {
    let mut groups: Vec<(i32, Vec<i32>)> = leaders.map(|leader| (leader, Vec::new())).collect();
    if groups.is_empty() {
        return groups;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return groups;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Some(stat) = crate::supervise::read_stat(pid) else {
            continue;
        };
        if let Some((_, members)) = groups.iter_mut().find(|(leader, _)| *leader == stat.pgid) {
            members.push(pid);
        }
    }
    groups
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
    fn a_real_sample_of_this_host_and_a_process_group() {
        use std::os::unix::process::CommandExt;
        // A group like the supervisor's: `sh -c` leading, the real work as its child.
        let mut group = std::process::Command::new("/bin/sh")
            .args(["-c", "sleep 30 & sleep 30; wait"])
            .process_group(0)
            .spawn()
            .expect("spawn sh");
        let leader = i32::try_from(group.id()).expect("pid");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while group_members([leader].into_iter())[0].1.len() < 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "the shell never forked"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let mut sampler = HostSampler::new(PathBuf::from("/"));
        let first = sampler.sample(&[("web", 1, leader)]);
        assert_eq!(first.cpu, None, "a percentage needs two readings");
        let second = sampler.sample(&[("web", 1, leader), ("gone", 1, i32::MAX)]);
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(leader),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = group.wait();
        assert!(second.memory.total_bytes > 0);
        assert!(second.root_filesystem.expect("statvfs /").total_bytes > 0);
        assert_eq!(second.processes.len(), 1, "a missing pid is left out");
        let web = &second.processes[0];
        assert_eq!(web.members, 3, "the shell and its two children: {web:?}");
        assert!(web.rss_bytes > 0);
    }
}
