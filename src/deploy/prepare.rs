//! Preparing a release before it may take traffic. Nothing here touches what serves:
//! a deployment fetches, verifies and extracts its bundle, then runs prebuild hooks, the
//! Buildfile and predeploy hooks in Elastic Beanstalk's order; a configuration deployment
//! copies the serving release (build artefacts included, unlike Elastic Beanstalk) and runs
//! the confighooks; a restart reuses the serving release as it is. The hook steps themselves
//! are in `hook_steps.rs`.

use std::path::Path;

use super::Engine;
use super::engine::{Prepared, Started, entries};
use super::extract::{copy_dir, extract_zip};
use super::fetch::{
    LocalBundle, Source, fetch_http, fetch_local, parse_source, verify, with_retries,
};
use super::model::*;
use super::procfile::ProcfileEntry;
use super::reach::{self, Identity};
use super::retention::remove_tree;
use super::runtime::{PlatformPlan, build_uid};
use super::steps::StepFailure;

impl Engine {
    pub(super) async fn prepare_deploy(
        &self,
        id: u64,
        request: &DeploymentRequest,
        started: &mut Started,
    ) -> Result<Option<Prepared>, StepFailure> {
        let label = self
            .record(id)
            .map(|r| r.version_label)
            .unwrap_or_else(|| default_label(&request.source, id));
        let bundle = self
            .step(id, "fetch", self.fetch(id, &request.source))
            .await?;
        if let LocalBundle::Zip { sha256, .. } = &bundle {
            self.step(id, "verify", async {
                Ok(verify(&request.source, request.sha256.as_deref(), sha256)?)
            })
            .await?;
        }
        let dir = self.paths.release_dir(id);
        started.release_dir = Some(dir.clone());
        started.platform = Some(self.paths.platform_copy(id));
        // Root's copy of `.platform` and the Buildfile is made now, while the release is root's.
        let (sha256, platform) = self
            .step(id, "extract", async {
                let sha256 = self.extract(&bundle, &dir).await?;
                Ok((sha256, self.copy_platform(id, &dir).await?))
            })
            .await?;
        if let LocalBundle::Dir { .. } = &bundle {
            self.step(id, "verify", async {
                Ok(verify(&request.source, request.sha256.as_deref(), &sha256)?)
            })
            .await?;
        }
        let fingerprint = fingerprint(&sha256, &request.env, &label, &request.platform_options);
        if self.current().is_some_and(|c| c.fingerprint == fingerprint) {
            return Ok(None);
        }
        // A step of its own when there is something to read (a worker's cron.yaml too).
        let to_read = [crate::ebext::DIR, crate::worker::cron::FILE]
            .iter()
            .find_map(|name| dir.join(name).symlink_metadata().ok());
        let extensions = match to_read {
            Some(_) => {
                self.step(
                    id,
                    "ebextensions",
                    self.read_extensions(id, &dir, &label, request),
                )
                .await?
            }
            None => self.read_extensions(id, &dir, &label, request).await?,
        };
        let request = &extensions.request_over(request);
        self.save_env(id, &extensions.env)?;
        let port = self.next_web_port(self.current().as_ref());
        let mut hooks = self.hook_context(id, &dir, &request.env, port, None)?;
        set_leader(&mut hooks, extensions.leader);
        self.apply_prebuild(id, &extensions, &hooks).await?;
        let facts = self.step(id, "procfile", self.bundle_facts(&dir)).await?;
        let (chosen, procfile) = self
            .step(id, "platform", async {
                let chosen = self
                    .choose_platform(id, &dir, facts, request, build_uid(&hooks))
                    .await?;
                let procfile = self.processes(&chosen)?;
                Ok((chosen, procfile))
            })
            .await?;
        started.venv = chosen.plan.venv.clone();
        self.run_hooks(id, &hooks, &platform, ".platform/hooks/prebuild")
            .await?;
        self.run_platform_build(id, &hooks, &chosen.plan).await?;
        // From the Buildfile on, hooks see the platform's environment (the venv's PATH).
        let mut hooks = self.hook_context(id, &dir, &request.env, port, Some(&chosen.runtime))?;
        set_leader(&mut hooks, extensions.leader);
        self.run_buildfile(id, &hooks, &platform).await?;
        self.run_container_commands(id, &extensions, &hooks).await?;
        self.run_hooks(id, &hooks, &platform, ".platform/hooks/predeploy")
            .await?;
        self.step(id, "permissions", self.hand_over(&dir)).await?;
        Ok(Some(Prepared {
            id,
            label,
            // What status and records show; the full URL was only needed to fetch.
            source: crate::secret::shown_source(&request.source),
            sha256,
            fingerprint,
            dir,
            procfile,
            env: request.env.clone(),
            hooks: Some(".platform/hooks"),
            platform: Some(platform),
            serial: self.record(id).and_then(|r| r.serial),
            runtime: Some(chosen.runtime),
            settings: Some(extensions.settings),
        }))
    }

