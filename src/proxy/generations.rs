//! Generation directories: each rendered config lives in `nginx/generations/gNNNNNN/` beside a
//! small metadata file; `nginx/active` is a symlink to the one being served. Keeping the
//! previous generations on disk is what makes "keep the last good config" and rollback cheap.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ProxyError;
use super::nginx::NginxRunner;
use super::render::RenderedFile;
use crate::fsutil;
use crate::paths::Paths;

const META_FILE: &str = "hostmanager.json";
const KEEP_EXTRA: usize = 3;

/// A config that passed `nginx -t`, ready to activate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedConfig {
    pub generation: String,
    pub dir: PathBuf,
    pub upstream_port: u16,
}

#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    upstream_port: u16,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ProxyError + '_ {
    move |source| ProxyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates what nginx needs under the prefix and the log directories it writes to.
pub fn prepare_dirs(paths: &Paths, runner: &NginxRunner) -> Result<(), ProxyError> {
    for dir in [
        runner.dir().join("run"),
        runner.temp_dir(),
        runner.html_dir(),
        runner.generations_dir(),
        paths.nginx_log_dir(),
        paths.healthd_log_dir(),
    ] {
        fs::create_dir_all(&dir).map_err(io_error(&dir))?;
    }
    // The healthd log name changes every hour, so the WORKERS open it, not the master: when the
    // agent is root the workers run as nginx's default unprivileged user and need write access.
    if nix::unistd::geteuid().is_root() {
        let healthd = paths.healthd_log_dir();
        if let Ok(Some(worker)) = nix::unistd::User::from_name("nobody") {
            nix::unistd::chown(&healthd, Some(worker.uid), Some(worker.gid)).map_err(|errno| {
                ProxyError::Io {
                    path: healthd.clone(),
                    source: errno.into(),
                }
            })?;
        }
    }
    Ok(())
}

/// Writes a new generation: our rendered files, then the app's overrides on top.
pub fn write(
    runner: &NginxRunner,
    files: &[RenderedFile],
    upstream_port: u16,
    overrides: Option<&Path>,
) -> Result<StagedConfig, ProxyError> {
    let generations = runner.generations_dir();
    let number = list(&generations).last().map_or(1, |(n, _)| n + 1);
    let generation = format!("g{number:06}");
    let dir = generations.join(&generation);
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(io_error(&dir))?;
    }
    for file in files {
        let path = dir.join(file.path);
        fsutil::write_atomic(&path, file.content.as_bytes(), 0o644).map_err(io_error(&path))?;
    }
    if let Some(overrides) = overrides {
        copy_overrides(overrides, &dir)?;
    }
    let meta = dir.join(META_FILE);
    fsutil::write_json_atomic(&meta, &Meta { upstream_port }, 0o644).map_err(io_error(&meta))?;
    Ok(StagedConfig {
        generation,
        dir,
        upstream_port,
    })
}

/// `.platform/nginx/nginx.conf` replaces ours; `.platform/nginx/conf.d/**/*.conf` are added or
/// replace ours of the same name. nginx's master is root and `nginx -t` parses what is copied,
/// so nothing here follows a symlink: each entry is judged by its own type and opened with
/// `O_NOFOLLOW` (the deployment engine passes root's own copy of `.platform/nginx`).
fn copy_overrides(source: &Path, dir: &Path) -> Result<(), ProxyError> {
    let is_dir = |path: &Path| fs::symlink_metadata(path).is_ok_and(|m| m.is_dir());
    if !is_dir(source) {
        return Ok(());
    }
    let main = source.join("nginx.conf");
    if fs::symlink_metadata(&main).is_ok_and(|m| m.is_file()) {
        let target = dir.join("nginx.conf");
        fsutil::copy_regular_nofollow(&main, &target, 0o644).map_err(io_error(&main))?;
    }
    for sub in ["conf.d", "conf.d/elasticbeanstalk"] {
        let from = source.join(sub);
        if !is_dir(&from) {
            continue;
        }
        let Ok(entries) = fs::read_dir(&from) else {
            continue;
        };
        let to = dir.join(sub);
        fs::create_dir_all(&to).map_err(io_error(&to))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let regular = entry.file_type().is_ok_and(|t| t.is_file());
            if regular && path.extension().is_some_and(|ext| ext == "conf") {
                fsutil::copy_regular_nofollow(&path, &to.join(entry.file_name()), 0o644)
                    .map_err(io_error(&path))?;
            }
        }
    }
    Ok(())
}

