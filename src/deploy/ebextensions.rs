//! The deployment's `.ebextensions` steps (the pure rules are in `crate::ebext`):
//! `ebextensions` reads the files right after extraction, while the release is still root's,
//! and computes the release's settings; `ebextensions-prebuild` applies each file's server
//! keys before the prebuild hooks (`host_changes.rs`); `container-commands` runs after the
//! build and before the predeploy hooks, then `.ebextensions` leaves the release, as on
//! Elastic Beanstalk. Nothing is read from the release again after the first step.

use std::collections::BTreeMap;
use std::path::Path;

use super::Engine;
use super::hooks::HookContext;
use super::model::DeploymentRequest;
use super::steps::StepFailure;
use crate::ebext::{self, FileKeys, OptionSetting, Parsed, ReleaseSettings, Resolver};
use crate::events::{NewEvent, Severity};

/// What the bundle's configuration files ask for.
#[derive(Debug, Default)]
pub(super) struct Extensions {
    /// One plan per file that was read, in order.
    pub plans: Vec<FileKeys>,
    pub settings: ReleaseSettings,
    /// Properties: the bundle's under the request's.
    pub env: BTreeMap<String, String>,
    /// Platform options: the bundle's under the request's.
    pub platform_options: BTreeMap<String, String>,
    pub leader: bool,
    /// The release has a `.ebextensions` to remove.
    pub present: bool,
}

impl Extensions {
    /// The request with the bundle's properties and platform options under its own.
    pub fn request_over(&self, request: &DeploymentRequest) -> DeploymentRequest {
        DeploymentRequest {
            env: self.env.clone().into(),
            platform_options: self.platform_options.clone(),
            ..request.clone()
        }
    }
}

