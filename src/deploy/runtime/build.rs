//! The I/O shell of the platforms: facts from a freshly extracted (still root-owned) release,
//! the runtime's version, and the build commands run like Buildfile commands.

use std::io::Read;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use super::{BuildDirs, BundleFacts, PackageFacts, Plan, Probe, RuntimeInfo, choose, plan};
use crate::deploy::Engine;
use crate::deploy::hooks::{HookContext, run_program};
use crate::deploy::parse_procfile;
use crate::deploy::steps::StepFailure;

/// The largest package.json or requirements.txt read (they are small; a huge one is refused).
const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;

/// The Procfile's processes and how the platform builds and starts the release.
pub(in crate::deploy) struct PlatformPlan {
    pub facts: BundleFacts,
    pub plan: Plan,
    pub runtime: RuntimeInfo,
}

impl Engine {
    /// Step `procfile`: what is at the release's root, the Procfile parsed when there is one.
    pub(in crate::deploy) async fn bundle_facts(
        &self,
        dir: &Path,
    ) -> Result<BundleFacts, StepFailure> {
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || gather_facts(&dir)).await?
    }

    /// Step `platform`: the platform chosen (and why, in deploy.log), its plan, and the
    /// runtime's version. Fails when the runtime is missing, naming what to install.
    pub(in crate::deploy) async fn choose_platform(
        &self,
        id: u64,
        dir: &Path,
        facts: BundleFacts,
        request: &crate::deploy::DeploymentRequest,
        build_uid: u32,
    ) -> Result<PlatformPlan, StepFailure> {
        let config = &crate::config::with_options(
            &self.config.platform,
            &request.platform_options,
            &request.env,
        )
        .map_err(StepFailure::new)?;
        let choice = choose(config.name, &facts).map_err(StepFailure::new)?;
        let dirs = BuildDirs {
            venv: self.paths.venv(id),
            cache: self.paths.build_cache(build_uid),
        };
        let mut plan = plan(choice.platform, &facts, config, &dirs).map_err(StepFailure::new)?;
        plan.static_files
            .retain(|(_, static_dir)| is_real_dir(&dir.join(static_dir)));
        let version = match &plan.probe {
            Some(probe) => Some(probe_version(probe).await.map_err(|message| {
                StepFailure::new(format!("{} platform: {message}", choice.platform))
            })?),
            None => None,
        };
        let runtime = RuntimeInfo {
            platform: choice.platform,
            version,
            reason: choice.reason,
            server: plan.server.clone(),
            env: plan.env.clone(),
            venv: plan.venv.clone(),
            static_files: plan.static_files.clone(),
            options: request.platform_options.clone(),
        };
        let web = match (&facts.procfile, &plan.default_web) {
            (Some(_), _) => "the Procfile names the processes".to_string(),
            (None, Some(web)) => format!("no Procfile: the web process runs `{web}`"),
            (None, None) => String::new(),
        };
        self.deploy_log(
            id,
            &format!(
                "platform {} ({}); {web}",
                runtime.describe(),
                runtime.reason
            ),
        );
        Ok(PlatformPlan {
            facts,
            plan,
            runtime,
        })
    }

    /// Step `platform-build`: the plan's commands in order, in the release, as the build user;
    /// skipped when there is nothing to build.
    pub(in crate::deploy) async fn run_platform_build(
        &self,
        id: u64,
        context: &HookContext,
        plan: &Plan,
    ) -> Result<(), StepFailure> {
        if plan.build.is_empty() {
            return Ok(());
        }
        self.step(id, "platform-build", async {
            for command in &plan.build {
                for dir in &command.creates {
                    let dir = context.cwd.join(dir);
                    make_owned_dir(&dir, context.user).map_err(|error| {
                        StepFailure::new(format!("creating {}: {error}", dir.display()))
                    })?;
                }
                let name = format!("platform build `{}`", command.label);
                run_program(
                    context,
                    &name,
                    &command.program,
                    &command.args,
                    &command.env,
                    command.summary,
                )
                .await?;
            }
            Ok(())
        })
        .await
    }
}