    pub(super) async fn prepare_configure(
        &self,
        id: u64,
        change: &ConfigureRequest,
        current: Option<&ReleaseInfo>,
        started: &mut Started,
    ) -> Result<Option<Prepared>, StepFailure> {
        let current = current
            .ok_or_else(|| StepFailure::new("no release serves yet: deploy a bundle first"))?;
        let before = self.release_env(current.deployment_id)?;
        let env = change.apply(before.clone());
        self.save_env(id, &env)?;
        let settings = self.carry_settings(id, current, Some((&before, &env)))?;
        // The serving release's platform options stay with it: only the properties change.
        let options = current
            .runtime
            .as_ref()
            .map(|r| r.options.clone())
            .unwrap_or_default();
        let fingerprint = fingerprint(&current.sha256, &env, &current.version_label, &options);
        if fingerprint == current.fingerprint {
            return Ok(None);
        }
        let dir = self.paths.release_dir(id);
        started.release_dir = Some(dir.clone());
        started.platform = Some(self.paths.platform_copy(id));
        // The copy is root's (the app user cannot touch it while root's confighooks run in it)
        // and its `.platform` comes from root's copy, never from the app-writable release.
        let platform = self
            .step(id, "copy-release", async {
                copy_release(&current.dir, &dir).await?;
                self.carry_platform(id, current, &dir).await
            })
            .await?;
        let mut hooks = self.hook_context(
            id,
            &dir,
            &env,
            self.next_web_port(Some(current)),
            current.runtime.as_ref(),
        )?;
        if let Some(settings) = &settings {
            set_leader(&mut hooks, settings.command_leader);
        }
        self.run_hooks(id, &hooks, &platform, ".platform/confighooks/prebuild")
            .await?;
        self.run_hooks(id, &hooks, &platform, ".platform/confighooks/predeploy")
            .await?;
        self.step(id, "permissions", self.hand_over(&dir)).await?;
        Ok(Some(Prepared {
            id,
            label: current.version_label.clone(),
            source: current.source.clone(),
            sha256: current.sha256.clone(),
            fingerprint,
            dir,
            procfile: entries(current),
            env,
            hooks: Some(".platform/confighooks"),
            platform: Some(platform),
            // Local properties: the release no longer is what any desired state asked for.
            serial: None,
            runtime: current.runtime.clone(),
            settings,
        }))
    }

    pub(super) fn prepare_restart(
        &self,
        id: u64,
        current: Option<&ReleaseInfo>,
    ) -> Result<Option<Prepared>, StepFailure> {
        let current =
            current.ok_or_else(|| StepFailure::new("no release serves yet: nothing to restart"))?;
        // The environment serving now, which a configuration deployment may have changed since
        // the restart was queued.
        let env = self.release_env(current.deployment_id)?;
        self.save_env(id, &env)?;
        let settings = self.carry_settings(id, current, None)?;
        Ok(Some(Prepared {
            id,
            label: current.version_label.clone(),
            source: current.source.clone(),
            sha256: current.sha256.clone(),
            fingerprint: current.fingerprint.clone(),
            dir: current.dir.clone(),
            procfile: entries(current),
            env,
            hooks: None,
            platform: self.platform_of(id, current),
            serial: current.serial,
            runtime: current.runtime.clone(),
            settings,
        }))
    }

