//! Starting an app process: its own session and process group, the app user, the release as
//! working directory, a clean environment, and stdout/stderr appended straight to log files
//! (no pipe through the agent, so the app keeps logging while the agent restarts).

use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use super::process::Watched;
use super::spec::{AppUser, ProcessSpec, process_env};
use crate::config::AppConfig;
use crate::fsutil::open_append;

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error(
        "app.user {0:?} does not exist on this host (create it: useradd --system --no-create-home --shell /usr/sbin/nologin {0})"
    )]
    Missing(String),
    #[error("app.user {0:?} is root; apps never run as root unless app.allow_root = true")]
    Root(String),
    #[error("cannot look up app.user {name:?}: {source}")]
    Lookup { name: String, source: nix::Error },
}

/// Resolves the user apps run as. Only root can switch users; otherwise the app runs as the
/// agent's own user (a development setup) and the configured name is ignored.
pub fn resolve_app_user(config: &AppConfig) -> Result<AppUser, UserError> {
    let euid = nix::unistd::geteuid();
    let user = if euid.is_root() {
        nix::unistd::User::from_name(&config.user)
            .map_err(|source| UserError::Lookup {
                name: config.user.clone(),
                source,
            })?
            .ok_or_else(|| UserError::Missing(config.user.clone()))?
    } else {
        nix::unistd::User::from_uid(euid)
            .map_err(|source| UserError::Lookup {
                name: euid.to_string(),
                source,
            })?
            .ok_or_else(|| UserError::Missing(euid.to_string()))?
    };
    if user.uid.is_root() && !config.allow_root {
        return Err(UserError::Root(user.name));
    }
    Ok(AppUser {
        name: user.name,
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        home: user.dir,
        switch: euid.is_root() && !user.uid.is_root(),
    })
}

/// Where a process writes its output.
#[derive(Debug, Clone, Copy)]
pub struct OutputFiles<'a> {
    pub stdout: &'a Path,
    pub stderr: &'a Path,
}

/// Starts `spec` and returns a handle that notices its exit.
pub fn launch(spec: &ProcessSpec, user: &AppUser, output: OutputFiles<'_>) -> io::Result<Watched> {
    let stdout = open_append(output.stdout)?;
    let stderr = open_append(output.stderr)?;
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(&spec.command)
        .current_dir(&spec.cwd)
        .env_clear()
        .envs(process_env(spec, user))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    if user.switch {
        // std also clears the supplementary groups when it switches from root.
        command.uid(user.uid).gid(user.gid);
    }
    new_session(&mut command);
    let child = command.spawn()?;
    let pid = child.id() as i32;
    // Dropping `child` neither waits nor kills: the pidfd takes over watching and reaping.
    drop(child);
    Watched::child(pid)
}

#[allow(unsafe_code)]
fn new_session(command: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and only calls setsid(2) and
    // umask(2), which are async-signal-safe and touch no memory shared with the parent.
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setsid()?;
            nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
            Ok(())
        });
    }
}
