//! Runs the nginx binary: `-t` checks, starting a master that outlives the agent, finding that
//! master again after an agent restart, and reading its worker processes.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::Command;

use crate::supervise::read_stat;

#[derive(Debug, Clone)]
pub struct NginxRunner {
    binary: PathBuf,
    dir: PathBuf,
}

impl NginxRunner {
    pub fn new(binary: PathBuf, dir: PathBuf) -> Self {
        Self { binary, dir }
    }

    pub fn binary(&self) -> &Path {
        &self.binary
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Symlink to the generation nginx serves.
    pub fn active_link(&self) -> PathBuf {
        self.dir.join("active")
    }

    pub fn active_conf(&self) -> PathBuf {
        self.active_link().join("nginx.conf")
    }

    pub fn generations_dir(&self) -> PathBuf {
        self.dir.join("generations")
    }

    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("run/nginx.pid")
    }

    /// The traffic switch's socket (`switch/`), in `run/`, which only root can enter.
    pub fn switch_socket(&self) -> PathBuf {
        self.dir.join("run/switch.sock")
    }

    /// The serving port, for nginx to read at its start and at each reload.
    pub fn port_file(&self) -> PathBuf {
        self.dir.join("run/upstream_port")
    }

    /// Which master loaded which generation digest.
    pub fn loaded_file(&self) -> PathBuf {
        self.dir.join("run/loaded")
    }

    /// The traffic switch's Lua module.
    pub fn lua_dir(&self) -> PathBuf {
        self.dir.join("lua")
    }

    pub fn temp_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    pub fn html_dir(&self) -> PathBuf {
        self.dir.join("html")
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.binary);
        // TZ=UTC: healthd log files are named by the UTC hour whatever the host's time zone.
        command
            .env_clear()
            .env("TZ", "UTC")
            .arg("-p")
            .arg(format!("{}/", self.dir.display()));
        command.stdin(Stdio::null());
        command
    }

    /// `nginx -t` on `conf`; `Err` carries nginx's own words.
    pub async fn test(&self, conf: &Path) -> Result<(), String> {
        let output = self
            .command()
            .arg("-t")
            .arg("-q")
            .arg("-c")
            .arg(conf)
            .output()
            .await
            .map_err(|error| format!("cannot run {}: {error}", self.binary.display()))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(nginx_message(&output.stderr, output.status))
        }
    }

    /// Starts a master on the active config. nginx daemonises itself, so the master is not our
    /// child and keeps running when the agent stops.
    pub async fn start(&self) -> Result<i32, String> {
        // A file, not a pipe: the daemonised master would otherwise hold the pipe open.
        let stderr_path = self.dir.join("run/start.stderr");
        let stderr = std::fs::File::create(&stderr_path)
            .map_err(|e| format!("{}: {e}", stderr_path.display()))?;
        let status = self
            .command()
            .arg("-c")
            .arg(self.active_conf())
            .stdout(Stdio::null())
            .stderr(stderr)
            .status()
            .await
            .map_err(|error| format!("cannot run {}: {error}", self.binary.display()))?;
        let written = std::fs::read(&stderr_path).unwrap_or_default();
        if !status.success() {
            return Err(nginx_message(&written, status));
        }
        // The daemon writes its pid file just after the parent exits.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(pid) = self.master() {
                return Ok(pid);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!(
                    "nginx started but wrote no pid file {}",
                    self.pid_file().display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The running master of THIS prefix, if any (checked by command line, not only pid).
    pub fn master(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline);
        let ours = cmdline.starts_with("nginx: master process")
            && cmdline.contains(&*self.dir.to_string_lossy());
        let alive = read_stat(pid).is_some_and(|stat| !stat.is_zombie());
        (ours && alive).then_some(pid)
    }

    pub fn signal(&self, pid: i32, signal: Signal) -> Result<(), String> {
        kill(Pid::from_raw(pid), signal)
            .map_err(|errno| format!("cannot send {signal} to nginx {pid}: {errno}"))
    }
}

/// Worker processes of `master` (its live children). Reads the master's own
/// `/proc/<pid>/task/<tid>/children` lists instead of walking every process on the host.
pub fn workers(master: i32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{master}/task")) else {
        return Vec::new();
    };
    let mut children: Vec<i32> = tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("children")).ok())
        .flat_map(|list| parse_children(&list))
        .collect();
    // A worker that exited stays listed until the master reaps it.
    children
        .retain(|pid| read_stat(*pid).is_some_and(|stat| stat.ppid == master && !stat.is_zombie()));
    children
}

/// The pids of a `/proc/<pid>/task/<tid>/children` list ("12 34 "). Pure.
pub fn parse_children(list: &str) -> Vec<i32> {
    list.split_ascii_whitespace()
        .filter_map(|pid| pid.parse().ok())
        .collect()
}

/// Pauses between checks of a reload: short at first (a reload usually takes milliseconds),
/// then doubling up to `MAX`, so a long drain checks a few times a second, not 100.
#[derive(Debug)]
pub struct Pause {
    next: Duration,
}

impl Default for Pause {
    fn default() -> Self {
        Self::new()
    }
}

impl Pause {
    const FIRST: Duration = Duration::from_millis(5);
    const MAX: Duration = Duration::from_millis(250);

    pub fn new() -> Self {
        Self { next: Self::FIRST }
    }

    /// The pause to take now; the next one is twice as long (capped). Pure.
    pub fn advance(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        now
    }

    pub async fn sleep(&mut self) {
        tokio::time::sleep(self.advance()).await;
    }
}

fn nginx_message(stderr: &[u8], status: std::process::ExitStatus) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(|line| line.trim_start_matches("nginx: ").trim())
        .filter(|line| {
            !line.is_empty() && !line.contains("configuration file") || line.contains("[emerg]")
        })
        .collect();
    if lines.is_empty() {
        format!("nginx exited with {status}")
    } else {
        lines.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn nginx_words_are_kept_and_trimmed() {
        let stderr = b"nginx: [emerg] invalid number of arguments in \"add_header\" directive in /x/conf.d/a.conf:3\nnginx: configuration file /x/nginx.conf test failed\n";
        let message = nginx_message(stderr, std::process::ExitStatus::from_raw(256));
        assert_eq!(
            message,
            "[emerg] invalid number of arguments in \"add_header\" directive in /x/conf.d/a.conf:3"
        );
        assert_eq!(
            nginx_message(b"", std::process::ExitStatus::from_raw(256)),
            "nginx exited with exit status: 1"
        );
    }

    #[test]
    fn children_lists_parse() {
        assert_eq!(parse_children("12 34 \n"), vec![12, 34]);
        assert!(parse_children("").is_empty());
    }

    #[test]
    fn reload_pauses_back_off_to_a_cap() {
        let mut pause = Pause::new();
        let pauses: Vec<u128> = (0..8).map(|_| pause.advance().as_millis()).collect();
        assert_eq!(pauses, vec![5, 10, 20, 40, 80, 160, 250, 250]);
    }

    #[test]
    fn workers_are_the_live_children_of_the_master() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("spawn");
        let me = std::process::id() as i32;
        assert!(workers(me).contains(&(child.id() as i32)));
        child.kill().expect("kill");
        child.wait().expect("wait");
        assert!(!workers(me).contains(&(child.id() as i32)));
    }
}
