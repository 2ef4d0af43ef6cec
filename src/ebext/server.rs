//! The server keys of one configuration file, read into the plan the deployment applies in
//! cfn-init's order: packages, groups, users, sources, files, commands, services (before the
//! build), container_commands (after it). What cannot apply on Debian is refused here, naming
//! the file, the key and what to do instead. Pure.

use serde_json::Value;

pub use super::commands::{Command, Program, Service};
use super::functions::Resolver;
use super::parse::{ConfigFile, kind};

/// Everything one file asks of the host, in the order it is applied.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileKeys {
    pub file: String,
    pub packages: Vec<Package>,
    pub groups: Vec<Group>,
    pub users: Vec<User>,
    pub sources: Vec<Source>,
    /// In lexicographic order of their paths.
    pub files: Vec<FileEntry>,
    /// In alphabetical order of their names.
    pub commands: Vec<Command>,
    pub services: Vec<Service>,
    /// Leader-only ones first, each group alphabetical.
    pub container_commands: Vec<Command>,
}

/// An apt package; `version` pinned when given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub gid: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: Option<u32>,
    pub groups: Vec<String>,
    pub home: Option<String>,
}

/// An archive fetched and extracted into `target` (its contents replaced).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub target: String,
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileContent {
    Bytes(Vec<u8>),
    /// Fetched from a URL (https:// or s3://).
    Remote(String),
    /// Mode `120xxx`: a symbolic link to this target.
    Link(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub path: String,
    pub content: FileContent,
    /// Permission bits (the low 12 bits of the six-digit mode).
    pub mode: Option<u32>,
    pub owner: Option<String>,
    pub group: Option<String>,
}

/// The plan of one file, or every problem with it.
pub fn server_keys(config: &ConfigFile, resolver: &Resolver) -> Result<FileKeys, Vec<String>> {
    let mut reader = Reader {
        file: &config.name,
        problems: Vec::new(),
    };
    let keys = &config.keys;
    let mut plan = FileKeys {
        file: config.name.clone(),
        ..FileKeys::default()
    };
    if let Some(value) = keys.get("packages") {
        plan.packages = reader.packages(value);
    }
    if let Some(value) = keys.get("groups") {
        plan.groups = reader.groups(value);
    }
    if let Some(value) = keys.get("users") {
        plan.users = reader.users(value);
    }
    if let Some(value) = keys.get("sources") {
        plan.sources = reader.sources(value);
    }
    if let Some(value) = keys.get("files") {
        match resolver.resolve(value, &format!("{}: files", config.name)) {
            Ok(value) => plan.files = reader.files(&value),
            Err(problem) => reader.problems.push(problem),
        }
    }
    if let Some(value) = keys.get("commands") {
        plan.commands = reader.commands("commands", value, false);
    }
    if let Some(value) = keys.get("services") {
        plan.services = reader.services(value);
    }
    if let Some(value) = keys.get("container_commands") {
        let mut commands = reader.commands("container_commands", value, true);
        commands.sort_by_key(|c| !c.leader_only);
        plan.container_commands = commands;
    }
    if reader.problems.is_empty() {
        Ok(plan)
    } else {
        Err(reader.problems)
    }
}

pub(super) struct Reader<'a> {
    pub file: &'a str,
    pub problems: Vec<String>,
}

