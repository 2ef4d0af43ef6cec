//! The validated `[platform]` section (docs/platforms.md); parsed by `parse_platform.rs`.

use std::collections::BTreeMap;

/// `[platform]`: the language platform that builds and starts bundles (docs/platforms.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformConfig {
    pub name: PlatformChoice,
    /// URL path → directory of the release that nginx serves, on every platform (over the
    /// platform's own defaults, e.g. Python's `/static`).
    pub static_files: BTreeMap<String, String>,
    pub python: PythonOptions,
    pub nodejs: NodeOptions,
    pub java: JavaOptions,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlatformChoice {
    /// Detected from the bundle's files at each deployment.
    Auto,
    Fixed(PlatformName),
}

/// Elastic Beanstalk's platforms this agent builds for, plus `procfile` (a Procfile is
/// required and nothing is built).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum PlatformName {
    Python,
    Nodejs,
    Go,
    Java,
    Procfile,
}

impl PlatformName {
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "python" => Self::Python,
            "nodejs" => Self::Nodejs,
            "go" => Self::Go,
            "java" => Self::Java,
            "procfile" => Self::Procfile,
            _ => return None,
        })
    }

    /// The port Elastic Beanstalk's platform runs the app on (its nginx proxies there), which
    /// bundles written for it hard-code; `procfile` has none of its own.
    pub fn default_port(self) -> Option<u16> {
        match self {
            Self::Python => Some(8000),
            Self::Nodejs => Some(8080),
            Self::Go | Self::Java => Some(5000),
            Self::Procfile => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Python => "python",
            Self::Nodejs => "nodejs",
            Self::Go => "go",
            Self::Java => "java",
            Self::Procfile => "procfile",
        }
    }
}

impl std::fmt::Display for PlatformName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[platform.python]`, as `aws:elasticbeanstalk:container:python` and the Python platform's
/// `aws:elasticbeanstalk:environment:proxy:staticfiles` default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PythonOptions {
    /// `WSGIPath`: module, file or module:callable of the WSGI application.
    pub wsgi_path: String,
    /// `NumProcesses`: gunicorn workers.
    pub processes: u32,
    /// `NumThreads`: threads per worker.
    pub threads: u32,
    /// URL path → directory of the release that nginx serves itself.
    pub static_files: BTreeMap<String, String>,
}

/// `[platform.nodejs]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeOptions {
    /// Install production dependencies only (`NPM_USE_PRODUCTION` on Elastic Beanstalk).
    pub production: bool,
}

/// `[platform.java]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JavaOptions {
    /// Given to `java` before `-jar` by the default web command (e.g. `-Xmx512m`).
    pub jvm_options: Vec<String>,
}