impl Engine {
    /// Step `ebextensions`: reads and checks every configuration file (every problem at once)
    /// and computes the settings; records them beside the deployment.
    pub(super) async fn read_extensions(
        &self,
        id: u64,
        dir: &Path,
        label: &str,
        request: &DeploymentRequest,
    ) -> Result<Extensions, StepFailure> {
        let release = dir.to_path_buf();
        let ((texts, mut warnings, present), cron_text) = tokio::task::spawn_blocking(move || {
            Ok::<_, StepFailure>((read_config_files(&release)?, read_cron_file(&release)?))
        })
        .await??;
        let mut resolver = Resolver::new(
            &self.config.environment.name,
            &self.config.environment.id,
            self.config.aws.region.as_deref(),
        );
        resolver.options = request.platform_options.clone();
        let mut problems = Vec::new();
        let mut plans = Vec::new();
        let mut bundle_settings: Vec<OptionSetting> = Vec::new();
        for (name, text) in &texts {
            let file = match ebext::parse_config(name, text, label, &mut warnings) {
                Ok(Parsed::File(file)) => file,
                Ok(Parsed::Skipped(warning)) => {
                    warnings.push(warning);
                    continue;
                }
                Err(problem) => {
                    problems.push(problem);
                    continue;
                }
            };
            if let Some(value) = file.keys.get("option_settings") {
                let (settings, found) = ebext::option_settings(name, value, &resolver);
                for s in &settings {
                    resolver.options.entry(s.key()).or_insert(s.value.clone());
                }
                bundle_settings.extend(settings);
                problems.extend(found);
            }
            match ebext::server_keys(&file, &resolver) {
                Ok(plan) => plans.push(plan),
                Err(found) => problems.extend(found),
            }
            let cloudformation: Vec<&str> = [
                "Resources",
                "Parameters",
                "Outputs",
                "Mappings",
                "Conditions",
            ]
            .into_iter()
            .filter(|k| file.keys.contains_key(*k))
            .collect();
            if !cloudformation.is_empty() {
                warnings.push(format!(
                    "{name}: CloudFormation sections are not applied on a host: {} skipped",
                    cloudformation.join(", ")
                ));
            }
        }
        let facts = ebext::HostFacts {
            proxy_enabled: self.config.proxy.enabled,
            publishing: self.config.logs.publish.enabled
                && self.config.logs.publish.destination.is_some(),
            controller: self.config.controller.url.is_some(),
            worker: self.config.worker.sqsd.is_some(),
        };
        let effects = ebext::effects(&bundle_settings, facts);
        problems.extend(effects.problems);
        warnings.extend(effects.warnings);
        for warning in &warnings {
            self.warn_deployment(id, warning.clone());
        }
        for note in &effects.notes {
            self.events
                .emit(NewEvent::new(Severity::Info, "deploy", note.clone()).deployment(id));
            self.deploy_log(id, note);
        }
        if !problems.is_empty() {
            return Err(StepFailure::new(problems.join("; ")));
        }
        let origin = self.request_origin(id);
        let mut settings = ebext::host_layer(&self.config);
        settings.apply_bundle(&bundle_settings);
        for (key, value) in &request.platform_options {
            settings.set(key.clone(), value.clone(), origin);
        }
        let mut env = BTreeMap::new();
        let mut platform_options = BTreeMap::new();
        for s in &bundle_settings {
            if s.namespace == ebext::ENVIRONMENT {
                env.insert(s.option.clone(), s.value.clone());
            } else if let Some(key) = platform_key(s) {
                platform_options.insert(key, s.value.clone());
            }
        }
        for (name, value) in request.env.iter() {
            env.insert(name.clone(), value.clone());
            settings.properties.insert(name.clone(), origin.to_string());
        }
        platform_options.extend(request.platform_options.clone());
        let leader = request
            .command_leader
            .unwrap_or(self.config.controller.url.is_none());
        settings.command_leader = leader;
        let (tasks, found) =
            crate::worker::check_release(&self.config, &settings, cron_text.as_deref())
                .map_err(|problems| StepFailure::new(problems.join("; ")))?;
        for warning in found {
            self.warn_deployment(id, warning);
        }
        settings.periodic_tasks = tasks;
        crate::fsutil::write_json_atomic(&self.settings_file(id), &settings, 0o600)?;
        Ok(Extensions {
            plans,
            settings,
            env,
            platform_options,
            leader,
            present,
        })
    }

    /// Who set the request's layer: a controller (its desired state has a serial) or the CLI.
    pub(super) fn request_origin(&self, id: u64) -> &'static str {
        match self.record(id).and_then(|r| r.serial) {
            Some(_) => "controller",
            None => "deployment request",
        }
    }

    /// Step `ebextensions-prebuild`: each file's server keys, file by file; skipped when no
    /// file has any.
    pub(super) async fn apply_prebuild(
        &self,
        id: u64,
        extensions: &Extensions,
        context: &HookContext,
    ) -> Result<(), StepFailure> {
        let has_work = extensions.plans.iter().any(|p| {
            !(p.packages.is_empty()
                && p.groups.is_empty()
                && p.users.is_empty()
                && p.sources.is_empty()
                && p.files.is_empty()
                && p.commands.is_empty()
                && p.services.is_empty())
        });
        if !has_work {
            return Ok(());
        }
        self.step(id, "ebextensions-prebuild", async {
            for plan in &extensions.plans {
                let changes = self.apply_server_keys(id, plan, context).await?;
                if !changes.is_empty() {
                    self.update_record(id, |r| r.host_changes.extend(changes.clone()));
                }
            }
            Ok(())
        })
        .await
    }

    /// Step `container-commands`: every file's container commands in the release (leader-only
    /// ones only on the leader), then `.ebextensions` removed from the release.
    pub(super) async fn run_container_commands(
        &self,
        id: u64,
        extensions: &Extensions,
        context: &HookContext,
    ) -> Result<(), StepFailure> {
        if !extensions.present {
            return Ok(());
        }
        self.step(id, "container-commands", async {
            for plan in &extensions.plans {
                for command in &plan.container_commands {
                    if command.leader_only && !extensions.leader {
                        self.log_hook_line(context, &format!(
                            "{} container_commands.{}: leader-only, and this host is not the command leader: skipped",
                            plan.file, command.name
                        ));
                        continue;
                    }
                    let key = format!("container_commands.{}", command.name);
                    self.run_ebext_command(context, &plan.file, &key, command, extensions.leader)
                        .await?;
                }
            }
            let dir = context.cwd.join(ebext::DIR);
            super::retention::remove_tree(dir).await?;
            self.log_hook_line(
                context,
                "Cleaned ebextensions subdirectories from app staging directory.",
            );
            Ok(())
        })
        .await
    }
}