impl Reader<'_> {
    pub(super) fn problem(&mut self, at: &str, text: impl std::fmt::Display) {
        self.problems.push(format!("{}: {at}: {text}", self.file));
    }

    /// The entries of a map key, in key order; anything else is a problem.
    pub(super) fn map<'v>(&mut self, at: &str, value: &'v Value) -> Vec<(&'v String, &'v Value)> {
        match value {
            Value::Object(map) => map.iter().collect(),
            Value::Null => Vec::new(),
            other => {
                self.problem(at, format!("must be a map (it is {})", kind(other)));
                Vec::new()
            }
        }
    }

    pub(super) fn text(&mut self, at: &str, value: &Value) -> Option<String> {
        match value {
            Value::String(text) => Some(text.clone()),
            Value::Number(number) => Some(number.to_string()),
            other => {
                self.problem(at, format!("must be a string (it is {})", kind(other)));
                None
            }
        }
    }

    pub(super) fn flag(&mut self, at: &str, value: Option<&Value>) -> Option<bool> {
        match value? {
            Value::Bool(flag) => Some(*flag),
            Value::String(text) if text == "true" => Some(true),
            Value::String(text) if text == "false" => Some(false),
            other => {
                self.problem(at, format!("must be true or false (it is {other})"));
                None
            }
        }
    }

    fn id(&mut self, at: &str, value: Option<&Value>) -> Option<u32> {
        let text = self.text(at, value?)?;
        match text.parse::<u32>() {
            Ok(id) => Some(id),
            Err(_) => {
                self.problem(at, format!("{text:?} is not a number"));
                None
            }
        }
    }

    fn packages(&mut self, value: &Value) -> Vec<Package> {
        let mut packages = Vec::new();
        for (manager, listed) in self.map("packages", value) {
            let at = format!("packages.{manager}");
            let names: Vec<(&String, &Value)> = self.map(&at, listed);
            if manager != "apt" {
                let list = names
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                let instead = match manager.as_str() {
                    "yum" | "rpm" | "dnf" | "zypper" => {
                        format!("{manager} packages cannot be installed on Debian; list them under `packages: apt:` with their Debian names")
                    }
                    "python" => "pip does not install into Debian's system Python (PEP 668, externally managed); list them in requirements.txt, which the Python platform installs into the release's virtualenv".to_string(),
                    "rubygems" => "gems are not installed system-wide by hostmanager; install them with a Buildfile command (bundle install)".to_string(),
                    _ => format!("{manager:?} is not a package manager hostmanager knows (apt is)"),
                };
                self.problem(&at, format!("{list}: {instead}"));
                continue;
            }
            for (name, version) in names {
                if !is_package_name(name) {
                    self.problem(&at, format!("{name:?} is not a Debian package name"));
                    continue;
                }
                let version = match version {
                    Value::Null => None,
                    Value::Array(list) if list.is_empty() => None,
                    Value::Array(list) if list.len() == 1 => {
                        self.text(&format!("{at}.{name}"), &list[0])
                    }
                    Value::Array(_) => {
                        self.problem(
                            &format!("{at}.{name}"),
                            "apt installs one version of a package: give one",
                        );
                        continue;
                    }
                    other => self.text(&format!("{at}.{name}"), other),
                }
                .filter(|v| !v.is_empty());
                if let Some(v) = &version
                    && !is_package_version(v)
                {
                    self.problem(
                        &format!("{at}.{name}"),
                        format!("{v:?} is not a Debian version"),
                    );
                    continue;
                }
                packages.push(Package {
                    name: name.clone(),
                    version,
                });
            }
        }
        packages
    }

    fn groups(&mut self, value: &Value) -> Vec<Group> {
        let mut groups = Vec::new();
        for (name, spec) in self.map("groups", value) {
            let at = format!("groups.{name}");
            if !is_account_name(name) {
                self.problem(&at, "not a valid group name");
                continue;
            }
            let gid = self.id(&format!("{at}.gid"), spec.get("gid"));
            groups.push(Group {
                name: name.clone(),
                gid,
            });
        }
        groups
    }

    fn users(&mut self, value: &Value) -> Vec<User> {
        let mut users = Vec::new();
        for (name, spec) in self.map("users", value) {
            let at = format!("users.{name}");
            if !is_account_name(name) {
                self.problem(&at, "not a valid user name");
                continue;
            }
            let uid = self.id(&format!("{at}.uid"), spec.get("uid"));
            let mut groups = Vec::new();
            match spec.get("groups") {
                None | Some(Value::Null) => {}
                Some(Value::Array(list)) => {
                    for group in list {
                        match group.as_str().filter(|g| is_account_name(g)) {
                            Some(group) => groups.push(group.to_string()),
                            None => self.problem(
                                &format!("{at}.groups"),
                                format!("{group} is not a group name"),
                            ),
                        }
                    }
                }
                Some(other) => self.problem(
                    &format!("{at}.groups"),
                    format!("must be a list (it is {})", kind(other)),
                ),
            }
            let home = spec
                .get("homeDir")
                .and_then(|h| self.text(&format!("{at}.homeDir"), h));
            if let Some(home) = &home
                && !is_absolute_clean(home)
            {
                self.problem(
                    &format!("{at}.homeDir"),
                    format!("{home:?} is not an absolute path"),
                );
            }
            users.push(User {
                name: name.clone(),
                uid,
                groups,
                home,
            });
        }
        users
    }

    fn sources(&mut self, value: &Value) -> Vec<Source> {
        let mut sources = Vec::new();
        for (target, url) in self.map("sources", value) {
            let at = format!("sources.{target}");
            let Some(url) = self.text(&at, url) else {
                continue;
            };
            if !is_absolute_clean(target) {
                self.problem(&at, "the target must be an absolute path without `..`");
            } else if !(url.starts_with("https://")
                || url.starts_with("http://")
                || url.starts_with("s3://"))
            {
                self.problem(
                    &at,
                    format!("{url:?}: sources are fetched from https:// or s3:// URLs"),
                );
            } else {
                sources.push(Source {
                    target: target.clone(),
                    url,
                });
            }
        }
        sources
    }
}

fn is_package_name(name: &str) -> bool {
    name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
}

fn is_package_version(version: &str) -> bool {
    version.starts_with(|c: char| c.is_ascii_digit())
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".+~:-".contains(c))
}

/// Debian's rule for user and group names (`adduser`'s default NAME_REGEX, less strict).
pub(super) fn is_account_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-".contains(c))
}

pub(super) fn is_absolute_clean(path: &str) -> bool {
    path.starts_with('/')
        && !path.contains('\0')
        && path.split('/').all(|part| part != ".." && part != ".")
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
