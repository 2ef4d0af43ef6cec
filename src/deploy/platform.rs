//! Root's own copy of what root runs or loads from a release: `.platform` (hooks, confighooks,
//! nginx overrides and whatever else the bundle keeps there) and the `Buildfile`.
//!
//! The app user owns its release once it is handed over, so it can rename `.platform` away and
//! put its own in place. Root therefore never reads them from the release after extraction:
//! the copy is made while the release is still root's (right after extraction), lives in
//! `var/lib/hostmanager/platform/<deployment id>/` (root-owned, not writable by anyone else),
//! keeps the release's layout (`.platform/...`, `Buildfile`) and is what every later use
//! reads: the deployment's own hooks and Buildfile, configuration deployments (whose copy is
//! carried over from the serving release's copy), restarts, rollbacks and crash recovery.
//! A symlink under `.platform` (or a `.platform` or `Buildfile` that is one) is refused: root
//! never follows a link inside a release.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::Engine;
use super::steps::StepFailure;
use crate::events::{NewEvent, Severity};

pub(super) const PLATFORM: &str = ".platform";
pub(super) const BUILDFILE: &str = "Buildfile";
/// The part of the copy `.platform/nginx` overrides are staged from.
pub(super) const NGINX_OVERRIDES: &str = ".platform/nginx";

#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error(
        "bundle rejected: {0} is a symbolic link; root runs and loads what is under .platform (and the Buildfile) and never follows a link inside a release: put the file itself there"
    )]
    Symlink(String),
    #[error("bundle rejected: {0} is neither a regular file nor a directory")]
    NotRegular(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> PlatformError + '_ {
    move |source| PlatformError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Copies `release`'s `.platform` and `Buildfile` (when present) into `copy`, which is
/// replaced. Only regular files and directories; file modes keep their execute bits, never
/// setuid, setgid, sticky or group/other write.
pub fn snapshot(release: &Path, copy: &Path) -> Result<(), PlatformError> {
    fresh_dir(copy)?;
    let platform = release.join(PLATFORM);
    match fs::symlink_metadata(&platform) {
        Ok(meta) if meta.is_dir() => copy_tree(&platform, &copy.join(PLATFORM), PLATFORM)?,
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(PlatformError::Symlink(PLATFORM.into()));
        }
        Ok(_) => return Err(PlatformError::NotRegular(PLATFORM.into())),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(io_at(&platform)(error)),
    }
    let buildfile = release.join(BUILDFILE);
    match fs::symlink_metadata(&buildfile) {
        Ok(meta) if meta.is_file() => copy_file(&buildfile, &copy.join(BUILDFILE), &meta)?,
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(PlatformError::Symlink(BUILDFILE.into()));
        }
        Ok(_) => return Err(PlatformError::NotRegular(BUILDFILE.into())),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(io_at(&buildfile)(error)),
    }
    Ok(())
}

/// Copies one root copy to another (a configuration deployment's, from the serving release's).
pub fn carry_over(from: &Path, to: &Path) -> Result<(), PlatformError> {
    snapshot(from, to)
}

/// Replaces `release`'s own `.platform` with the one in `copy`, so that the files a
/// configuration deployment's release shows are those root will run, not what the app user
/// may have put in the release it was copied from.
pub fn restore_into_release(copy: &Path, release: &Path) -> Result<(), PlatformError> {
    let target = release.join(PLATFORM);
    match fs::symlink_metadata(&target) {
        // remove_dir_all does not follow symlinks; a file or link is simply unlinked.
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(&target).map_err(io_at(&target))?,
        Ok(_) => fs::remove_file(&target).map_err(io_at(&target))?,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(io_at(&target)(error)),
    }
    let source = copy.join(PLATFORM);
    if source.is_dir() {
        copy_tree(&source, &target, PLATFORM)?;
    }
    Ok(())
}

fn fresh_dir(dir: &Path) -> Result<(), PlatformError> {
    if fs::symlink_metadata(dir).is_ok() {
        fs::remove_dir_all(dir).map_err(io_at(dir))?;
    }
    if let Some(parent) = dir.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(io_at(parent))?;
    }
    make_dir(dir)
}

