//! Generation directories: each rendered config lives in `nginx/generations/gNNNNNN/` beside a
//! small metadata file; `nginx/active` is a symlink to the one being served. Keeping the
//! previous generations on disk is what makes "keep the last good config" and rollback cheap.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ProxyError;
use super::nginx::NginxRunner;
use super::overrides::{self, ConfFile, Host, ProxyTarget, Refusal, Translation};
use super::render::RenderedFile;
use super::switch::{RuntimeSwitch, conf as switch_conf};
use crate::fsutil;
use crate::paths::Paths;

const META_FILE: &str = "hostmanager.json";
const KEEP_EXTRA: usize = 3;
/// nginx's worker user when its master is root: Debian's nginx is built without `--user`,
/// so its default, `nobody`, applies (the agent's config names no `user`).
pub const WORKER_USER: &str = "nobody";

/// A config that passed `nginx -t`, ready to activate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedConfig {
    pub generation: String,
    pub dir: PathBuf,
    pub upstream_port: u16,
    /// What the bundle's overrides were changed into (`overrides.rs`).
    #[serde(default)]
    pub translations: Vec<Translation>,
    /// Loopback addresses the overrides proxy to that are not the app.
    #[serde(default)]
    pub targets: Vec<ProxyTarget>,
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The bundle's files in this generation (relative paths).
    #[serde(default)]
    pub overrides: Vec<String>,
    /// The sha256 of every file nginx reads: two generations with the same digest are the
    /// same config, and switching between them needs no reload.
    #[serde(default)]
    pub digest: String,
    /// The app's port is picked by the runtime switch, not written in the config.
    #[serde(default)]
    pub runtime_switch: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    upstream_port: u16,
    #[serde(default)]
    translations: Vec<Translation>,
    #[serde(default)]
    targets: Vec<ProxyTarget>,
    #[serde(default)]
    warnings: Vec<String>,
    #[serde(default)]
    overrides: Vec<String>,
    #[serde(default)]
    digest: String,
    #[serde(default)]
    runtime_switch: bool,
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
    // The switch socket lives in run/: whoever can connect to it decides where nginx sends
    // the traffic. nginx's workers need nothing there (they accept on inherited sockets).
    let run = runner.dir().join("run");
    fs::set_permissions(&run, fs::Permissions::from_mode(0o700)).map_err(io_error(&run))?;
    let lua = runner.lua_dir();
    fs::create_dir_all(&lua).map_err(io_error(&lua))?;
    // The healthd log name changes every hour, so the WORKERS open it, not the master: when the
    // agent is root the workers run as nginx's default unprivileged user and need write access.
    if nix::unistd::geteuid().is_root() {
        let healthd = paths.healthd_log_dir();
        if let Ok(Some(worker)) = nix::unistd::User::from_name(WORKER_USER) {
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

/// Writes a new generation: our rendered files, then the app's overrides on top, translated
/// for this host (`overrides.rs`). A refused override writes nothing.
pub fn write(
    runner: &NginxRunner,
    files: &[RenderedFile],
    host: &Host,
    upstream_port: u16,
    runtime_switch: bool,
    overrides: Option<&Path>,
) -> Result<StagedConfig, ProxyError> {
    let mut all: Vec<ConfFile> = files
        .iter()
        .map(|file| ConfFile {
            path: file.path.to_string(),
            text: file.content.clone(),
            from_bundle: false,
        })
        .collect();
    let bundle = match overrides {
        Some(source) => read_overrides(source)?,
        None => Vec::new(),
    };
    let bundle_paths: Vec<String> = bundle.iter().map(|f| f.path.clone()).collect();
    all.retain(|file| !bundle_paths.contains(&file.path));
    all.extend(bundle);
    let translated = overrides::translate(&all, host).map_err(ProxyError::Refused)?;
    let generations = runner.generations_dir();
    let number = list(&generations).last().map_or(1, |(n, _)| n + 1);
    let generation = format!("g{number:06}");
    let dir = generations.join(&generation);
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(io_error(&dir))?;
    }
    for file in &translated.files {
        let path = dir.join(&file.path);
        fsutil::write_atomic(&path, file.text.as_bytes(), 0o644).map_err(io_error(&path))?;
    }
    let meta = Meta {
        upstream_port,
        translations: translated.translations,
        targets: translated.targets,
        warnings: translated.warnings,
        overrides: bundle_paths,
        digest: digest(&translated.files),
        runtime_switch,
    };
    let meta_path = dir.join(META_FILE);
    fsutil::write_json_atomic(&meta_path, &meta, 0o644).map_err(io_error(&meta_path))?;
    Ok(staged_from(generation, dir, meta))
}

fn staged_from(generation: String, dir: PathBuf, meta: Meta) -> StagedConfig {
    StagedConfig {
        generation,
        dir,
        upstream_port: meta.upstream_port,
        translations: meta.translations,
        targets: meta.targets,
        warnings: meta.warnings,
        overrides: meta.overrides,
        digest: meta.digest,
        runtime_switch: meta.runtime_switch,
    }
}

/// The sha256 of the files' paths and texts, in path order.
fn digest(files: &[ConfFile]) -> String {
    use sha2::{Digest, Sha256};
    let mut sorted: Vec<&ConfFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut hasher = Sha256::new();
    for file in sorted {
        for part in [file.path.as_bytes(), file.text.as_bytes()] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `.platform/nginx/nginx.conf` replaces ours; `.platform/nginx/conf.d/**/*.conf` are added or
/// replace ours of the same name. nginx's master is root and `nginx -t` parses what is copied,
/// so nothing here follows a symlink: each entry is judged by its own type and opened with
/// `O_NOFOLLOW` (the deployment engine passes root's own copy of `.platform/nginx`).
fn read_overrides(source: &Path) -> Result<Vec<ConfFile>, ProxyError> {
    let is_dir = |path: &Path| fs::symlink_metadata(path).is_ok_and(|m| m.is_dir());
    let mut found = Vec::new();
    if !is_dir(source) {
        return Ok(found);
    }
    let main = source.join("nginx.conf");
    if fs::symlink_metadata(&main).is_ok_and(|m| m.is_file()) {
        found.push(read_override(&main, "nginx.conf".into())?);
    }
    for sub in ["conf.d", "conf.d/elasticbeanstalk"] {
        let from = source.join(sub);
        if !is_dir(&from) {
            continue;
        }
        let Ok(entries) = fs::read_dir(&from) else {
            continue;
        };
        let mut names: Vec<(std::ffi::OsString, bool)> = entries
            .flatten()
            .map(|e| (e.file_name(), e.file_type().is_ok_and(|t| t.is_file())))
            .collect();
        names.sort();
        for (name, regular) in names {
            let path = from.join(&name);
            if regular && path.extension().is_some_and(|ext| ext == "conf") {
                let relative = format!("{sub}/{}", name.to_string_lossy());
                found.push(read_override(&path, relative)?);
            }
        }
    }
    Ok(found)
}

fn read_override(path: &Path, relative: String) -> Result<ConfFile, ProxyError> {
    use std::io::Read;
    let mut bytes = Vec::new();
    fsutil::open_regular_nofollow(path)
        .and_then(|mut file| file.read_to_end(&mut bytes))
        .map_err(io_error(path))?;
    let text = String::from_utf8(bytes).map_err(|_| {
        ProxyError::Refused(vec![Refusal {
            file: relative.clone(),
            line: 1,
            directive: String::new(),
            why: "not UTF-8 text (Elastic Beanstalk requires UTF-8 too)".into(),
        }])
    })?;
    Ok(ConfFile {
        path: relative,
        text,
        from_bundle: true,
    })
}

/// Writes the switch's Lua module where nginx's master loads it from, when it changed (the
/// config carries its digest, so a change reloads nginx).
pub fn write_switch_module(switch: &RuntimeSwitch) -> Result<(), ProxyError> {
    let path = switch.module_path();
    let text = switch_conf::module(switch);
    if fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
        fsutil::write_atomic(&path, text.as_bytes(), 0o644).map_err(io_error(&path))?;
    }
    Ok(())
}

/// The port a (re)started nginx sends traffic to, written before each switch.
pub fn write_port_file(runner: &NginxRunner, port: u16) -> Result<(), ProxyError> {
    let path = runner.port_file();
    fsutil::write_atomic(&path, format!("{port}\n").as_bytes(), 0o600).map_err(io_error(&path))
}

/// Remembers that `master` loaded the files with `digest`.
pub fn record_loaded(runner: &NginxRunner, master: i32, digest: &str) {
    let _ = fsutil::write_atomic(
        &runner.loaded_file(),
        format!("{master} {digest}\n").as_bytes(),
        0o600,
    );
}

/// The digest `master` loaded, if this agent (or the one before it) recorded it.
pub fn read_loaded(runner: &NginxRunner, master: i32) -> Option<String> {
    let text = fs::read_to_string(runner.loaded_file()).ok()?;
    let (pid, digest) = text.trim().split_once(' ')?;
    (pid.parse::<i32>().ok()? == master).then(|| digest.to_string())
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
    Some(staged_from(generation, dir, meta))
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
        let read = read_overrides(&source).expect("read");
        let paths: Vec<(&str, &str)> = read
            .iter()
            .map(|f| (f.path.as_str(), f.text.as_str()))
            .collect();
        // Neither the linked nginx.conf, nor the linked file, nor the linked directory.
        assert_eq!(paths, [("conf.d/real.conf", "real;")]);
        // A linked overrides directory is not entered at all.
        let linked = dir.path().join("linked");
        symlink(&outside, &linked).expect("symlink");
        assert!(read_overrides(&linked).expect("read").is_empty());
    }
}