impl Engine {
    /// Deletes the virtualenvs no kept release, running or queued deployment refers to.
    pub(in crate::deploy) async fn prune_venvs(&self, in_progress: u64) {
        let keep = self.per_deployment_in_use(
            in_progress,
            |release| release.runtime.as_ref().and_then(|r| r.venv.clone()),
            |id| self.paths.venv(id),
        );
        for venv in crate::deploy::retention::numbered_entries(&self.paths.venvs_dir()) {
            if !keep.contains(&venv) {
                let _ = crate::deploy::retention::remove_tree(venv).await;
            }
        }
    }
}

/// The uid a build runs as: the hook user's when the agent switches to it, else the agent's.
pub(in crate::deploy) fn build_uid(context: &HookContext) -> u32 {
    context
        .user
        .map_or_else(|| nix::unistd::geteuid().as_raw(), |(uid, _)| uid)
}

fn gather_facts(dir: &Path) -> Result<BundleFacts, StepFailure> {
    let mut facts = BundleFacts::default();
    let entries = std::fs::read_dir(dir)
        .map_err(|error| StepFailure::new(format!("{}: {error}", dir.display())))?;
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let name = entry.file_name().to_string_lossy().to_string();
        if kind.is_file() {
            facts.files.insert(name);
        } else if kind.is_dir() {
            facts.dirs.insert(name);
        }
    }
    facts.bin_application =
        std::fs::symlink_metadata(dir.join("bin/application")).is_ok_and(|m| m.is_file());
    if facts.has("Procfile") {
        let text = read_manifest(&dir.join("Procfile"))?;
        facts.procfile = Some(parse_procfile(&text)?);
    }
    if facts.has("requirements.txt") {
        facts.requirements = Some(read_manifest(&dir.join("requirements.txt"))?);
    }
    if facts.has("package.json") {
        let text = read_manifest(&dir.join("package.json"))?;
        facts.package = Some(package_facts(&text)?);
    }
    Ok(facts)
}

/// `package.json`'s start script and dependencies; a file that is not JSON fails naming it.
pub(super) fn package_facts(text: &str) -> Result<PackageFacts, StepFailure> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|error| StepFailure::new(format!("package.json is not valid JSON: {error}")))?;
    let not_empty = |key: &str| {
        value
            .get(key)
            .and_then(|v| v.as_object())
            .is_some_and(|o| !o.is_empty())
    };
    Ok(PackageFacts {
        start_script: value
            .pointer("/scripts/start")
            .and_then(|v| v.as_str())
            .is_some_and(|s| !s.trim().is_empty()),
        has_dependencies: not_empty("dependencies") || not_empty("devDependencies"),
    })
}

/// A small file of the bundle, never through a symlink.
fn read_manifest(path: &Path) -> Result<String, StepFailure> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let fail = |error: std::io::Error| StepFailure::new(format!("{name}: {error}"));
    let file = crate::fsutil::open_regular_nofollow(path).map_err(fail)?;
    let mut text = String::new();
    file.take(MAX_MANIFEST_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(fail)?;
    if text.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(StepFailure::new(format!(
            "{name} is larger than {MAX_MANIFEST_BYTES} bytes"
        )));
    }
    Ok(text)
}

fn is_real_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

/// First line the runtime prints about its version (`java -version` writes to stderr).
async fn probe_version(probe: &Probe) -> Result<String, String> {
    let output = tokio::process::Command::new(probe.program)
        .args(probe.args)
        .env_clear()
        .env("PATH", crate::supervise::APP_PATH)
        .env("LANG", "C.UTF-8")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|error| {
            format!(
                "{} is not installed on this host ({error}): {}",
                probe.program, probe.install
            )
        })?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    if !output.status.success() {
        return Err(format!(
            "`{} {}` failed with {}: {first}",
            probe.program,
            probe.args.join(" "),
            output.status
        ));
    }
    Ok(first.to_string())
}

/// A directory the build user can write: created (with its parents, 0755) when missing and
/// given to that user. An existing one is left as it is.
fn make_owned_dir(dir: &Path, user: Option<(u32, u32)>) -> std::io::Result<()> {
    if std::fs::symlink_metadata(dir).is_ok() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)?;
    if let Some((uid, gid)) = user {
        std::os::unix::fs::lchown(dir, Some(uid), Some(gid))?;
    }
    Ok(())
}
