//! Starting an app process: its own session and process group, the app user with exactly the
//! configured supplementary groups, the umask, rlimits and cgroup, the release as working
//! directory, a clean environment, and stdout/stderr appended straight to log files (no pipe
//! through the agent, so the app keeps logging while the agent restarts).

use std::fs::File;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use nix::sys::resource::Resource;
use nix::unistd::{Gid, Uid};

use super::limits::{Rlimit, RlimitKind};
use super::process::Watched;
use super::spec::{AppUser, ProcessSpec, process_env, shell_script};
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
    #[error("app.groups names {0:?}, which does not exist on this host")]
    MissingGroup(String),
    #[error("app.groups names {0:?}, the root group; refused unless app.allow_root = true")]
    RootGroup(String),
    #[error("cannot look up group {name:?} of app.groups: {source}")]
    GroupLookup { name: String, source: nix::Error },
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
    let groups = resolve_groups(&config.groups, config.allow_root)?;
    Ok(AppUser {
        name: user.name,
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        groups,
        home: user.dir,
        switch: euid.is_root() && !user.uid.is_root(),
    })
}

fn resolve_groups(names: &[String], allow_root: bool) -> Result<Vec<u32>, UserError> {
    names
        .iter()
        .map(|name| {
            let group = nix::unistd::Group::from_name(name)
                .map_err(|source| UserError::GroupLookup {
                    name: name.clone(),
                    source,
                })?
                .ok_or_else(|| UserError::MissingGroup(name.clone()))?;
            if group.gid.as_raw() == 0 && !allow_root {
                return Err(UserError::RootGroup(name.clone()));
            }
            Ok(group.gid.as_raw())
        })
        .collect()
}

/// Where a process writes its output.
#[derive(Debug, Clone, Copy)]
pub struct OutputFiles<'a> {
    pub stdout: &'a Path,
    pub stderr: &'a Path,
}

/// How the child is set up before it execs the app.
#[derive(Debug)]
pub struct ChildSetup {
    pub umask: u32,
    pub rlimits: Vec<Rlimit>,
    /// The process's cgroup `cgroup.procs`, open for writing: the child joins it.
    pub cgroup_procs: Option<File>,
}

/// Starts `spec` and returns a handle that notices its exit.
pub fn launch(
    spec: &ProcessSpec,
    user: &AppUser,
    output: OutputFiles<'_>,
    setup: ChildSetup,
) -> io::Result<Watched> {
    let stdout = open_append(output.stdout)?;
    let stderr = open_append(output.stderr)?;
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(shell_script(&spec.command))
        .current_dir(&spec.cwd)
        .env_clear()
        .envs(process_env(spec, user))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    prepare_child(&mut command, user, setup);
    let child = command.spawn()?;
    let pid = child.id() as i32;
    // Dropping `child` neither waits nor kills: the pidfd takes over watching and reaping.
    drop(child);
    Watched::child(pid)
}

/// Who the child becomes: only root can switch, and then the groups are exactly the
/// configured ones (none by default), never the agent's.
struct Identity {
    uid: Uid,
    gid: Gid,
    groups: Vec<Gid>,
}

#[allow(unsafe_code)]
fn prepare_child(command: &mut Command, user: &AppUser, setup: ChildSetup) {
    let identity = user.switch.then(|| Identity {
        uid: Uid::from_raw(user.uid),
        gid: Gid::from_raw(user.gid),
        groups: user.groups.iter().map(|g| Gid::from_raw(*g)).collect(),
    });
    let ChildSetup {
        umask,
        rlimits,
        cgroup_procs,
    } = setup;
    let umask = nix::sys::stat::Mode::from_bits_truncate(umask);
    // SAFETY: the closure runs in the forked child before exec. It only makes system calls
    // that are async-signal-safe (setsid, write, setrlimit, umask, setgroups, setgid, setuid)
    // on data prepared before the fork, and allocates nothing. std runs its own uid/gid
    // switch BEFORE pre_exec closures, so the switch is done here instead, in the order the
    // privileges require: join the cgroup and raise rlimits while still root, then groups,
    // gid, and uid last.
    unsafe {
        command.pre_exec(move || {
            nix::unistd::setsid()?;
            if let Some(procs) = &cgroup_procs {
                // "0" moves the writing process itself.
                nix::unistd::write(procs, b"0")?;
            }
            for limit in &rlimits {
                nix::sys::resource::setrlimit(resource(limit.kind), limit.soft, limit.hard)?;
            }
            nix::sys::stat::umask(umask);
            if let Some(identity) = &identity {
                nix::unistd::setgroups(&identity.groups)?;
                nix::unistd::setgid(identity.gid)?;
                nix::unistd::setuid(identity.uid)?;
            }
            Ok(())
        });
    }
}

pub fn resource(kind: RlimitKind) -> Resource {
    match kind {
        RlimitKind::OpenFiles => Resource::RLIMIT_NOFILE,
        RlimitKind::CoreSize => Resource::RLIMIT_CORE,
    }
}
