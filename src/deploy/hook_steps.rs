//! The hook steps of a deployment: the identity and environment hooks and Buildfile commands
//! run with, and running one phase of hooks (or the Buildfile) from root's copy of the
//! release's `.platform` (`platform.rs`), in the release directory.

use std::collections::BTreeMap;
use std::path::Path;

use super::Engine;
use super::hooks::{HookContext, hook_files, run_command, run_hook_dir};
use super::platform::BUILDFILE;
use super::procfile::parse_buildfile;
use super::steps::StepFailure;
use crate::supervise::APP_PATH;

impl Engine {
    /// The environment and identity hooks and Buildfile commands run with; `port` is the PORT
    /// the release's web process gets.
    pub(super) fn hook_context(
        &self,
        id: u64,
        dir: &Path,
        properties: &BTreeMap<String, String>,
        port: u16,
        runtime: Option<&super::runtime::RuntimeInfo>,
    ) -> Result<HookContext, StepFailure> {
        let (user, home) = self.hook_user()?;
        let mut env = BTreeMap::from([
            ("PATH".to_string(), APP_PATH.to_string()),
            ("HOME".to_string(), home),
            ("LANG".to_string(), "C.UTF-8".to_string()),
            // Hooks written for Elastic Beanstalk test this; a deployment sets it from its
            // leader flag (a host without a controller is always the leader).
            ("EB_IS_COMMAND_LEADER".to_string(), "true".to_string()),
        ]);
        // The platform's (the venv's PATH), under the properties as for the app's processes;
        // only when the hooks' user (or root) owns the venv: a venv another user built (when
        // `deploy.hook_user` changed since) is that user's to change, never on root's PATH.
        let hook_uid = user.map_or_else(|| nix::unistd::geteuid().as_raw(), |(uid, _)| uid);
        if let Some(runtime) = runtime.filter(|r| venv_trusted_by(r, hook_uid)) {
            env.extend(runtime.env.clone());
        }
        env.extend(properties.iter().map(|(k, v)| (k.clone(), v.clone())));
        // Set last so no property can hide a hook from crash recovery (which finds orphaned
        // hooks by these two) or change the port nginx will use.
        env.insert("HOSTMANAGER_DEPLOYMENT_ID".to_string(), id.to_string());
        env.insert(
            "HOSTMANAGER_ROOT".to_string(),
            self.paths.root().display().to_string(),
        );
        env.insert("PORT".to_string(), port.to_string());
        Ok(HookContext {
            deployment: id,
            cwd: dir.to_path_buf(),
            env: env.into(),
            timeout: self.config.deploy.hook_timeout,
            user,
            log: self.paths.hooks_log(),
        })
    }

    /// uid/gid to switch hooks to (when the agent is root and `deploy.hook_user` is set) and
    /// their HOME. A `hook_user` that does not exist fails the step: hooks must never quietly
    /// run as root instead of the user the config names.
    fn hook_user(&self) -> Result<(Option<(u32, u32)>, String), StepFailure> {
        let euid = nix::unistd::geteuid();
        let Some(name) = self.config.deploy.hook_user.as_deref() else {
            let home = nix::unistd::User::from_uid(euid)
                .ok()
                .flatten()
                .map(|u| u.dir.display().to_string());
            return Ok((None, home.unwrap_or_else(|| "/".to_string())));
        };
        let user = nix::unistd::User::from_name(name)
            .ok()
            .flatten()
            .ok_or_else(|| {
                StepFailure::new(format!(
                    "deploy.hook_user {name:?} does not exist on this host"
                ))
            })?;
        let switch = euid
            .is_root()
            .then(|| (user.uid.as_raw(), user.gid.as_raw()));
        Ok((switch, user.dir.display().to_string()))
    }

    /// Runs the hooks of one phase directory (`phase` as in the release, read from root's copy
    /// `platform`) as one step; skipped when there are none.
    pub(super) async fn run_hooks(
        &self,
        id: u64,
        context: &HookContext,
        platform: &Path,
        phase: &str,
    ) -> Result<(), StepFailure> {
        let dir = platform.join(phase);
        if hook_files(&dir).is_empty() {
            return Ok(());
        }
        let step = phase.trim_start_matches(".platform/").replace('/', "-");
        let warnings = self
            .step(id, &step, run_hook_dir(context, &dir, phase))
            .await?;
        for warning in warnings {
            self.events.emit(
                crate::events::NewEvent::new(crate::events::Severity::Warning, "deploy", warning)
                    .deployment(id),
            );
        }
        Ok(())
    }

    /// The Buildfile as root copied it at extraction; its commands run in the release.
    pub(super) async fn run_buildfile(
        &self,
        id: u64,
        context: &HookContext,
        platform: &Path,
    ) -> Result<(), StepFailure> {
        let Ok(text) = std::fs::read_to_string(platform.join(BUILDFILE)) else {
            return Ok(());
        };
        self.step(id, "buildfile", async {
            for entry in parse_buildfile(&text)? {
                let name = format!("Buildfile line {} ({})", entry.line, entry.name);
                run_command(context, &name, &entry.command).await?;
            }
            Ok(())
        })
        .await
    }
}

/// Whether a release's venv (if it has one) belongs to `uid` or to root.
fn venv_trusted_by(runtime: &super::runtime::RuntimeInfo, uid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    runtime.venv.as_ref().is_none_or(|venv| {
        std::fs::symlink_metadata(venv)
            .is_ok_and(|m| m.is_dir() && (m.uid() == 0 || m.uid() == uid))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PlatformName;
    use crate::deploy::runtime::RuntimeInfo;

    fn runtime(venv: Option<std::path::PathBuf>) -> RuntimeInfo {
        RuntimeInfo {
            platform: PlatformName::Python,
            version: None,
            reason: "test".into(),
            server: None,
            env: BTreeMap::new(),
            venv,
            static_files: Vec::new(),
            options: BTreeMap::new(),
        }
    }

    #[test]
    fn a_venv_reaches_a_hooks_path_only_when_the_hooks_user_or_root_owns_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let venv = dir.path().join("venv");
        std::fs::create_dir(&venv).expect("mkdir");
        // As root the venv is given to another user; otherwise it is ours (not root's).
        let owner = if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::lchown(&venv, Some(4242), Some(4242)).expect("chown");
            4242
        } else {
            nix::unistd::geteuid().as_raw()
        };
        let built = runtime(Some(venv.clone()));
        assert!(venv_trusted_by(&built, owner));
        assert!(!venv_trusted_by(&built, owner + 1), "another user's venv");
        assert!(
            venv_trusted_by(&runtime(None), owner + 1),
            "no venv: nothing to trust"
        );
        assert!(!venv_trusted_by(
            &runtime(Some(dir.path().join("gone"))),
            owner
        ));
    }
}