    /// The serving release's settings for job `id` (a configuration deployment's or a
    /// restart's), recorded beside it; with `(before, after)` the properties that changed are
    /// `hostmanager configure`'s.
    fn carry_settings(
        &self,
        id: u64,
        current: &ReleaseInfo,
        change: Option<(&crate::secret::Properties, &crate::secret::Properties)>,
    ) -> Result<Option<crate::ebext::ReleaseSettings>, StepFailure> {
        let Some(mut settings) = current.settings.clone() else {
            return Ok(None);
        };
        if let Some((before, after)) = change {
            settings
                .properties
                .retain(|name, _| after.contains_key(name));
            for (name, value) in after.iter() {
                if before.get(name) != Some(value) {
                    settings
                        .properties
                        .insert(name.clone(), "hostmanager configure".to_string());
                }
            }
        }
        crate::fsutil::write_json_atomic(&self.settings_file(id), &settings, 0o600)?;
        Ok(Some(settings))
    }

    async fn fetch(&self, id: u64, source: &str) -> Result<LocalBundle, StepFailure> {
        let download = self.paths.downloads_dir().join(format!("{id}.zip"));
        self.fetch_to(source, download).await
    }

    /// Fetches `source` (a path, https:// or s3:// URL) into `download`, with the bundle's
    /// size limit and retries; a directory stays where it is.
    pub(super) async fn fetch_to(
        &self,
        source: &str,
        download: std::path::PathBuf,
    ) -> Result<LocalBundle, StepFailure> {
        let max = self.config.bundle.max_download_bytes;
        let attempts = self.config.bundle.download_attempts;
        match parse_source(source)? {
            Source::Local(path) => {
                let source = source.to_string();
                Ok(
                    tokio::task::spawn_blocking(move || {
                        fetch_local(&source, &path, &download, max)
                    })
                    .await??,
                )
            }
            Source::Http(url) => {
                if url.starts_with("http://") {
                    self.events.warn(
                        "deploy",
                        format!(
                            "bundle {} is fetched over plain HTTP; use https:// and --sha256",
                            crate::secret::shown_source(&url)
                        ),
                    );
                }
                let client = self.http_client()?;
                Ok(with_retries(attempts, || fetch_http(&client, &url, &download, max)).await?)
            }
            Source::S3 {
                bucket,
                key,
                version,
            } => {
                let store = self.s3_store(&bucket).await?;
                let downloaded = with_retries(attempts, || async {
                    use crate::store::ObjectStore;
                    store
                        .get_to_file(&key, version.as_deref(), &download, max)
                        .await
                        .map_err(|error| {
                            let retryable = error.is_retryable();
                            super::fetch::FetchError::Remote {
                                bundle: source.to_string(),
                                message: error.to_string(),
                                retryable,
                            }
                        })
                })
                .await?;
                Ok(LocalBundle::Zip {
                    path: download,
                    sha256: downloaded.sha256,
                })
            }
        }
    }

