//! Which platform a bundle is for. Pure: decided from facts gathered at its root.

use std::collections::BTreeSet;

use crate::config::{PlatformChoice, PlatformName};
use crate::deploy::ProcfileEntry;

/// What detection and the build plan look at, gathered from the release's root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BundleFacts {
    /// Regular files at the root (no symlinks), by name.
    pub files: BTreeSet<String>,
    /// Directories at the root.
    pub dirs: BTreeSet<String>,
    /// `bin/application` is a regular file.
    pub bin_application: bool,
    /// `package.json`, when it parses.
    pub package: Option<PackageFacts>,
    /// `requirements.txt`'s text.
    pub requirements: Option<String>,
    /// The Procfile, when there is one (it always names the processes).
    pub procfile: Option<Vec<ProcfileEntry>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackageFacts {
    /// `scripts.start` is set.
    pub start_script: bool,
    /// `dependencies` or `devDependencies` is not empty.
    pub has_dependencies: bool,
}

impl BundleFacts {
    pub fn has(&self, file: &str) -> bool {
        self.files.contains(file)
    }

    pub fn jars(&self) -> Vec<&str> {
        self.files
            .iter()
            .filter(|f| f.ends_with(".jar"))
            .map(String::as_str)
            .collect()
    }

    pub fn go_files(&self) -> Vec<&str> {
        self.files
            .iter()
            .filter(|f| f.ends_with(".go") && !f.ends_with("_test.go"))
            .map(String::as_str)
            .collect()
    }
}

/// The platform chosen and why, in words for the deployment log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub platform: PlatformName,
    pub reason: String,
}

/// Files that tell each platform, in the order they are tried.
const SIGNS: &[(PlatformName, &[&str])] = &[
    (
        PlatformName::Python,
        &["requirements.txt", "application.py"],
    ),
    (
        PlatformName::Nodejs,
        &["package.json", "app.js", "server.js", "index.js"],
    ),
    (PlatformName::Go, &["go.mod", "application.go"]),
];

/// `platform.name` applied to a bundle: a fixed name is taken as configured; `auto` looks for
/// each platform's files at the root, then a Procfile.
pub fn choose(configured: PlatformChoice, facts: &BundleFacts) -> Result<Choice, String> {
    if let PlatformChoice::Fixed(platform) = configured {
        return Ok(Choice {
            platform,
            reason: "platform.name in the agent's configuration".to_string(),
        });
    }
    for (platform, files) in SIGNS {
        if let Some(file) = files.iter().find(|f| facts.has(f)) {
            return Ok(Choice {
                platform: *platform,
                reason: format!("detected: {file} at the bundle's root"),
            });
        }
    }
    if let Some(file) = facts.go_files().first() {
        return Ok(Choice {
            platform: PlatformName::Go,
            reason: format!("detected: {file} at the bundle's root"),
        });
    }
    if let Some(jar) = facts.jars().first() {
        return Ok(Choice {
            platform: PlatformName::Java,
            reason: format!("detected: {jar} at the bundle's root"),
        });
    }
    if facts.procfile.is_some() {
        return Ok(Choice {
            platform: PlatformName::Procfile,
            reason: "detected: a Procfile and no language platform's files".to_string(),
        });
    }
    Err(
        "bundle rejected: no Procfile at its root, and no platform's files either \
         (requirements.txt or application.py for Python, package.json or app.js for Node.js, \
         go.mod or application.go for Go, a .jar for Java SE): add a Procfile \
         (`web: <command>`) or set platform.name"
            .to_string(),
    )
}
