//! Agent configuration: `etc/hostmanager/agent.toml` under the root prefix. Unknown keys are
//! rejected and every problem is reported at once (see `reader.rs`).

mod logs;
mod model;
mod parse;
mod parse_deploy;
mod parse_metrics;
mod parse_platform;
mod parse_remote;
mod platform_model;
mod reader;
mod supervise;
mod worker;

use std::path::{Path, PathBuf};

pub use logs::parse_destination;
pub use model::*;
pub use parse::{default_config, parse_config};
pub use parse_platform::{is_wsgi_path, static_mapping_problem, with_options};
pub use platform_model::*;
pub use reader::Problem;
pub use supervise::parse_size;
pub use worker::*;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path} has {} problem(s):\n{}", problems.len(), list(problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Loads the config at `path`. A missing file is only acceptable when `required` is false
/// (the default location): the agent then runs on the documented defaults.
pub fn load(path: &Path, required: bool) -> Result<Config, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_config(&text).map_err(|problems| ConfigError::Invalid {
            path: path.into(),
            problems,
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound && !required => {
            Ok(default_config())
        }
        Err(source) => Err(ConfigError::Read {
            path: path.into(),
            source,
        }),
    }
}
