//! The HAProxy process and its runtime API: config checked (`haproxy -c`) before it is
//! written, started in master-worker mode as a daemon (it outlives the controller, as the
//! apps outlive the agent: a controller restart drops no request), adopted from its pid file,
//! reloaded with SIGUSR2 (seamless: the master hands the listeners to the new worker), and
//! driven through its admin socket (0600, in the controller's private directory).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::os::unix::ffi::OsStrExt;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::render::Paths;
use crate::deploy::LbServer;

#[derive(Debug, Clone)]
pub struct Haproxy {
    pub bin: PathBuf,
    pub dir: PathBuf,
}

impl Haproxy {
    fn paths(&self) -> Paths<'_> {
        Paths { dir: &self.dir }
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("haproxy.cfg")
    }

    fn pid_path(&self) -> PathBuf {
        self.dir.join("haproxy.pid")
    }

    /// The master's pid, when the pid file names a live HAProxy running our config. The pid
    /// file is rewritten during a reload and may be read half-written then: callers that
    /// would start a new HAProxy ask the admin socket first ([`Self::answers`]).
    pub fn running(&self) -> Option<nix::unistd::Pid> {
        let text = std::fs::read_to_string(self.pid_path()).ok()?;
        let pid: i32 = text.lines().next()?.trim().parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let config = self.config_path();
        let ours = cmdline
            .split(|b| *b == 0)
            .any(|arg| Path::new(std::ffi::OsStr::from_bytes(arg)) == config);
        ours.then(|| nix::unistd::Pid::from_raw(pid))
    }

    /// Whether an HAProxy answers on our admin socket (whatever its pid file says).
    pub async fn answers(&self) -> bool {
        self.command("show info")
            .await
            .is_ok_and(|info| info.contains("Pid:"))
    }

    /// Whether HAProxy runs with exactly this config and map.
    pub fn serves(&self, config: &str, map: &str) -> bool {
        self.running().is_some()
            && std::fs::read_to_string(self.config_path()).is_ok_and(|c| c == config)
            && std::fs::read_to_string(self.paths().map()).is_ok_and(|m| m == map)
    }

    /// Writes the map, checks and writes the config, then starts HAProxy or reloads it.
    /// A config HAProxy refuses is not written: the running one stays.
    /// `servers` (backend, server, address) are the config's: those HAProxy does not run yet
    /// start down.
    pub async fn apply(
        &self,
        config: &str,
        map: &str,
        servers: &[(String, String, String)],
    ) -> Result<(), String> {
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        write_atomic(&self.paths().map(), map)?;
        let candidate = self.dir.join("haproxy.cfg.new");
        write_atomic(&candidate, config)?;
        let check = tokio::process::Command::new(&self.bin)
            .arg("-c")
            .arg("-q")
            .arg("-f")
            .arg(&candidate)
            .output()
            .await
            .map_err(|e| format!("{}: {e}", self.bin.display()))?;
        if !check.status.success() {
            return Err(format!(
                "HAProxy refused the generated config ({}): {}",
                check.status,
                String::from_utf8_lossy(&check.stderr).trim()
            ));
        }
        match self.running() {
            Some(master) => {
                // What the agent and the runtime API set (drain, weights) survives the reload.
                if let Ok(state) = self.command("show servers state").await {
                    let state = super::render::state_with_new_servers_down(&state, servers);
                    write_atomic(&self.paths().server_state(), &state)?;
                }
                std::fs::rename(&candidate, self.config_path()).map_err(|e| e.to_string())?;
                nix::sys::signal::kill(master, nix::sys::signal::Signal::SIGUSR2)
                    .map_err(|e| format!("reloading HAProxy (pid {master}): {e}"))
            }
            // One that answers on our socket without a readable pid file is mid-reload (or
            // its pid file was removed): starting a second one would split the traffic
            // between two configs. Try again on the next tick.
            None if self.answers().await => Err(format!(
                "HAProxy answers on {} but {} does not name its master (a reload under way?)",
                self.paths().admin_socket().display(),
                self.pid_path().display()
            )),
            None => {
                std::fs::rename(&candidate, self.config_path()).map_err(|e| e.to_string())?;
                let _ = std::fs::remove_file(self.paths().server_state());
                let started = tokio::process::Command::new(&self.bin)
                    .arg("-W")
                    .arg("-D")
                    .arg("-f")
                    .arg(self.config_path())
                    .arg("-p")
                    .arg(self.pid_path())
                    .stdin(std::process::Stdio::null())
                    .output()
                    .await
                    .map_err(|e| format!("{}: {e}", self.bin.display()))?;
                if started.status.success() {
                    Ok(())
                } else {
                    Err(format!(
                        "HAProxy did not start ({}): {}",
                        started.status,
                        String::from_utf8_lossy(&started.stderr).trim()
                    ))
                }
            }
        }
    }

    /// One runtime API command; its whole answer.
    pub async fn command(&self, command: &str) -> Result<String, String> {
        let socket = self.paths().admin_socket();
        let exchange = async {
            let mut stream = tokio::net::UnixStream::connect(&socket).await?;
            stream.write_all(format!("{command}\n").as_bytes()).await?;
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await?;
            Ok::<_, std::io::Error>(answer)
        };
        tokio::time::timeout(Duration::from_secs(5), exchange)
            .await
            .map_err(|_| format!("{}: no answer within 5 s", socket.display()))?
            .map_err(|e| format!("{}: {e}", socket.display()))
    }

    /// Every server's state, by (backend, server).
    pub async fn stats(&self) -> Result<BTreeMap<(String, String), LbServer>, String> {
        Ok(parse_stats(&self.command("show stat").await?))
    }

    /// Points `key` at `value` in the running host map, without a reload.
    pub async fn set_map(&self, key: &str, value: &str) -> Result<(), String> {
        let map = self.paths().map();
        let answer = self
            .command(&format!("set map {} {key} {value}", map.display()))
            .await?;
        if answer.trim().is_empty() {
            Ok(())
        } else {
            // HAProxy answers nothing on success; anything else names the problem.
            Err(format!("set map {key}: {}", answer.trim()))
        }
    }

    /// Writes the host map without telling HAProxy (it reads it at the next reload).
    pub fn write_map(&self, map: &str) -> Result<(), String> {
        write_atomic(&self.paths().map(), map)
    }
}

