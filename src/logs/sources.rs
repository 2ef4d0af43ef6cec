//! Which files are logs, and how each one is rotated, watched, tailed and prioritised.

use std::path::{Path, PathBuf};

use super::open::{OpenError, Owners, open_log};
use crate::config::LogsConfig;
use crate::paths::Paths;

/// How a log is cut without losing what its writer keeps writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotateMode {
    /// The writer keeps its O_APPEND descriptor (app stdout/stderr, unknown writers): copy the
    /// head, then collapse it out of the file in place.
    CopyTruncate,
    /// The writer reopens by path: rename, create a new file, ask the writer to reopen.
    Rename(Reopen),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reopen {
    /// The writer opens the file for every write (the agent's own logs).
    Nothing,
    /// nginx reopens its logs on SIGUSR1 to the master.
    NginxUsr1,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub path: PathBuf,
    /// Relative to the root, e.g. `var/log/web.stdout.log` (names, keys, bundle entries).
    pub relative: String,
    /// None: watched only.
    pub rotate: Option<RotateMode>,
    pub watch: bool,
    pub tail: bool,
    /// Shedding order under disk pressure: lower goes first.
    pub priority: u8,
    /// Who may own the file (`open::Owners::allowed`): the agent's user for the logs the agent
    /// and nginx write, also the app user for `extra_files` and `watch.files`.
    pub owners: Vec<u32>,
}

/// What discovery found: the logs, and the paths refused with the reason (for an event).
#[derive(Debug, Default)]
pub struct Discovery {
    pub sources: Vec<Source>,
    pub refused: Vec<(String, String)>,
}

/// Every log that exists now, in a stable order. Each one is opened as it will be read (no
/// links followed, owner checked); one that is refused is listed in `refused` instead.
pub fn discover(paths: &Paths, config: &LogsConfig, owners: &Owners) -> Discovery {
    let mut found = Discovery::default();
    let log_dir = paths.log_dir();
    let mut add = |path: PathBuf, rotate, watch, tail, priority, app_writes_it| {
        if found.sources.iter().any(|s| s.path == path) {
            return;
        }
        // Directories matched by a glob are not logs; anything else is checked.
        if std::fs::symlink_metadata(&path).map_or(true, |m| m.is_dir()) {
            return;
        }
        let relative = relative(paths.root(), &path);
        if relative.starts_with("var/log/rotated/") {
            return;
        }
        let owners = owners.allowed(app_writes_it);
        match open_log(&path, &owners, false) {
            Ok(_) => found.sources.push(Source {
                path,
                relative,
                rotate,
                watch,
                tail,
                priority,
                owners,
            }),
            Err(OpenError::Refused(why)) => found.refused.push((relative, why)),
            Err(OpenError::Io(_)) => {}
        }
    };
    for (suffix, priority, tail) in [(".stderr.log", 3, true), (".stdout.log", 1, true)] {
        for path in glob_under(&log_dir, &format!("*{suffix}")) {
            add(
                path,
                Some(RotateMode::CopyTruncate),
                true,
                tail,
                priority,
                false,
            );
        }
    }
    let nginx = paths.nginx_log_dir();
    let usr1 = Some(RotateMode::Rename(Reopen::NginxUsr1));
    add(nginx.join("error.log"), usr1, true, true, 2, false);
    add(nginx.join("access.log"), usr1, false, true, 0, false);
    for path in glob_under(&paths.agent_log_dir(), "*.log") {
        let tail = path.file_name().is_some_and(|n| n == "deploy.log");
        let rename = Some(RotateMode::Rename(Reopen::Nothing));
        add(path, rename, false, tail, 2, false);
    }
    // The worker daemon's log, written by the agent the way its own logs are.
    let sqsd = crate::worker::log_path(paths.root());
    // Its failure lines are the app's answers, already events: not watched for severe errors.
    add(
        sqsd,
        Some(RotateMode::Rename(Reopen::Nothing)),
        false,
        true,
        2,
        false,
    );
    for pattern in &config.extra_files {
        for path in glob_under(paths.root(), pattern) {
            add(path, Some(RotateMode::CopyTruncate), true, true, 2, true);
        }
    }
    if config.watch.enabled {
        for pattern in &config.watch.files {
            for path in glob_under(paths.root(), pattern) {
                add(path, None, true, false, 2, true);
            }
        }
    }
    found
}

