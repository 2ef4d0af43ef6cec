//! Applying one configuration file's server keys to the host, in cfn-init's order: packages
//! (apt), groups, users, sources, files, commands, services. Each action is a line in
//! hooks.log; what changed is returned for the deployment's record. Files and sources land
//! under the agent's root prefix; packages, accounts and units are the host's own.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::Engine;
use super::hooks::{HookContext, run_command, run_program};
use super::steps::StepFailure;
use super::write_files::write_entry;
use crate::ebext::{Command, FileContent, FileEntry, FileKeys, Program};
use crate::supervise::APP_PATH;

/// What one file's keys did, for services' restart triggers.
#[derive(Default)]
pub(super) struct Changed {
    pub files: BTreeSet<String>,
    pub sources: BTreeSet<String>,
    pub packages: BTreeSet<String>,
    pub commands: BTreeSet<String>,
}

impl Engine {
    pub(super) async fn apply_server_keys(
        &self,
        id: u64,
        plan: &FileKeys,
        context: &HookContext,
    ) -> Result<Vec<String>, StepFailure> {
        let root = self.root_context(context);
        let file = plan.file.as_str();
        let mut record = Vec::new();
        let mut changed = Changed::default();
        self.install_packages(&root, plan, &mut record, &mut changed)
            .await?;
        self.create_accounts(&root, plan, context, &mut record)
            .await?;
        for (n, source) in plan.sources.iter().enumerate() {
            let at = format!("{file} sources.{}", source.target);
            let target = self.under_root(&source.target);
            let download = self
                .paths
                .downloads_dir()
                .join(format!("{id}-source-{n}.zip"));
            let bundle = self
                .fetch_to(&source.url, download.clone())
                .await
                .map_err(|f| StepFailure::new(format!("{at}: {}", f.message)))?;
            let super::fetch::LocalBundle::Zip { path, .. } = bundle else {
                return Err(StepFailure::new(format!("{at}: not an archive")));
            };
            let limits = self.config.bundle.limits();
            let into = target.clone();
            let extracted = tokio::task::spawn_blocking(move || -> Result<(), String> {
                if !is_zip(&path) {
                    return Err(
                        "not a zip archive (tar archives are not extracted by hostmanager: zip it)"
                            .to_string(),
                    );
                }
                // As for files: never through a link or a directory another user controls.
                if let Some(parent) = into.parent() {
                    super::write_files::make_trusted_dirs(parent).map_err(|e| e.to_string())?;
                }
                if std::fs::symlink_metadata(&into).is_ok() {
                    std::fs::remove_dir_all(&into)
                        .map_err(|e| format!("{}: {e}", into.display()))?;
                }
                super::extract_zip(&path, &into, limits).map_err(|e| e.to_string())
            })
            .await?;
            let _ = std::fs::remove_file(&download);
            extracted.map_err(|e| StepFailure::new(format!("{at}: {e}")))?;
            self.log_hook_line(
                context,
                &format!(
                    "{at}: {} extracted into {}",
                    crate::secret::shown_source(&source.url),
                    target.display()
                ),
            );
            record.push(format!(
                "source {} extracted into {} ({file})",
                crate::secret::shown_source(&source.url),
                source.target
            ));
            changed.sources.insert(source.target.clone());
        }
        for entry in &plan.files {
            let at = format!("{file} files.{}", entry.path);
            let content = match &entry.content {
                FileContent::Remote(url) => {
                    FileContent::Bytes(self.fetch_file(id, url, &at).await?)
                }
                other => other.clone(),
            };
            let target = self.under_root(&entry.path);
            let resolved = FileEntry {
                content,
                ..entry.clone()
            };
            let backup = tokio::task::spawn_blocking(move || write_entry(&target, &resolved))
                .await?
                .map_err(|e| StepFailure::new(format!("{at}: {e}")))?;
            let note = match backup {
                Some(bak) => format!("written (the previous one kept as {})", bak.display()),
                None => "written".to_string(),
            };
            self.log_hook_line(context, &format!("{at}: {note}"));
            record.push(format!("file {} {note} ({file})", entry.path));
            changed.files.insert(entry.path.clone());
        }
        for command in &plan.commands {
            let key = format!("commands.{}", command.name);
            if self
                .run_ebext_command(context, file, &key, command, true)
                .await?
            {
                changed.commands.insert(command.name.clone());
            }
        }
        for service in &plan.services {
            let at = format!("{file} services.{}", service.name);
            let systemctl = |verb: &str| -> Vec<String> {
                let mut args = Vec::new();
                if self.paths.root() != Path::new("/") {
                    args.push(format!("--root={}", self.paths.root().display()));
                }
                args.extend([verb.to_string(), service.name.clone()]);
                args
            };
            match service.enabled {
                Some(true) => {
                    run_program(
                        &root,
                        &at,
                        "systemctl",
                        &systemctl("enable"),
                        &BTreeMap::new(),
                        None,
                    )
                    .await?
                }
                Some(false) => {
                    run_program(
                        &root,
                        &at,
                        "systemctl",
                        &systemctl("disable"),
                        &BTreeMap::new(),
                        None,
                    )
                    .await?
                }
                None => {}
            }
            let triggered = service.files.iter().any(|f| changed.files.contains(f))
                || service.sources.iter().any(|s| changed.sources.contains(s))
                || service
                    .packages
                    .iter()
                    .any(|p| changed.packages.contains(p))
                || service
                    .commands
                    .iter()
                    .any(|c| changed.commands.contains(c));
            let verb = match (service.ensure_running, triggered) {
                (Some(true), true) => Some("restart"),
                (Some(true), false) => Some("start"),
                (Some(false), _) => Some("stop"),
                (None, true) => Some("try-restart"),
                (None, false) => None,
            };
            if let Some(verb) = verb {
                run_program(
                    &root,
                    &at,
                    "systemctl",
                    &systemctl(verb),
                    &BTreeMap::new(),
                    None,
                )
                .await?;
            }
            let what: Vec<&str> = [
                service
                    .enabled
                    .map(|e| if e { "enabled" } else { "disabled" }),
                verb,
            ]
            .into_iter()
            .flatten()
            .collect();
            if !what.is_empty() {
                record.push(format!(
                    "service {} {} ({file})",
                    service.name,
                    what.join(", ")
                ));
            }
        }
        Ok(record)
    }

