//! Orphan reaping. The agent is a child subreaper (PR_SET_CHILD_SUBREAPER): whatever an app
//! double-forks, and whatever stays behind when an app leader dies, is re-parented to the agent
//! instead of init, so it is still inside the supervision tree. Those orphans must be reaped
//! when they exit, or they stay zombies.
//!
//! Reaping must never steal an exit status someone waits for: `waitpid(-1)` would take it from
//! the monitors (app leaders, reaped through their pidfd) and from tokio/std (nginx -t, hooks,
//! which wait for their own pid). So the reaper looks at each zombie child and reaps it only if
//! (1) it is not an app leader the supervisor spawned (those are registered under a lock
//! held across the spawn, so even one that dies at once is never mistaken for an orphan), and
//! (2) it is not a helper the agent waits for itself. Those stay in the agent's session and
//! either in the agent's own process group (nginx -t, cp) or leading their own group (hooks,
//! `process_group(0)`). App processes and everything they fork live in the apps' sessions (as
//! does nginx's daemonised master); what a hook leaves behind (`daemon &`) is in the agent's
//! session but in the hook's group without leading it: an orphan once the hook has exited.
//!
//! Candidates are the agent's own children (`/proc/self/task/*/children`), not every process.

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use super::process::read_stat;
use super::procstat::ProcStat;

/// A scan also runs on this period, in case a SIGCHLD was coalesced with one already handled.
const RESCAN_PERIOD: Duration = Duration::from_secs(10);
/// A SIGCHLD is handled this much later: a crashed app is being restarted right then, and the
/// scan of /proc would compete with it for CPU. SIGCHLDs meanwhile are handled by the same scan.
const AFTER_SIGCHLD: Duration = Duration::from_millis(100);

/// Makes the agent the reaper of its descendants' orphans.
pub fn become_child_subreaper() -> nix::Result<()> {
    nix::sys::prctl::set_child_subreaper(true)
}

/// Pids of the app leaders the supervisor spawned and reaps itself.
#[derive(Debug, Default)]
pub struct Leaders(Mutex<HashSet<i32>>);

impl Leaders {
    /// Held across a spawn, so the reaper cannot see the new child before it is registered.
    pub fn lock(&self) -> MutexGuard<'_, HashSet<i32>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The leader was reaped by its monitor; its pid may be reused by anyone now.
    pub fn forget(&self, pid: i32) {
        self.lock().remove(&pid);
    }
}

/// Whether `stat` is an orphan the reaper may reap. Pure.
pub fn is_reapable_orphan(
    stat: &ProcStat,
    agent: &AgentIds,
    is_leader: impl Fn(i32) -> bool,
) -> bool {
    // In the agent's session, only what neither shares the agent's group nor leads its own.
    let waited_helper =
        stat.session == agent.session && (stat.pgid == agent.pgid || stat.pgid == stat.pid);
    stat.ppid == agent.pid && stat.is_zombie() && !waited_helper && !is_leader(stat.pid)
}

/// The agent's pid, process group and session.
#[derive(Debug, Clone, Copy)]
pub struct AgentIds {
    pub pid: i32,
    pub pgid: i32,
    pub session: i32,
}

impl AgentIds {
    fn current() -> Option<Self> {
        Some(Self {
            pid: std::process::id() as i32,
            pgid: nix::unistd::getpgrp().as_raw(),
            session: nix::unistd::getsid(None).ok()?.as_raw(),
        })
    }
}

/// Reaps every reapable orphan now; returns how many.
pub fn reap_orphans(leaders: &Leaders) -> usize {
    let Some(agent) = AgentIds::current() else {
        return 0;
    };
    let no_leader = |_| false;
    // Scan without the lock, which a spawn holds: most scans find nothing.
    let candidates: Vec<i32> = own_children()
        .into_iter()
        .filter(|pid| {
            read_stat(*pid).is_some_and(|stat| is_reapable_orphan(&stat, &agent, no_leader))
        })
        .collect();
    if candidates.is_empty() {
        return 0;
    }
    // Decide under the lock: a leader spawned meanwhile is registered by now, and the stat is
    // read again in case the pid was reaped and reused since.
    let registered = leaders.lock();
    let mut reaped = 0;
    for pid in candidates {
        let reapable = read_stat(pid)
            .is_some_and(|stat| is_reapable_orphan(&stat, &agent, |p| registered.contains(&p)));
        if reapable && waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)).is_ok() {
            tracing::debug!(pid, "reaped an orphan");
            reaped += 1;
        }
    }
    reaped
}