/// Directories whose changes may concern a log (watched with inotify).
pub fn watch_dirs(paths: &Paths, config: &LogsConfig) -> Vec<PathBuf> {
    let mut dirs = vec![
        paths.log_dir(),
        paths.agent_log_dir(),
        paths.nginx_log_dir(),
        paths.root().join("var/log/aws-sqsd"),
    ];
    for pattern in config.extra_files.iter().chain(&config.watch.files) {
        let fixed: PathBuf = Path::new(pattern.trim_start_matches('/'))
            .components()
            .take_while(|c| !c.as_os_str().to_string_lossy().contains(['*', '?', '[']))
            .collect();
        // The nearest directory that exists (the root at worst): creating the missing ones
        // below it is an event that makes the task rediscover and watch them.
        let mut dir = paths.root().join(fixed);
        while !dir.is_dir() && dir != paths.root() {
            match dir.parent() {
                Some(parent) => dir = parent.to_path_buf(),
                None => break,
            }
        }
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    dirs
}

/// `pattern` is relative to `base` (a leading `/` means the root, as everywhere in the config).
fn glob_under(base: &Path, pattern: &str) -> Vec<PathBuf> {
    let full = base.join(pattern.trim_start_matches('/'));
    let Some(text) = full.to_str() else {
        return Vec::new();
    };
    let Ok(entries) = glob::glob(text) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries.flatten().collect();
    paths.sort();
    paths
}

pub fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .trim_start_matches('/')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_are_found_with_their_modes() {
        let root = tempfile::tempdir().expect("tempdir");
        let paths = Paths::new(root.path());
        for file in [
            "var/log/web.stdout.log",
            "var/log/web.stderr.log",
            "var/log/nginx/access.log",
            "var/log/hostmanager/deploy.log",
            "var/log/rotated/_var_log_web.stdout.log-1.gz",
            "srv/app/logs/a.log",
            "srv/app/debug/b.log",
        ] {
            let path = root.path().join(file);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, "x").expect("write");
        }
        let mut config = crate::config::default_config().logs;
        config.extra_files = vec!["/srv/app/logs/*.log".into()];
        config.watch.files = vec!["srv/app/debug/*.log".into()];
        let me = rustix::process::geteuid().as_raw();
        let owners = Owners {
            agent: me,
            app: None,
        };
        std::os::unix::fs::symlink("/etc/passwd", root.path().join("srv/app/logs/evil.log"))
            .expect("symlink");
        let found = discover(&paths, &config, &owners);
        assert_eq!(found.refused.len(), 1, "{:?}", found.refused);
        assert_eq!(found.refused[0].0, "srv/app/logs/evil.log");
        assert!(found.refused[0].1.contains("symbolic link"));
        let sources = found.sources;
        let summary: Vec<(&str, Option<RotateMode>, bool)> = sources
            .iter()
            .map(|s| (s.relative.as_str(), s.rotate, s.watch))
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "var/log/web.stderr.log",
                    Some(RotateMode::CopyTruncate),
                    true
                ),
                (
                    "var/log/web.stdout.log",
                    Some(RotateMode::CopyTruncate),
                    true
                ),
                (
                    "var/log/nginx/access.log",
                    Some(RotateMode::Rename(Reopen::NginxUsr1)),
                    false
                ),
                (
                    "var/log/hostmanager/deploy.log",
                    Some(RotateMode::Rename(Reopen::Nothing)),
                    false
                ),
                ("srv/app/logs/a.log", Some(RotateMode::CopyTruncate), true),
                ("srv/app/debug/b.log", None, true),
            ]
        );
        let dirs = watch_dirs(&paths, &config);
        assert!(dirs.contains(&root.path().join("srv/app/logs")));
        assert!(dirs.contains(&root.path().join("srv/app/debug")));
    }
}
