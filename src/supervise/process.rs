//! Watching and signalling one app process, whether the agent started it (its child) or
//! adopted it after a restart (not its child). A pidfd turns "the process exited" into a
//! readable file descriptor that tokio can wait on, with no polling and no pid-reuse race.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, OwnedFd};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use rustix::process::{PidfdFlags, WaitId, WaitIdOptions, pidfd_open};
use serde::{Deserialize, Serialize};
use tokio::io::unix::AsyncFd;

use super::procstat::{ProcStat, parse_stat};

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
    /// Adopted processes are not our children: the kernel does not tell us their status.
    Unknown,
}

impl ExitStatus {
    pub fn success(self) -> bool {
        self == Self::Code(0)
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Code(code) => write!(f, "exit status {code}"),
            Self::Signal(number) => match Signal::try_from(*number) {
                Ok(signal) => write!(f, "signal {number} ({signal})"),
                Err(_) => write!(f, "signal {number}"),
            },
            Self::Unknown => write!(f, "unknown status (adopted process)"),
        }
    }
}

/// A live process identified by pid + start time, with a pidfd to wait on.
#[derive(Debug)]
pub struct Watched {
    pid: i32,
    start_time: u64,
    /// The group signals go to. The app leads its own session, so this is its pid, and a
    /// session leader cannot move to another group.
    pgid: i32,
    is_child: bool,
    pidfd: AsyncFd<OwnedFd>,
}

impl Watched {
    /// Watches a child the agent just spawned (not yet reaped, so the pid cannot be reused).
    pub fn child(pid: i32) -> io::Result<Self> {
        let pidfd = open_pidfd(pid)?;
        let stat = read_stat(pid);
        Ok(Self {
            pid,
            start_time: stat.map_or(0, |s| s.start_time),
            pgid: stat.map_or(pid, |s| s.pgid),
            is_child: true,
            pidfd: register(pidfd)?,
        })
    }

    /// Adopts a process from an earlier agent run if, and only if, it is still the same process:
    /// same pid AND same start time. `Ok(None)` means it is gone or the pid now belongs to
    /// someone else.
    pub fn adopt(pid: i32, start_time: u64) -> io::Result<Option<Self>> {
        if read_stat(pid).is_none_or(|stat| stat.start_time != start_time || stat.is_zombie()) {
            return Ok(None);
        }
        let pidfd = match open_pidfd(pid) {
            Ok(fd) => fd,
            Err(error) if error.raw_os_error() == Some(libc_esrch()) => return Ok(None),
            Err(error) => return Err(error),
        };
        // Check again now that the pidfd pins the process: the pid may have been reused
        // between the first check and pidfd_open.
        let Some(stat) = read_stat(pid).filter(|stat| stat.start_time == start_time) else {
            return Ok(None);
        };
        Ok(Some(Self {
            pid,
            start_time,
            pgid: stat.pgid,
            is_child: stat.ppid == std::process::id() as i32,
            pidfd: register(pidfd)?,
        }))
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn start_time(&self) -> u64 {
        self.start_time
    }

    pub fn pgid(&self) -> i32 {
        self.pgid
    }

    pub fn is_child(&self) -> bool {
        self.is_child
    }

    /// Waits until the process has exited; reaps it when it is our child.
    pub async fn exited(&self) -> ExitStatus {
        // A pidfd becomes readable once, when the process exits, and stays readable.
        if let Err(error) = self
            .pidfd
            .readable()
            .await
            .map(|mut guard| guard.retain_ready())
        {
            tracing::warn!(pid = self.pid, %error, "pidfd wait failed");
            return ExitStatus::Unknown;
        }
        if !self.is_child {
            return ExitStatus::Unknown;
        }
        match rustix::process::waitid(
            WaitId::PidFd(self.pidfd.get_ref().as_fd()),
            WaitIdOptions::EXITED,
        ) {
            Ok(Some(status)) => match (status.exit_status(), status.terminating_signal()) {
                (Some(code), _) => ExitStatus::Code(code),
                (None, Some(signal)) => ExitStatus::Signal(signal),
                _ => ExitStatus::Unknown,
            },
            _ => ExitStatus::Unknown,
        }
    }

    /// True until the process has exited.
    pub fn is_running(&self) -> bool {
        read_stat(self.pid)
            .is_some_and(|stat| stat.start_time == self.start_time && !stat.is_zombie())
    }

    /// Signals the whole process group (the app and everything it forked that stayed in it).
    pub fn signal_group(&self, signal: Signal) -> io::Result<()> {
        signal_group(self.pgid, signal)
    }
}

/// Signals process group `pgid`; a group that is gone already is not an error.
pub fn signal_group(pgid: i32, signal: Signal) -> io::Result<()> {
    match killpg(Pid::from_raw(pgid), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(errno) => Err(io::Error::from(errno)),
    }
}

fn open_pidfd(pid: i32) -> io::Result<OwnedFd> {
    let pid = rustix::process::Pid::from_raw(pid)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("invalid pid {pid}")))?;
    pidfd_open(pid, PidfdFlags::NONBLOCK).map_err(io::Error::from)
}