fn make_dir(dir: &Path) -> Result<(), PlatformError> {
    fs::DirBuilder::new()
        .mode(0o755)
        .create(dir)
        .map_err(io_at(dir))?;
    // Exactly 0755 whatever the umask: hooks may run as `deploy.hook_user`, who must read them.
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).map_err(io_at(dir))
}

/// `label` is the path relative to the release, for messages.
fn copy_tree(from: &Path, to: &Path, label: &str) -> Result<(), PlatformError> {
    make_dir(to)?;
    let mut entries: Vec<fs::DirEntry> = fs::read_dir(from)
        .map_err(io_at(from))?
        .collect::<Result<_, _>>()
        .map_err(io_at(from))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let path = entry.path();
        let child = format!("{label}/{}", name.to_string_lossy());
        // lstat: the type of the entry itself, never of what a link points to.
        let meta = fs::symlink_metadata(&path).map_err(io_at(&path))?;
        let kind = meta.file_type();
        if kind.is_symlink() {
            return Err(PlatformError::Symlink(child));
        } else if kind.is_dir() {
            copy_tree(&path, &to.join(&name), &child)?;
        } else if kind.is_file() {
            copy_file(&path, &to.join(&name), &meta)?;
        } else {
            return Err(PlatformError::NotRegular(child));
        }
    }
    Ok(())
}

fn copy_file(from: &Path, to: &Path, meta: &fs::Metadata) -> Result<(), PlatformError> {
    let mode = meta.permissions().mode() & 0o755;
    crate::fsutil::copy_regular_nofollow(from, to, mode).map_err(io_at(from))
}

impl Engine {
    /// Makes deployment `id`'s root copy from its freshly extracted (still root-owned) release.
    pub(super) async fn copy_platform(
        &self,
        id: u64,
        release: &Path,
    ) -> Result<PathBuf, StepFailure> {
        let copy = self.paths.platform_copy(id);
        let (from, to) = (release.to_path_buf(), copy.clone());
        tokio::task::spawn_blocking(move || snapshot(&from, &to)).await??;
        Ok(copy)
    }

    /// A configuration deployment's root copy: the serving release's copy carried over, and put
    /// back into the new release in place of whatever `.platform` the copied tree holds.
    pub(super) async fn carry_platform(
        &self,
        id: u64,
        serving: &super::model::ReleaseInfo,
        release: &Path,
    ) -> Result<PathBuf, StepFailure> {
        let copy = self.paths.platform_copy(id);
        let to = copy.clone();
        let release = release.to_path_buf();
        match self.platform_of(id, serving) {
            Some(from) => {
                tokio::task::spawn_blocking(move || {
                    carry_over(&from, &to)?;
                    restore_into_release(&to, &release)
                })
                .await??
            }
            // An earlier agent's release: nothing root may trust, so no hooks from now on.
            None => tokio::task::spawn_blocking(move || fresh_dir(&to)).await??,
        }
        Ok(copy)
    }

    /// The root copy of `release`'s `.platform`; `None`, with a warning event, for a release
    /// deployed by an agent version that made none (its hooks and nginx overrides are then
    /// not used: the app user could have replaced them).
    pub(super) fn platform_of(
        &self,
        id: u64,
        release: &super::model::ReleaseInfo,
    ) -> Option<PathBuf> {
        if release.platform.is_none() {
            self.events.emit(
                NewEvent::new(
                    Severity::Warning,
                    "deploy",
                    format!(
                        "release {} (deployment {}) has no root-owned copy of its .platform (it was deployed by an earlier agent version): its hooks and .platform/nginx overrides are not used; deploy its bundle again to use them",
                        release.version_label, release.deployment_id
                    ),
                )
                .deployment(id),
            );
        }
        release.platform.clone()
    }

