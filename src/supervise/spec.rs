//! What to run and with which environment. Pure.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// PATH for app processes: the agent's own environment never reaches the app.
pub const APP_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One Procfile process of one release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessSpec {
    /// Procfile name (`web`, `worker`, …).
    pub name: String,
    /// The Procfile command line, run by `/bin/sh -c` as the Procfile contract says.
    pub command: String,
    /// Deployment id of the release this process belongs to.
    pub release: u64,
    /// Working directory: the release directory.
    pub cwd: PathBuf,
    /// Environment properties of the release (secrets: stored 0600, never logged).
    pub env: crate::secret::Properties,
    /// The platform's environment (the venv's PATH): under the properties, which may override it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub platform_env: BTreeMap<String, String>,
    /// PORT for the web process.
    pub port: Option<u16>,
}

/// Identifies a supervised process across restarts of the process itself.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProcessKey {
    pub release: u64,
    pub name: String,
}

impl ProcessSpec {
    pub fn key(&self) -> ProcessKey {
        ProcessKey {
            release: self.release,
            name: self.name.clone(),
        }
    }
}

/// The user an app runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (gids); empty clears them.
    pub groups: Vec<u32>,
    pub home: PathBuf,
    /// False when the agent is not root: it cannot switch users, the app runs as the agent's user.
    pub switch: bool,
}

/// The script given to `/bin/sh -c` for a Procfile command. A plain command line (words only,
/// no shell syntax) gets `exec`, as bash does by itself: the app then IS the process the agent
/// started, so its exit is seen at once, signals reach it directly, and there is no shell
/// between a crash and the restart. Anything else runs as written.
pub fn shell_script(command: &str) -> String {
    const SHELL_SYNTAX: &[char] = &[
        ';', '&', '|', '<', '>', '(', ')', '$', '`', '\\', '"', '\'', '*', '?', '[', ']', '#', '~',
        '=', '%', '{', '}', '!', '\n',
    ];
    let words: Vec<&str> = command.split_whitespace().collect();
    let is_plain = !command.contains(SHELL_SYNTAX)
        && words
            .first()
            .is_some_and(|first| !SHELL_KEYWORDS.contains(first) && *first != "exec");
    if is_plain {
        format!("exec {command}")
    } else {
        command.to_string()
    }
}

/// Words that make a command line more than one command, or a shell builtin `exec` would break.
const SHELL_KEYWORDS: &[&str] = &[
    "if", "then", "else", "elif", "fi", "case", "esac", "for", "while", "until", "do", "done",
    "in", "function", "select", "time", "cd", "export", "set", "unset", "trap", "wait", "eval",
    ".", ":", "source", "ulimit", "umask", "read", "shift", "return", "exit", "break", "continue",
    "alias", "unalias", "command", "type", "hash", "getopts", "local", "readonly", "times", "jobs",
    "fg", "bg",
];

/// The complete environment of an app process: a minimal base, then the env properties
/// (which may override PATH, as on Elastic Beanstalk), then PORT for the web process.
pub fn process_env(spec: &ProcessSpec, user: &AppUser) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("PATH".to_string(), APP_PATH.to_string());
    env.insert("HOME".to_string(), user.home.display().to_string());
    env.insert("USER".to_string(), user.name.clone());
    env.insert("LOGNAME".to_string(), user.name.clone());
    env.insert("LANG".to_string(), "C.UTF-8".to_string());
    env.extend(spec.platform_env.clone());
    env.extend(spec.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    if let Some(port) = spec.port {
        env.insert("PORT".to_string(), port.to_string());
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_command_lines_are_execed_anything_else_runs_as_written() {
        assert_eq!(
            shell_script("python3 application.py"),
            "exec python3 application.py"
        );
        assert_eq!(
            shell_script("bin/server --port 5000 -v"),
            "exec bin/server --port 5000 -v"
        );
        for as_written in [
            "python3 a.py; python3 b.py",
            "cd app && ./run",
            "./run | tee log",
            "./run > log",
            "./run $PORT",
            "FOO=1 ./run",
            "exec ./run",
            "trap '' TERM",
            "while true",
            "wait",
            "for i in 1 2",
            "ls *.py",
            "./run 'quoted arg'",
            "./a\n./b",
            "",
        ] {
            assert_eq!(shell_script(as_written), as_written);
        }
    }

    #[test]
    fn env_is_minimal_plus_properties_plus_port() {
        let spec = ProcessSpec {
            name: "web".into(),
            command: "run".into(),
            release: 1,
            cwd: "/r".into(),
            env: BTreeMap::from([
                ("PATH".into(), "/opt/bin".into()),
                ("PORT".into(), "1".into()),
            ])
            .into(),
            platform_env: BTreeMap::from([
                ("PATH".into(), "/venv/bin:/usr/bin".into()),
                ("VIRTUAL_ENV".into(), "/venv".into()),
            ]),
            port: Some(5000),
        };
        let user = AppUser {
            name: "webapp".into(),
            uid: 999,
            gid: 999,
            groups: vec![],
            home: "/home/webapp".into(),
            switch: true,
        };
        let env = process_env(&spec, &user);
        assert_eq!(
            env["PATH"], "/opt/bin",
            "a property overrides the platform's PATH"
        );
        assert_eq!(env["VIRTUAL_ENV"], "/venv");
        assert_eq!(
            env["PORT"], "5000",
            "the agent's port wins: nginx proxies to it"
        );
        assert_eq!(env["HOME"], "/home/webapp");
        assert!(!env.contains_key("AWS_SECRET_ACCESS_KEY"));
        assert_eq!(env.len(), 7);
    }
}
