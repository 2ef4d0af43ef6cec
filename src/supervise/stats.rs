//! Per-process CPU and memory, sampled with sysinfo, and the ports each app listens on
//! (`listening.rs`). An app is its leader and everything in its
//! session (a gunicorn master and its workers, a shell and its children), so the numbers are
//! summed over the session the leader heads.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System};
use tokio_util::sync::CancellationToken;

use super::{ProcessKey, Supervisor};

/// One sample of one app process and everything in its session.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ProcessStats {
    /// CPU used since the previous sample, in % of one CPU (200 = two busy CPUs).
    pub cpu_percent: f64,
    /// Resident memory.
    pub rss_bytes: u64,
    /// Processes counted (the leader and what it forked).
    pub processes: u32,
}

/// One process as the sampler saw it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Member {
    pub session: i32,
    pub cpu_percent: f64,
    pub rss_bytes: u64,
}

/// Sums `members` per session, for the sessions in `sessions` only. Pure.
pub fn aggregate(
    members: impl IntoIterator<Item = Member>,
    sessions: &[i32],
) -> HashMap<i32, ProcessStats> {
    let mut totals: HashMap<i32, ProcessStats> = HashMap::new();
    for member in members {
        if !sessions.contains(&member.session) {
            continue;
        }
        let total = totals.entry(member.session).or_insert(ProcessStats {
            cpu_percent: 0.0,
            rss_bytes: 0,
            processes: 0,
        });
        total.cpu_percent += member.cpu_percent;
        total.rss_bytes += member.rss_bytes;
        total.processes += 1;
    }
    for total in totals.values_mut() {
        // One decimal is all a status line needs, and it keeps JSON output stable.
        total.cpu_percent = (total.cpu_percent * 10.0).round() / 10.0;
    }
    totals
}

/// Keeps sysinfo's previous readings: CPU % is the difference between two samples.
#[derive(Debug)]
pub struct Sampler {
    system: System,
}

impl Sampler {
    pub fn new() -> Option<Self> {
        System::new().ok().map(|system| Self { system })
    }

    /// Stats of the sessions led by `leaders`.
    /// Blocking (reads /proc): run it off the runtime. Refreshes only the leaders, their
    /// descendants and the agent's children (orphans of the apps), not every process.
    pub fn sample(&mut self, leaders: &[i32]) -> HashMap<i32, ProcessStats> {
        let mut pids: Vec<sysinfo::Pid> = candidates(leaders)
            .into_iter()
            .filter_map(|pid| u32::try_from(pid).ok().map(sysinfo::Pid::from_u32))
            .collect();
        // The ones seen before too: refreshing them drops those that exited.
        for known in self.system.processes().keys() {
            if !pids.contains(known) {
                pids.push(*known);
            }
        }
        self.system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&pids),
            true,
            // Threads are counted in their process already.
            ProcessRefreshKind::nothing()
                .with_cpu()
                .with_memory()
                .without_tasks(),
        );
        let members = self.system.processes().values().filter_map(|process| {
            Some(Member {
                session: i32::try_from(process.session_id()?.as_u32()).ok()?,
                cpu_percent: f64::from(process.cpu_usage()),
                rss_bytes: process.memory(),
            })
        });
        aggregate(members, leaders)
    }
}

impl Supervisor {
    /// Samples every running process every `supervise.stats_interval` into its table row.
    pub(super) async fn sample_stats(&self, cancel: CancellationToken) {
        let Some(mut sampler) = Sampler::new() else {
            tracing::warn!("sysinfo is unavailable: no per-process CPU and memory in status");
            return;
        };
        let mut ticks = tokio::time::interval(self.inner.config.stats_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let running: Vec<(ProcessKey, i32)> = self
                .lock()
                .iter()
                .filter_map(|(key, slot)| Some((key.clone(), slot.pid?)))
                .collect();
            if running.is_empty() {
                continue;
            }
            // Each app leads its own session, whose id is the leader's pid.
            let sessions: Vec<i32> = running.iter().map(|(_, pid)| *pid).collect();
            let Ok((back, sampled, listening)) = tokio::task::spawn_blocking(move || {
                let sampled = sampler.sample(&sessions);
                let listening = super::listening::ports_by_session(&sessions);
                (sampler, sampled, listening)
            })
            .await
            else {
                return;
            };
            sampler = back;
            let mut table = self.lock();
            for (key, pid) in running {
                if let Some(slot) = table.get_mut(&key)
                    && slot.pid == Some(pid)
                {
                    slot.stats = sampled.get(&pid).copied();
                    slot.listening = listening.get(&pid).cloned();
                }
            }
        }
    }
}

/// The processes that can be in an app's session: each leader and its descendants, and the
/// agent's children (the apps' orphans are re-parented to it) with theirs.
pub(super) fn candidates(leaders: &[i32]) -> Vec<i32> {
    // No duplicates: sysinfo would count a pid listed twice as not updated and drop it.
    let mut found: Vec<i32> = Vec::new();
    for pid in leaders
        .iter()
        .copied()
        .chain(super::reaper::children_of("self"))
    {
        if !found.contains(&pid) {
            found.push(pid);
        }
    }
    let mut next = 0;
    // Breadth first; a pid seen twice is not expanded again.
    while next < found.len() {
        let pid = found[next];
        next += 1;
        for child in super::reaper::children_of(&pid.to_string()) {
            if !found.contains(&child) {
                found.push(child);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_summed_per_requested_session() {
        let member = |session, cpu_percent, rss_bytes| Member {
            session,
            cpu_percent,
            rss_bytes,
        };
        let totals = aggregate(
            [
                member(10, 12.5, 1000),
                member(10, 30.04, 500),
                member(20, 99.0, 7),
                member(30, 1.0, 1),
            ],
            &[10, 20, 40],
        );
        assert_eq!(
            totals[&10],
            ProcessStats {
                cpu_percent: 42.5,
                rss_bytes: 1500,
                processes: 2
            }
        );
        assert_eq!(totals[&20].processes, 1);
        assert!(!totals.contains_key(&30), "not asked for");
        assert!(!totals.contains_key(&40), "no process left");
    }

    #[test]
    fn an_apps_session_is_sampled_from_its_tree_not_from_every_process() {
        let mut child = std::process::Command::new("setsid")
            .args(["sh", "-c", "sleep 5 & sleep 5 & wait"])
            .spawn()
            .expect("spawn");
        let session = child.id() as i32;
        let mut sampler = Sampler::new().expect("sysinfo");
        let mut sampled = None;
        for _ in 0..100 {
            let stats = sampler.sample(&[session]);
            if stats.get(&session).is_some_and(|s| s.processes == 3) {
                sampled = stats.get(&session).copied();
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = super::super::process::signal_group(session, nix::sys::signal::Signal::SIGKILL);
        let _ = child.wait();
        let stats = sampled.expect("the shell and its two sleeps");
        assert!(stats.rss_bytes > 0);
        // Only the app's tree and the agent's (here: the test's) children were read.
        let known = sampler.system.processes().len();
        assert!(
            known <= 3 + candidates(&[]).len() + 1,
            "{known} processes read"
        );
    }
}
