//! Makes nginx overrides written for Elastic Beanstalk work on this host, unchanged in the
//! bundle. A bundle's `.platform/nginx` files bake in EB's platform: `proxy_pass` to
//! 127.0.0.1:8080 (8000, 5000), `upstream nodejs`, `user nginx;`, `pid /var/run/nginx.pid;`,
//! logs under `/var/log/nginx`, `listen 80`. Each is translated to what this host runs
//! (the app's upstream, the host's worker user, the agent's paths, `proxy.listen`), and each
//! translation is reported. What root's nginx master would load or open from a place the
//! bundle or the app controls (an `include` or `load_module` outside nginx's own trees, a log
//! outside the agent's log directory) is refused, naming the file, line and directive. Pure:
//! files in, files out.

mod edit;
mod main_file;
mod paths;
mod rules;
mod targets;
mod tree;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use tree::{Directive, SyntaxError, parse};

/// EB's own upstream names; a `proxy_pass http://nodejs` that relies on EB defining them
/// gets them defined here, pointing at the app.
pub const EB_UPSTREAM_NAMES: [&str; 3] = ["nodejs", "docker", "my_app"];

/// The file that defines EB's upstream names when a bundle uses them without defining them.
pub const EB_UPSTREAMS_FILE: &str = "conf.d/hostmanager_eb_upstreams.conf";

/// What this host runs, for the translations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Loopback ports that mean "the app" in an override: EB's platform ports
    /// (`proxy.platform_ports`), `app.port` and `app.alternate_port`.
    pub app_ports: BTreeSet<u16>,
    /// Where the web process of the release being staged listens: `127.0.0.1:18500`. Written
    /// in an upstream only without a `balancer` (or one that mixes the app with other servers).
    pub app_endpoint: String,
    /// With the runtime switch: the directive that makes an upstream pick the app's port per
    /// request, so that it follows cutovers without a reload.
    pub balancer: Option<String>,
    /// `load_module` lines a bundle's whole nginx.conf needs for the balancer.
    pub modules: Vec<PathBuf>,
    /// The name of the upstream that follows the web process across cutovers.
    pub upstream: String,
    pub listen: SocketAddr,
    pub pid_file: PathBuf,
    /// The agent's nginx log directory (EB's `/var/log/nginx`).
    pub log_dir: PathBuf,
    /// nginx's worker user when the master is root (the host's nginx default).
    pub worker_user: String,
}

/// One file of a generation, relative to its directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfFile {
    pub path: String,
    pub text: String,
    /// Copied from the bundle's `.platform/nginx` (translated), or rendered by the agent.
    pub from_bundle: bool,
}

/// One change made to a bundle's file, as the deployment record and `proxy config` list it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Translation {
    pub file: String,
    pub line: u32,
    /// The directive as written: `proxy_pass http://127.0.0.1:8080`.
    pub directive: String,
    /// What it became (empty when it was removed).
    pub became: String,
    pub why: String,
}

impl std::fmt::Display for Translation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.directive.is_empty() {
            return write!(f, "{}: added `{}`: {}", self.file, self.became, self.why);
        }
        let became = match self.became.as_str() {
            "" => "removed".to_string(),
            text => format!("-> `{text}`"),
        };
        write!(
            f,
            "{} line {}: `{}` {became}: {}",
            self.file, self.line, self.directive, self.why
        )
    }
}

/// A directive that cannot be made safe or correct on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub file: String,
    pub line: u32,
    pub directive: String,
    pub why: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.directive.as_str() {
            "" => write!(f, "{} line {}: {}", self.file, self.line, self.why),
            directive => write!(
                f,
                "{} line {}: `{directive}`: {}",
                self.file, self.line, self.why
            ),
        }
    }
}

/// A loopback address an override proxies to that is not the app: when nginx answers 502,
/// the likely cause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyTarget {
    pub file: String,
    pub line: u32,
    pub address: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Translated {
    /// Every file of the generation, translated where needed, plus any file added.
    pub files: Vec<ConfFile>,
    pub translations: Vec<Translation>,
    pub targets: Vec<ProxyTarget>,
    /// What is not wrong enough to refuse but loses something (e.g. no healthd log).
    pub warnings: Vec<String>,
}

/// Translates the bundle's files of one generation; `files` holds all of them, the agent's
/// included, because what a bundle's file means depends on the others (which upstreams
/// exist, what nginx.conf includes).
pub fn translate(files: &[ConfFile], host: &Host) -> Result<Translated, Vec<Refusal>> {
    let mut refusals = Vec::new();
    let mut parsed = Vec::new();
    for file in files {
        match parse(&file.text) {
            Ok(tree) => parsed.push((file, tree)),
            Err(error) if file.from_bundle => refusals.push(Refusal {
                file: file.path.clone(),
                line: error.line,
                directive: String::new(),
                why: format!("not valid nginx syntax: {}", error.message),
            }),
            Err(error) => refusals.push(Refusal {
                file: file.path.clone(),
                line: error.line,
                directive: String::new(),
                why: format!("the agent's own file does not parse: {}", error.message),
            }),
        }
    }
    if !refusals.is_empty() {
        return Err(refusals);
    }
    let facts = rules::Facts::gather(&parsed);
    let mut out = Translated::default();
    for (file, tree) in &parsed {
        let outcome = rules::translate_file(file, tree, host, &facts);
        refusals.extend(outcome.refusals);
        out.translations.extend(outcome.translations);
        out.targets.extend(outcome.targets);
        out.warnings.extend(outcome.warnings);
        out.files.push(ConfFile {
            text: outcome.text,
            ..(*file).clone()
        });
    }
    if !refusals.is_empty() {
        return Err(refusals);
    }
    if let Some(added) = main_file::eb_upstreams(&facts, host) {
        out.translations.push(added.translation);
        out.files.push(added.file);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
