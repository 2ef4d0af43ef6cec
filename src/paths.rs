//! Every path the agent touches, derived from one root prefix (`/` in production, a temporary
//! directory in tests) so that nothing ever escapes the root a test or a demo chose.

use std::path::{Path, PathBuf};

/// The on-disk layout of `../shared/design.md`, anchored at `root`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    root: PathBuf,
}

impl Paths {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn under(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    pub fn config_file(&self) -> PathBuf {
        self.under("etc/hostmanager/agent.toml")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.under("var/lib/hostmanager")
    }

    pub fn state_file(&self) -> PathBuf {
        self.state_dir().join("state.json")
    }

    pub fn lock_file(&self) -> PathBuf {
        self.state_dir().join("agent.lock")
    }

    pub fn deployments_dir(&self) -> PathBuf {
        self.state_dir().join("deployments")
    }

    pub fn deployment_record(&self, id: u64) -> PathBuf {
        self.deployments_dir().join(format!("{id}.json"))
    }

    pub fn processes_file(&self) -> PathBuf {
        self.state_dir().join("processes.json")
    }

    pub fn events_dir(&self) -> PathBuf {
        self.state_dir().join("events")
    }

    /// Where the healthd log follower saved its position (see `metrics/follow.rs`).
    pub fn healthd_checkpoint(&self) -> PathBuf {
        self.state_dir()
            .join("metrics")
            .join("healthd-position.json")
    }

    /// Log checkpoints, rotation state, the publication record.
    pub fn logs_state_dir(&self) -> PathBuf {
        self.state_dir().join("logs")
    }

    /// Tail reports and bundles made on request.
    pub fn logs_requests_dir(&self) -> PathBuf {
        self.logs_state_dir().join("requests")
    }

    /// Root's own copies of each release's `.platform` and Buildfile, one directory per
    /// deployment: what root runs or loads never comes from the app-writable release.
    pub fn platform_copies_dir(&self) -> PathBuf {
        self.state_dir().join("platform")
    }

    pub fn platform_copy(&self, deployment_id: u64) -> PathBuf {
        self.platform_copies_dir().join(deployment_id.to_string())
    }

    /// Python virtualenvs, one per deployment that built one (`deploy/runtime`): outside the
    /// release, so a copied release keeps working; built by `deploy.hook_user`.
    pub fn venvs_dir(&self) -> PathBuf {
        self.state_dir().join("venvs")
    }

    pub fn venv(&self, deployment_id: u64) -> PathBuf {
        self.venvs_dir().join(deployment_id.to_string())
    }

    /// pip, npm and Go caches shared by the builds of every release, one tree per build user
    /// (uid): a cache one user can write is never used by a build running as another.
    pub fn build_cache(&self, uid: u32) -> PathBuf {
        self.under("var/cache/hostmanager/build")
            .join(uid.to_string())
    }

    pub fn downloads_dir(&self) -> PathBuf {
        self.state_dir().join("downloads")
    }

    /// nginx runs with its own prefix here: generated configs, pid file, temp dirs.
    pub fn nginx_dir(&self) -> PathBuf {
        self.state_dir().join("nginx")
    }

    pub fn app_dir(&self) -> PathBuf {
        self.under("var/app")
    }

    pub fn releases_dir(&self) -> PathBuf {
        self.app_dir().join("releases")
    }

    pub fn release_dir(&self, deployment_id: u64) -> PathBuf {
        self.releases_dir().join(deployment_id.to_string())
    }

    /// Symlink to the release being served; flipped atomically.
    pub fn current_link(&self) -> PathBuf {
        self.app_dir().join("current")
    }

    /// Symlink to the release being built, kept for hooks written against Elastic Beanstalk.
    pub fn staging_link(&self) -> PathBuf {
        self.app_dir().join("staging")
    }

    pub fn log_dir(&self) -> PathBuf {
        self.under("var/log")
    }

    pub fn process_stdout_log(&self, process: &str) -> PathBuf {
        self.log_dir().join(format!("{process}.stdout.log"))
    }

    pub fn process_stderr_log(&self, process: &str) -> PathBuf {
        self.log_dir().join(format!("{process}.stderr.log"))
    }

    /// Rotated logs (`<path_key>-<epoch>.gz`), the spool of publication.
    pub fn rotated_log_dir(&self) -> PathBuf {
        self.log_dir().join("rotated")
    }

    pub fn agent_log_dir(&self) -> PathBuf {
        self.log_dir().join("hostmanager")
    }

    pub fn deploy_log(&self) -> PathBuf {
        self.agent_log_dir().join("deploy.log")
    }

    pub fn hooks_log(&self) -> PathBuf {
        self.agent_log_dir().join("hooks.log")
    }

    pub fn nginx_log_dir(&self) -> PathBuf {
        self.log_dir().join("nginx")
    }

    pub fn healthd_log_dir(&self) -> PathBuf {
        self.nginx_log_dir().join("healthd")
    }

    pub fn run_dir(&self) -> PathBuf {
        self.under("run/hostmanager")
    }

    pub fn control_socket(&self) -> PathBuf {
        self.run_dir().join("control.sock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_stays_under_the_root() {
        let paths = Paths::new("/srv/hm");
        for path in [
            paths.config_file(),
            paths.state_file(),
            paths.deployment_record(7),
            paths.release_dir(7),
            paths.current_link(),
            paths.process_stdout_log("web"),
            paths.healthd_log_dir(),
            paths.control_socket(),
            paths.nginx_dir(),
            paths.platform_copy(7),
        ] {
            assert!(
                path.starts_with("/srv/hm"),
                "{} escapes the root",
                path.display()
            );
        }
        assert_eq!(
            paths.release_dir(7),
            Path::new("/srv/hm/var/app/releases/7")
        );
        assert_eq!(
            paths.control_socket(),
            Path::new("/srv/hm/run/hostmanager/control.sock")
        );
    }
}
