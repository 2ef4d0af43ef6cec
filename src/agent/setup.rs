//! Startup steps that touch the host: the root's lock, its directories, get-config, systemd.

use super::{AgentError, io};
use crate::config::Config;
use crate::local_api::AgentInfo;
use crate::paths::Paths;

pub(super) fn agent_info(paths: &Paths, config: &Config) -> AgentInfo {
    AgentInfo {
        version: env!("CARGO_PKG_VERSION").to_string(),
        pid: std::process::id(),
        root: paths.root().display().to_string(),
        environment: config.environment.name.clone(),
        started_at: jiff::Timestamp::now().to_string(),
        events_dropped: 0,
    }
}

/// One agent per root: an exclusive lock held for the agent's life.
pub(super) fn lock_root(paths: &Paths) -> Result<nix::fcntl::Flock<std::fs::File>, AgentError> {
    let path = paths.lock_file();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(format!("opening {}", path.display())))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|_| AgentError::AlreadyRunning(paths.root().to_path_buf(), path))
}

pub(super) fn prepare_layout(paths: &Paths) -> Result<(), AgentError> {
    use std::os::unix::fs::PermissionsExt;
    for dir in [
        paths.deployments_dir(),
        paths.releases_dir(),
        paths.agent_log_dir(),
        paths.run_dir(),
    ] {
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    }
    // Secrets (environment properties) live under the state directory: root only.
    std::fs::set_permissions(
        paths.deployments_dir(),
        std::fs::Permissions::from_mode(0o700),
    )
    .map_err(io("securing the deployments directory"))?;
    Ok(())
}

/// `/opt/elasticbeanstalk/bin/get-config`, where Elastic Beanstalk's hooks and scripts call
/// it: a two-line script running this binary's `get-config` (root's, 0755). The package
/// installs the same file; the agent keeps it pointing at the binary that runs.
pub(super) fn install_get_config(paths: &Paths) {
    let path = paths.root().join("opt/elasticbeanstalk/bin/get-config");
    let quote = |text: &str| format!("'{}'", text.replace('\'', "'\\''"));
    let Ok(binary) = std::env::current_exe() else {
        return;
    };
    let script = format!(
        "#!/bin/sh\n# Written by hostmanager: Elastic Beanstalk's get-config.\nexec {} --root {} get-config \"$@\"\n",
        quote(&binary.display().to_string()),
        quote(&paths.root().display().to_string()),
    );
    if std::fs::read_to_string(&path).is_ok_and(|text| text == script) {
        return;
    }
    if let Err(error) = crate::fsutil::write_atomic(&path, script.as_bytes(), 0o755) {
        tracing::warn!(%error, path = %path.display(), "cannot install get-config");
    }
}

pub(super) fn notify_ready() {
    if std::env::var_os("NOTIFY_SOCKET").is_some()
        && let Err(error) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready])
    {
        tracing::warn!(%error, "cannot notify systemd");
    }
}