#[allow(unsafe_code)]
fn register(pidfd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the OwnedFd is moved into the AsyncFd, which therefore owns the descriptor for its
    // whole life: it stays open and refers to the same pidfd until the AsyncFd is dropped.
    unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) }
        .map_err(io::Error::from)
}

fn libc_esrch() -> i32 {
    nix::errno::Errno::ESRCH as i32
}

/// Reads `/proc/<pid>/stat`; `None` when the process does not exist.
pub fn read_stat(pid: i32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// How long ago a process started, from its start time in clock ticks since boot.
pub fn age(start_time: u64) -> Option<std::time::Duration> {
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()??;
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let started = start_time as f64 / ticks as f64;
    Some(std::time::Duration::from_secs_f64(
        (uptime - started).max(0.0),
    ))
}

/// Whether any process of group `pgid` still runs (the leader may be gone while its children
/// linger). Zombies do not count: they have exited, only their parent's wait is missing, and
/// that parent may be init (for an adopted app), which the agent cannot hurry.
pub fn group_alive(pgid: i32) -> bool {
    // Cheap first: no process at all in the group.
    if killpg(Pid::from_raw(pgid), None).is_err() {
        return false;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return true;
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .any(|pid| read_stat(pid).is_some_and(|stat| stat.pgid == pgid && !stat.is_zombie()))
}

/// Waits until no live process is left in group `pgid`. Each check runs on the blocking pool
/// (a check may walk /proc), and the pause between checks doubles from 10 ms to 500 ms: a group
/// that goes at once is seen at once, one that lingers costs a few walks a second.
pub async fn group_gone(pgid: i32) {
    let mut pause = GROUP_CHECK_FIRST;
    while group_alive_off_runtime(pgid).await {
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(GROUP_CHECK_MAX);
    }
}

/// `group_alive` on the blocking pool.
pub async fn group_alive_off_runtime(pgid: i32) -> bool {
    tokio::task::spawn_blocking(move || group_alive(pgid))
        .await
        .unwrap_or(true)
}

const GROUP_CHECK_FIRST: std::time::Duration = std::time::Duration::from_millis(10);
const GROUP_CHECK_MAX: std::time::Duration = std::time::Duration::from_millis(500);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_reads_well() {
        assert_eq!(ExitStatus::Code(3).to_string(), "exit status 3");
        assert_eq!(ExitStatus::Signal(9).to_string(), "signal 9 (SIGKILL)");
        assert!(ExitStatus::Code(0).success());
    }

    #[test]
    fn our_own_process_is_readable() {
        let stat = read_stat(std::process::id() as i32).expect("self stat");
        assert!(stat.start_time > 0);
    }

    #[tokio::test]
    async fn a_group_is_gone_once_its_last_member_is() {
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("sleep")
            .arg("0.3")
            .process_group(0)
            .spawn()
            .expect("spawn");
        let pgid = child.id() as i32;
        assert!(group_alive(pgid));
        // The exited child stays a zombie until waited for: zombies do not count.
        let waiter = std::thread::spawn(move || child.wait());
        tokio::time::timeout(std::time::Duration::from_secs(5), group_gone(pgid))
            .await
            .expect("the group goes within the deadline");
        assert!(!group_alive(pgid));
        waiter.join().expect("join").expect("wait");
    }

    #[test]
    fn a_wrong_start_time_is_not_adopted() {
        let me = std::process::id() as i32;
        let start = read_stat(me).expect("self").start_time;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        runtime.block_on(async {
            assert!(Watched::adopt(me, start + 1).expect("adopt").is_none());
            assert!(Watched::adopt(me, start).expect("adopt").is_some());
        });
    }
}