fn write_atomic(path: &Path, text: &str) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// HAProxy's `show stat` CSV → each server's rotation and open sessions. A server takes new
/// traffic only when its status is UP (`UP`, or `UP 1/3` going down); `DRAIN`, `MAINT`,
/// `NOLB`, `DOWN` (and `DOWN 1/2` going up) do not.
pub fn parse_stats(csv: &str) -> BTreeMap<(String, String), LbServer> {
    let mut lines = csv.lines();
    let Some(header) = lines.next().and_then(|h| h.strip_prefix("# ")) else {
        return BTreeMap::new();
    };
    let columns: Vec<&str> = header.split(',').collect();
    let index = |name: &str| columns.iter().position(|c| *c == name);
    let (Some(px), Some(sv), Some(scur), Some(status)) = (
        index("pxname"),
        index("svname"),
        index("scur"),
        index("status"),
    ) else {
        return BTreeMap::new();
    };
    let mut servers = BTreeMap::new();
    for line in lines {
        let fields: Vec<&str> = line.split(',').collect();
        let field = |i: usize| fields.get(i).copied().unwrap_or("");
        if matches!(field(sv), "FRONTEND" | "BACKEND" | "") {
            continue;
        }
        let state = field(status);
        servers.insert(
            (field(px).to_string(), field(sv).to_string()),
            LbServer {
                in_rotation: state == "UP" || state.starts_with("UP "),
                up: state == "UP" || state.starts_with("UP ") || state.starts_with("DRAIN"),
                sessions: field(scur).parse().unwrap_or(0),
            },
        );
    }
    servers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_tell_servers_in_rotation_and_their_sessions() {
        let csv = "# pxname,svname,qcur,qmax,scur,smax,status\n\
                   environments,FRONTEND,,,3,9,OPEN\n\
                   env_web,i-1,0,0,2,5,UP\n\
                   env_web,i-2,0,0,1,5,DRAIN (agent)\n\
                   env_web,i-3,0,0,0,5,UP 1/3\n\
                   env_web,i-4,0,0,0,5,DOWN 1/2\n\
                   env_web,i-5,0,0,0,5,MAINT\n\
                   env_web,BACKEND,0,0,3,9,UP\n";
        let stats = parse_stats(csv);
        let get = |s: &str| stats[&("env_web".to_string(), s.to_string())].clone();
        assert_eq!(stats.len(), 5);
        assert_eq!(
            get("i-1"),
            LbServer {
                in_rotation: true,
                up: true,
                sessions: 2
            }
        );
        assert_eq!(
            get("i-2"),
            LbServer {
                in_rotation: false,
                up: true,
                sessions: 1
            }
        );
        assert!(get("i-3").up, "going down, still up");
        assert!(!get("i-4").up && !get("i-5").up);
        assert!(get("i-3").in_rotation);
        assert!(!get("i-4").in_rotation);
        assert!(!get("i-5").in_rotation);
        assert!(parse_stats("garbage").is_empty());
    }
}