    fn http_client(&self) -> Result<reqwest::Client, StepFailure> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .read_timeout(std::time::Duration::from_secs(60));
        if let Some(ca_file) = &self.config.bundle.ca_file {
            let pem = std::fs::read(ca_file).map_err(|e| {
                StepFailure::new(format!("bundle.ca_file {}: {e}", ca_file.display()))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                StepFailure::new(format!("bundle.ca_file {}: {e}", ca_file.display()))
            })?;
            builder = builder.tls_certs_merge(certs);
        }
        builder
            .build()
            .map_err(|e| StepFailure::new(format!("HTTPS client: {e}")))
    }

    async fn s3_store(&self, bucket: &str) -> Result<crate::store::S3Store, StepFailure> {
        let identity =
            crate::aws::resolve_identity(&self.config.environment, &self.config.aws).await;
        let sdk = crate::aws::sdk_config(&self.config.aws, identity.region).await?;
        Ok(crate::store::S3Store::new(
            crate::aws::s3_client(&sdk, &self.config.aws),
            bucket,
        ))
    }

    async fn extract(
        &self,
        bundle: &LocalBundle,
        release_dir: &Path,
    ) -> Result<String, StepFailure> {
        remove_tree(release_dir.to_path_buf()).await?;
        std::fs::create_dir_all(self.paths.releases_dir())?;
        crate::fsutil::replace_symlink(release_dir, &self.paths.staging_link())?;
        let limits = self.config.bundle.limits();
        let bundle = bundle.clone();
        let target = release_dir.to_path_buf();
        let outcome = tokio::task::spawn_blocking(move || match bundle {
            LocalBundle::Zip { path, sha256 } => {
                extract_zip(&path, &target, limits).map(|()| sha256)
            }
            LocalBundle::Dir { path } => copy_dir(&path, &target, limits),
        })
        .await?;
        Ok(outcome?)
    }

    /// The Procfile's processes, or the platform's default web process when there is none.
    fn processes(&self, chosen: &PlatformPlan) -> Result<Vec<ProcfileEntry>, StepFailure> {
        let entries = match (&chosen.facts.procfile, &chosen.plan.default_web) {
            (Some(procfile), _) => procfile.clone(),
            (None, Some(web)) => vec![ProcfileEntry {
                name: "web".to_string(),
                command: web.clone(),
                line: 0,
            }],
            (None, None) => {
                return Err(StepFailure::new(
                    "bundle has no readable Procfile at its root",
                ));
            }
        };
        if self.proxy.enabled() && !entries.iter().any(|e| e.name == "web") {
            return Err(StepFailure::new(
                "Procfile has no `web` process for nginx to proxy to",
            ));
        }
        Ok(entries)
    }

    /// The app user owns its release, as on Elastic Beanstalk (`webapp` owns /var/app/current),
    /// `.platform` included: root never reads it again (it uses its own copy, `platform.rs`).
    /// Fails naming the directory when the app user could not reach the release.
    async fn hand_over(&self, release_dir: &Path) -> Result<(), StepFailure> {
        let user = self.supervisor.user().clone();
        if !user.switch {
            return Ok(());
        }
        let dir = release_dir.to_path_buf();
        tokio::task::spawn_blocking(move || -> Result<(), StepFailure> {
            chown_tree(&dir, user.uid, user.gid).map_err(|error| {
                StepFailure::new(format!(
                    "giving {} to {}: {error}",
                    dir.display(),
                    user.name
                ))
            })?;
            let who = Identity {
                uid: user.uid,
                gid: user.gid,
                groups: user.groups.clone(),
            };
            let chain = reach::chain(&dir)
                .map_err(|error| StepFailure::new(format!("{}: {error}", dir.display())))?;
            match reach::first_unreachable(&chain, &who) {
                Some(blocked) => Err(StepFailure::new(reach::describe(
                    blocked, &user.name, &who, &dir,
                ))),
                None => Ok(()),
            }
        })
        .await??;
        Ok(())
    }
}

/// A configuration deployment gets its own copy of the serving release, build artefacts
/// included; copy-on-write where the filesystem supports it. No shell: fixed arguments.
///
/// The copy is root's, not the app user's: ownership is not preserved (nor ACLs or extended
/// attributes), so the app user cannot change it while root's confighooks run in it; links
/// are copied as links, never followed; modes go through the umask and lose setuid and setgid
/// (cp drops them when it does not preserve ownership). The permissions step then hands it over.
async fn copy_release(from: &Path, to: &Path) -> Result<(), StepFailure> {
    remove_tree(to.to_path_buf()).await?;
    let output = tokio::process::Command::new("cp")
        .args(["-R", "-P", "--preserve=timestamps,links", "--reflink=auto"])
        .arg(from)
        .arg(to)
        .output()
        .await?;
    if !output.status.success() {
        return Err(StepFailure::new(format!(
            "copying {} to {} failed: {}",
            from.display(),
            to.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(())
}

/// Children first, each directory last: the app user gets write access to a directory only
/// once everything under it is done, so it cannot swap an entry for a symlink while root is
/// still walking it. `lchown` and the entry's own type: no link is followed.
fn chown_tree(dir: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            chown_tree(&entry.path(), uid, gid)?;
        } else {
            std::os::unix::fs::lchown(entry.path(), Some(uid), Some(gid))?;
        }
    }
    std::os::unix::fs::lchown(dir, Some(uid), Some(gid))
}

/// `EB_IS_COMMAND_LEADER` for hooks: whether this host is the deployment's command leader.
fn set_leader(context: &mut super::hooks::HookContext, leader: bool) {
    context
        .env
        .insert("EB_IS_COMMAND_LEADER".to_string(), leader.to_string());
}