    /// Runs one `commands` or `container_commands` entry; `Ok(false)` when its `test` said
    /// not to, or it failed with `ignoreErrors`.
    pub(super) async fn run_ebext_command(
        &self,
        context: &HookContext,
        file: &str,
        key: &str,
        command: &Command,
        leader: bool,
    ) -> Result<bool, StepFailure> {
        let name = format!("{file} {key}");
        let mut context = self.command_context(context, command, leader);
        if let Some(cwd) = &command.cwd {
            context.cwd = PathBuf::from(cwd);
        }
        if let Some(test) = &command.test
            && run_command(&context, &format!("{name} test"), test)
                .await
                .is_err()
        {
            self.log_hook_line(
                &context,
                &format!("{name}: test `{test}` did not pass: not run"),
            );
            return Ok(false);
        }
        let outcome = match &command.program {
            Program::Shell(line) => run_command(&context, &name, line).await,
            Program::Argv(argv) => {
                run_program(
                    &context,
                    &name,
                    &argv[0],
                    &argv[1..],
                    &BTreeMap::new(),
                    None,
                )
                .await
            }
        };
        match outcome {
            Ok(()) => Ok(true),
            Err(failure) if command.ignore_errors => {
                self.log_hook_line(
                    &context,
                    &format!(
                        "{name}: failed, ignored (ignoreErrors): {}",
                        failure.message
                    ),
                );
                Ok(false)
            }
            Err(failure) => Err(StepFailure {
                message: format!(
                    "{} (Elastic Beanstalk: EbExtension build failed)",
                    failure.message
                ),
                ..failure
            }),
        }
    }

    /// The environment of `.ebextensions` commands: not the app's properties (EB does not
    /// give them either; `get-config environment` does), `env` replacing everything when given.
    fn command_context(
        &self,
        context: &HookContext,
        command: &Command,
        leader: bool,
    ) -> HookContext {
        let keep = |key: &str| context.env.get(key).cloned().map(|v| (key.to_string(), v));
        let mut env: BTreeMap<String, String> = match &command.env {
            Some(env) => env.clone(),
            None => ["PATH", "HOME", "LANG"]
                .into_iter()
                .filter_map(keep)
                .collect(),
        };
        if command.env.is_none() {
            env.insert("EB_IS_COMMAND_LEADER".to_string(), leader.to_string());
        }
        // Crash recovery finds a command's orphans by these two.
        env.extend(
            ["HOSTMANAGER_DEPLOYMENT_ID", "HOSTMANAGER_ROOT"]
                .into_iter()
                .filter_map(keep),
        );
        HookContext {
            env: env.into(),
            ..context.clone()
        }
    }

    /// As root whatever `deploy.hook_user` is: what the agent itself runs for a server key.
    pub(super) fn root_context(&self, context: &HookContext) -> HookContext {
        let env = BTreeMap::from([
            ("PATH".to_string(), APP_PATH.to_string()),
            ("LANG".to_string(), "C.UTF-8".to_string()),
        ]);
        HookContext {
            cwd: PathBuf::from("/"),
            env: env.into(),
            user: None,
            ..context.clone()
        }
    }

    /// A `files` entry's `source`, fetched with the bundle's limits.
    async fn fetch_file(&self, id: u64, url: &str, at: &str) -> Result<Vec<u8>, StepFailure> {
        let download = self
            .paths
            .downloads_dir()
            .join(format!("{id}-file.download"));
        let fetched = self.fetch_to(url, download.clone()).await;
        let bytes = match fetched {
            Ok(super::fetch::LocalBundle::Zip { path, .. }) => {
                std::fs::read(path).map_err(StepFailure::from)
            }
            Ok(_) => Err(StepFailure::new("not a file")),
            Err(failure) => Err(failure),
        };
        let _ = std::fs::remove_file(&download);
        bytes.map_err(|f| StepFailure::new(format!("{at}: {}", f.message)))
    }

    fn under_root(&self, path: &str) -> PathBuf {
        self.paths.root().join(path.trim_start_matches('/'))
    }

    /// One line in hooks.log, as each hook's header is.
    pub(super) fn log_hook_line(&self, context: &HookContext, text: &str) {
        if let Ok(mut log) = super::hook_output::open_log(&context.log) {
            let _ = writeln!(
                log,
                "=== {} deployment {} {text}",
                jiff::Timestamp::now(),
                context.deployment
            );
        }
    }
}

fn is_zip(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && &magic == b"PK\x03\x04"
}
