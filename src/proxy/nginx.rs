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

/// Worker processes of `master`, with whether each is shutting down (an old generation).
pub fn workers(master: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| read_stat(*pid).is_some_and(|stat| stat.ppid == master && !stat.is_zombie()))
        .collect()
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
}