    /// Deletes the root copies no kept release, running or queued deployment refers to.
    pub(super) fn prune_platform_copies(&self, in_progress: u64) {
        let keep = self.per_deployment_in_use(
            in_progress,
            |release| release.platform.clone(),
            |id| self.paths.platform_copy(id),
        );
        for path in super::retention::numbered_entries(&self.paths.platform_copies_dir()) {
            if !keep.contains(&path) {
                let _ = fs::remove_dir_all(&path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, symlink};

    fn write(path: &Path, content: &str, mode: u32) {
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, content).expect("write");
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[test]
    fn the_copy_holds_platform_and_buildfile_with_safe_modes() {
        let release = tempfile::tempdir().expect("tempdir");
        let copies = tempfile::tempdir().expect("tempdir");
        write(
            &release.path().join(".platform/hooks/prebuild/01.sh"),
            "#!/bin/sh\n",
            0o4777,
        );
        write(
            &release.path().join(".platform/nginx/conf.d/a.conf"),
            "x;",
            0o644,
        );
        write(&release.path().join("Buildfile"), "a: true\n", 0o644);
        write(&release.path().join("application.py"), "app", 0o644);
        let copy = copies.path().join("7");
        snapshot(release.path(), &copy).expect("snapshot");
        let hook = fs::metadata(copy.join(".platform/hooks/prebuild/01.sh")).expect("hook");
        assert_eq!(hook.mode() & 0o7777, 0o755);
        assert_eq!(
            fs::read_to_string(copy.join(".platform/nginx/conf.d/a.conf")).expect("conf"),
            "x;"
        );
        assert_eq!(
            fs::read_to_string(copy.join("Buildfile")).expect("Buildfile"),
            "a: true\n"
        );
        assert!(!copy.join("application.py").exists(), "only what root uses");
        assert_eq!(
            fs::metadata(copy.join(".platform/hooks"))
                .expect("dir")
                .mode()
                & 0o7777,
            0o755
        );
    }

    #[test]
    fn symlinks_are_refused_by_name_wherever_they_are() {
        for (link, target) in [
            (".platform/hooks/prebuild/01.sh", "../../../hook.sh"),
            (".platform/nginx", "../nginx"),
            (".platform", "elsewhere"),
            ("Buildfile", "app/Buildfile"),
        ] {
            let release = tempfile::tempdir().expect("tempdir");
            let copies = tempfile::tempdir().expect("tempdir");
            write(&release.path().join(".platform/hooks/keep"), "", 0o644);
            let path = release.path().join(link);
            if fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                fs::remove_dir_all(&path).expect("rm");
            }
            fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            symlink(target, &path).expect("symlink");
            let error = snapshot(release.path(), &copies.path().join("1"))
                .expect_err("a symlink is refused");
            assert!(
                matches!(&error, PlatformError::Symlink(name) if name == link),
                "{link}: {error}"
            );
        }
    }

    #[test]
    fn a_release_without_platform_gets_an_empty_copy() {
        let release = tempfile::tempdir().expect("tempdir");
        let copies = tempfile::tempdir().expect("tempdir");
        let copy = copies.path().join("3");
        snapshot(release.path(), &copy).expect("snapshot");
        assert_eq!(fs::read_dir(&copy).expect("dir").count(), 0);
    }

    #[test]
    fn the_release_gets_roots_platform_back_whatever_it_had() {
        let copy = tempfile::tempdir().expect("tempdir");
        let release = tempfile::tempdir().expect("tempdir");
        write(&copy.path().join(".platform/hooks/a.sh"), "root's", 0o755);
        write(
            &release.path().join(".platform/hooks/b.sh"),
            "planted",
            0o755,
        );
        restore_into_release(copy.path(), release.path()).expect("restore");
        assert_eq!(
            fs::read_to_string(release.path().join(".platform/hooks/a.sh")).expect("a"),
            "root's"
        );
        assert!(!release.path().join(".platform/hooks/b.sh").exists());
        // A link planted in place of `.platform` is removed, not followed.
        let elsewhere = tempfile::tempdir().expect("tempdir");
        write(&elsewhere.path().join("keep"), "keep", 0o644);
        fs::remove_dir_all(release.path().join(".platform")).expect("rm");
        symlink(elsewhere.path(), release.path().join(".platform")).expect("symlink");
        restore_into_release(copy.path(), release.path()).expect("restore");
        assert!(elsewhere.path().join("keep").exists());
        assert!(
            fs::symlink_metadata(release.path().join(".platform"))
                .expect("meta")
                .is_dir()
        );
    }
}
