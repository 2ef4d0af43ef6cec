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
    ) -> Result<HookContext, StepFailure> {
        let (user, home) = self.hook_user()?;
        let mut env = BTreeMap::from([
            ("PATH".to_string(), APP_PATH.to_string()),
            ("HOME".to_string(), home),
            ("LANG".to_string(), "C.UTF-8".to_string()),
            // Hooks written for Elastic Beanstalk test this; a single host is always the leader.
            ("EB_IS_COMMAND_LEADER".to_string(), "true".to_string()),
        ]);
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
