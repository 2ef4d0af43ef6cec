//! The command keys of a configuration file (`commands`, `container_commands`) and its
//! `services`, read into the plan `server.rs` assembles. Pure.

use std::collections::BTreeMap;

use serde_json::Value;

use super::parse::kind;
use super::server::Reader;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// A string: run by `/bin/sh -c`.
    Shell(String),
    /// A list: the program and its arguments, no shell.
    Argv(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub name: String,
    pub program: Program,
    /// When given, the whole environment (cfn-init's `env` replaces, it does not add).
    pub env: Option<BTreeMap<String, String>>,
    pub cwd: Option<String>,
    /// Run only when this shell command exits 0.
    pub test: Option<String>,
    pub ignore_errors: bool,
    pub leader_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub enabled: Option<bool>,
    pub ensure_running: Option<bool>,
    /// Restart when one of these files, sources, packages or commands changed or ran.
    pub files: Vec<String>,
    pub sources: Vec<String>,
    pub packages: Vec<String>,
    pub commands: Vec<String>,
}

impl Reader<'_> {
    pub(super) fn commands(&mut self, key: &str, value: &Value, container: bool) -> Vec<Command> {
        let mut commands = Vec::new();
        for (name, spec) in self.map(key, value) {
            let at = format!("{key}.{name}");
            let Value::Object(spec) = spec else {
                self.problem(
                    &at,
                    format!("must be a map with a command (it is {})", kind(spec)),
                );
                continue;
            };
            let program = match spec.get("command") {
                Some(Value::String(line)) if !line.trim().is_empty() => {
                    Program::Shell(line.clone())
                }
                Some(Value::Array(items)) if !items.is_empty() => {
                    let argv: Vec<String> = items
                        .iter()
                        .map(|i| match i {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        })
                        .collect();
                    Program::Argv(argv)
                }
                _ => {
                    self.problem(
                        &format!("{at}.command"),
                        "must be a command line or a list of arguments",
                    );
                    continue;
                }
            };
            let env = match spec.get("env") {
                None | Some(Value::Null) => None,
                Some(Value::Object(vars)) => Some(
                    vars.iter()
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                v.as_str().map_or_else(|| v.to_string(), String::from),
                            )
                        })
                        .collect(),
                ),
                Some(other) => {
                    self.problem(
                        &format!("{at}.env"),
                        format!("must be a map (it is {})", kind(other)),
                    );
                    None
                }
            };
            let cwd = spec
                .get("cwd")
                .and_then(|v| self.text(&format!("{at}.cwd"), v));
            let test = spec
                .get("test")
                .and_then(|v| self.text(&format!("{at}.test"), v));
            let ignore_errors = self
                .flag(&format!("{at}.ignoreErrors"), spec.get("ignoreErrors"))
                .unwrap_or(false);
            let leader_only = if container {
                self.flag(&format!("{at}.leader_only"), spec.get("leader_only"))
                    .unwrap_or(false)
            } else {
                false
            };
            commands.push(Command {
                name: name.clone(),
                program,
                env,
                cwd,
                // "A command can be leader-only or have a test, but not both (leader_only
                // takes precedence)."
                test: if leader_only { None } else { test },
                ignore_errors,
                leader_only,
            });
        }
        commands.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        commands
    }

    pub(super) fn services(&mut self, value: &Value) -> Vec<Service> {
        let mut services = Vec::new();
        for (manager, listed) in self.map("services", value) {
            let at = format!("services.{manager}");
            if manager != "sysvinit" && manager != "systemd" {
                self.problem(
                    &at,
                    "services are managed with systemd: use `sysvinit:` or `systemd:`",
                );
                continue;
            }
            for (name, spec) in self.map(&at, listed) {
                let at = format!("{at}.{name}");
                if !is_unit_name(name) {
                    self.problem(&at, "not a systemd unit name");
                    continue;
                }
                let list = |reader: &mut Self, key: &str| -> Vec<String> {
                    match spec.get(key) {
                        Some(Value::Array(items)) => items
                            .iter()
                            .filter_map(|i| i.as_str().map(String::from))
                            .collect(),
                        Some(Value::Object(managers)) => managers
                            .values()
                            .flat_map(|v| match v {
                                Value::Array(items) => items
                                    .iter()
                                    .filter_map(|i| i.as_str().map(String::from))
                                    .collect::<Vec<_>>(),
                                Value::Object(names) => names.keys().cloned().collect(),
                                _ => Vec::new(),
                            })
                            .collect(),
                        None | Some(Value::Null) => Vec::new(),
                        Some(other) => {
                            reader.problem(
                                &format!("{at}.{key}"),
                                format!("must be a list (it is {})", kind(other)),
                            );
                            Vec::new()
                        }
                    }
                };
                let files = list(self, "files");
                let sources = list(self, "sources");
                let packages = list(self, "packages");
                let commands = list(self, "commands");
                let enabled = self.flag(&format!("{at}.enabled"), spec.get("enabled"));
                let ensure_running =
                    self.flag(&format!("{at}.ensureRunning"), spec.get("ensureRunning"));
                services.push(Service {
                    name: name.clone(),
                    enabled,
                    ensure_running,
                    files,
                    sources,
                    packages,
                    commands,
                });
            }
        }
        services
    }
}

fn is_unit_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ":_.@-".contains(c))
}