/// The agent's children, from every thread's children list (an orphan is re-parented to one
/// of the subreaper's threads).
fn own_children() -> Vec<i32> {
    children_of("self")
}

/// The children of process `pid` ("self" for the agent), from its threads' children lists.
pub(super) fn children_of(pid: &str) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut children: Vec<i32> = tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("children")).ok())
        .flat_map(|list| {
            list.split_ascii_whitespace()
                .filter_map(|pid| pid.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect();
    children.sort_unstable();
    children.dedup();
    children
}

/// Reaps orphans on every SIGCHLD until `cancel` fires.
pub async fn run(leaders: &Leaders, cancel: CancellationToken) {
    let mut children = match signal(SignalKind::child()) {
        Ok(stream) => stream,
        Err(error) => {
            tracing::error!(%error, "cannot watch SIGCHLD; orphans are reaped every {RESCAN_PERIOD:?} only");
            return periodic(leaders, cancel).await;
        }
    };
    let mut rescan = tokio::time::interval(RESCAN_PERIOD);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = children.recv() => {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(AFTER_SIGCHLD) => {}
                }
            }
            _ = rescan.tick() => {}
        }
        reap_orphans(leaders);
    }
}

async fn periodic(leaders: &Leaders, cancel: CancellationToken) {
    let mut rescan = tokio::time::interval(RESCAN_PERIOD);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = rescan.tick() => { reap_orphans(leaders); }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(pid: i32, ppid: i32, pgid: i32, session: i32, state: char) -> ProcStat {
        ProcStat {
            pid,
            state,
            ppid,
            pgid,
            session,
            start_time: 1,
            utime: 0,
            stime: 0,
        }
    }

    const AGENT: AgentIds = AgentIds {
        pid: 100,
        pgid: 100,
        session: 50,
    };

    #[test]
    fn zombie_orphans_are_reaped_but_never_a_helper_the_agent_waits_for() {
        let not_leader = |_| false;
        let agent = AGENT.pid;
        let session = AGENT.session;
        assert!(
            is_reapable_orphan(&stat(7, agent, 7, 7, 'Z'), &AGENT, not_leader),
            "an app's orphan in its own session"
        );
        assert!(
            !is_reapable_orphan(&stat(7, agent, 7, 7, 'S'), &AGENT, not_leader),
            "alive"
        );
        assert!(
            !is_reapable_orphan(&stat(7, 1, 7, 7, 'Z'), &AGENT, not_leader),
            "someone else's child"
        );
        assert!(
            !is_reapable_orphan(
                &stat(7, agent, AGENT.pgid, session, 'Z'),
                &AGENT,
                not_leader
            ),
            "in the agent's group: tokio or std waits for it (nginx -t)"
        );
        assert!(
            !is_reapable_orphan(&stat(7, agent, 7, session, 'Z'), &AGENT, not_leader),
            "leading its own group in the agent's session: a hook, waited for"
        );
        assert!(
            is_reapable_orphan(&stat(8, agent, 7, session, 'Z'), &AGENT, not_leader),
            "in a hook's group without leading it: what the hook left behind"
        );
        assert!(
            !is_reapable_orphan(&stat(7, agent, 7, 7, 'Z'), &AGENT, |p| p == 7),
            "an app leader: its monitor reaps it"
        );
    }

    #[test]
    fn a_live_scan_leaves_the_agents_own_children_alone() {
        // Our own child in our own session: the scan must not touch it.
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let pid = child.id() as i32;
        while read_stat(pid).is_some_and(|s| !s.is_zombie()) {
            std::thread::sleep(Duration::from_millis(5));
        }
        reap_orphans(&Leaders::default());
        assert!(child.wait().expect("status still ours").success());
    }
}
