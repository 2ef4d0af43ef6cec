//! Language platforms (Elastic Beanstalk's Python, Node.js, Go and Java SE): which one a bundle
//! is for (`detect.rs`), how it is built and started when it carries no Procfile (`plan.rs`),
//! and running that build as a deployment step (`build.rs`). docs/platforms.md.
//!
//! Pure cores (`detect`, `plan`) decide from facts about the bundle; `build` gathers the facts,
//! probes the runtime and runs the commands like Buildfile commands (as `deploy.hook_user`,
//! bounded by `deploy.hook_timeout`, output in hooks.log).

mod build;
mod detect;
pub(in crate::deploy) mod plan;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use crate::config::PlatformName;
pub(in crate::deploy) use build::{PlatformPlan, build_uid};
pub use detect::{BundleFacts, PackageFacts, choose};
pub use plan::{BuildDirs, Plan, Probe, plan};

/// The platform a release was built for, recorded with it (`state.json`) so that restarts,
/// configuration deployments, rollbacks and recovery start it the same way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeInfo {
    pub platform: PlatformName,
    /// What `python3 --version` (or node, go, java) said when the release was built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Why this platform was chosen (`platform.name = "auto"`) or that it was configured.
    pub reason: String,
    /// The application server the web process runs (gunicorn, node, java, …), for health causes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Added to the environment of the release's processes and later hooks, before the
    /// properties (which may override them, as on Elastic Beanstalk): the venv's PATH.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// The Python virtualenv, outside the release (a copied release keeps working: the venv's
    /// scripts name their interpreter by absolute path). Deleted with the release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub venv: Option<PathBuf>,
    /// URL path → directory of the release, served by nginx.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub static_files: Vec<(String, String)>,
    /// The controller's platform options it was built with (part of its fingerprint).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

impl RuntimeInfo {
    /// "gunicorn (the python platform's application server)", for health causes.
    pub fn server_label(&self) -> Option<String> {
        self.server.as_ref().map(|server| {
            format!(
                "{server}, the {} platform's application server",
                self.platform
            )
        })
    }

    /// What nginx serves itself for a release (its platform's static files); the directories
    /// are reached through the `current` link, so the config is the same across releases.
    pub fn static_files_of(runtime: Option<&Self>) -> Vec<(String, String)> {
        runtime.map(|r| r.static_files.clone()).unwrap_or_default()
    }

    /// "python (Python 3.11.2)" for status.
    pub fn describe(&self) -> String {
        match &self.version {
            Some(version) => format!("{} ({version})", self.platform),
            None => self.platform.to_string(),
        }
    }
}