/// The option's key in the platform options `config::with_options` reads, if it is one.
fn platform_key(setting: &OptionSetting) -> Option<String> {
    use hostmanager_protocol::{PLATFORM_NAMESPACES, STATIC_FILES};
    if setting.namespace == "aws:elasticbeanstalk:container:python:staticfiles" {
        return Some(format!("{STATIC_FILES}:{}", setting.option));
    }
    PLATFORM_NAMESPACES
        .contains(&setting.namespace.as_str())
        .then(|| setting.key())
}

/// The configuration files of a release: (name, text) in order, warnings about what is left
/// out, and whether there is a `.ebextensions` at all.
type ConfigTexts = (Vec<(String, String)>, Vec<String>, bool);

/// The release's `cron.yaml` (a worker's periodic tasks), if it has one. Never follows a link.
fn read_cron_file(release: &Path) -> Result<Option<String>, StepFailure> {
    let path = release.join(crate::worker::cron::FILE);
    if std::fs::symlink_metadata(&path).is_err() {
        return Ok(None);
    }
    let shown = crate::worker::cron::FILE;
    let bytes = crate::fsutil::read_regular_nofollow(&path, ebext::MAX_CONFIG_BYTES as u64)
        .map_err(|e| StepFailure::new(format!("{shown}: {e}")))?;
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| StepFailure::new(format!("{shown} is not UTF-8 text")))
}

/// Reads the configuration files of the release. Never follows a link.
fn read_config_files(release: &Path) -> Result<ConfigTexts, StepFailure> {
    let mut warnings = Vec::new();
    if std::fs::symlink_metadata(release.join("__MACOSX")).is_ok() {
        warnings.push("__MACOSX/ ignored: macOS resource forks, not part of the application (Elastic Beanstalk fails on the ones under .ebextensions; zip without them)".to_string());
    }
    let dir = release.join(ebext::DIR);
    match std::fs::symlink_metadata(&dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(StepFailure::new(format!(
                "bundle rejected: {} is not a directory (root reads it and never follows a link inside a release)",
                ebext::DIR
            )));
        }
        Err(_) => return Ok((Vec::new(), warnings, false)),
    }
    let mut entries = Vec::new();
    for entry in
        std::fs::read_dir(&dir).map_err(|e| StepFailure::new(format!("{}: {e}", dir.display())))?
    {
        let entry = entry?;
        let regular = entry.file_type().is_ok_and(|t| t.is_file());
        entries.push((entry.file_name().to_string_lossy().to_string(), regular));
    }
    let (names, found) = ebext::config_file_names(&entries);
    warnings.extend(found);
    let mut texts = Vec::new();
    for name in names {
        let path = dir.join(&name);
        let shown = format!("{}/{name}", ebext::DIR);
        let bytes = crate::fsutil::read_regular_nofollow(&path, ebext::MAX_CONFIG_BYTES as u64)
            .map_err(|e| StepFailure::new(format!("{shown}: {e}")))?;
        let text = String::from_utf8(bytes).map_err(|_| {
            StepFailure::new(format!(
                "The configuration file {shown} is not UTF-8 text. Update the configuration file."
            ))
        })?;
        texts.push((shown, text));
    }
    Ok((texts, warnings, true))
}