pub fn discard(staged: &StagedConfig) {
    let _ = fs::remove_dir_all(&staged.dir);
}

pub fn point_active(runner: &NginxRunner, staged: &StagedConfig) -> Result<(), ProxyError> {
    let link = runner.active_link();
    fsutil::replace_symlink(&staged.dir, &link).map_err(io_error(&link))
}

/// The generation `active` points at, if any.
pub fn read_active(runner: &NginxRunner) -> Option<StagedConfig> {
    let dir = fs::read_link(runner.active_link()).ok()?;
    let meta: Meta = fsutil::read_json(&dir.join(META_FILE)).ok()??;
    let generation = dir.file_name()?.to_string_lossy().into_owned();
    Some(StagedConfig {
        generation,
        dir,
        upstream_port: meta.upstream_port,
    })
}

/// Deletes old generations, keeping the active one, the previous one and a few recent others.
pub fn prune(runner: &NginxRunner, active: &StagedConfig, previous: Option<&StagedConfig>) {
    let all = list(&runner.generations_dir());
    let keep_from = all.len().saturating_sub(KEEP_EXTRA + 2);
    for (_, dir) in &all[..keep_from] {
        let protected = *dir == active.dir || previous.is_some_and(|p| p.dir == *dir);
        if !protected {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

fn list(generations: &Path) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = fs::read_dir(generations) else {
        return Vec::new();
    };
    let mut found: Vec<(u64, PathBuf)> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let number = name.to_str()?.strip_prefix('g')?.parse().ok()?;
            Some((number, entry.path()))
        })
        .collect();
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn overrides_are_copied_without_following_any_symlink() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = dir.path().join("outside");
        fs::create_dir_all(outside.join("conf.d")).expect("mkdir");
        fs::write(outside.join("nginx.conf"), "load_module planted.so;").expect("write");
        fs::write(outside.join("conf.d/planted.conf"), "planted;").expect("write");
        let source = dir.path().join("nginx");
        fs::create_dir_all(source.join("conf.d")).expect("mkdir");
        fs::write(source.join("conf.d/real.conf"), "real;").expect("write");
        symlink(outside.join("nginx.conf"), source.join("nginx.conf")).expect("symlink");
        symlink(
            outside.join("conf.d/planted.conf"),
            source.join("conf.d/link.conf"),
        )
        .expect("symlink");
        symlink(
            outside.join("conf.d"),
            source.join("conf.d/elasticbeanstalk"),
        )
        .expect("symlink");
        let generation = dir.path().join("g1");
        fs::create_dir_all(&generation).expect("mkdir");
        copy_overrides(&source, &generation).expect("copy");
        assert_eq!(
            fs::read_to_string(generation.join("conf.d/real.conf")).expect("real"),
            "real;"
        );
        for skipped in [
            "nginx.conf",
            "conf.d/link.conf",
            "conf.d/elasticbeanstalk/planted.conf",
        ] {
            assert!(!generation.join(skipped).exists(), "{skipped} was followed");
        }
        // A linked overrides directory is not entered at all.
        let linked = dir.path().join("linked");
        symlink(&outside, &linked).expect("symlink");
        let other = dir.path().join("g2");
        fs::create_dir_all(&other).expect("mkdir");
        copy_overrides(&linked, &other).expect("copy");
        assert!(!other.join("nginx.conf").exists());
    }
}
