//! `hostmanager proxy config`: the files of the generation nginx serves, as nginx reads them
//! (the bundle's overrides translated), with what was translated and why.

use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::StagedConfig;
use super::overrides::Translation;

/// Files larger than this are listed but not shown (a generation's files are a few KiB).
const MAX_SHOWN_BYTES: u64 = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigView {
    pub generation: String,
    pub dir: String,
    pub upstream_port: u16,
    /// The bundle's files (relative to `.platform/nginx`), translated into this generation.
    pub overrides: Vec<String>,
    pub translations: Vec<Translation>,
    pub warnings: Vec<String>,
    pub files: Vec<ConfigFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigFile {
    /// Relative to the generation directory.
    pub path: String,
    pub content: String,
}

pub fn config_view(active: &StagedConfig) -> ConfigView {
    let mut files = Vec::new();
    collect(&active.dir, "", &mut files);
    files.sort_by(|a, b| a.path.cmp(&b.path));
    ConfigView {
        generation: active.generation.clone(),
        dir: active.dir.display().to_string(),
        upstream_port: active.upstream_port,
        overrides: active.overrides.clone(),
        translations: active.translations.clone(),
        warnings: active.warnings.clone(),
        files,
    }
}

/// Regular `.conf` files (and nginx.conf) below `dir`; the agent wrote them all, so nothing
/// here is a link, but none is followed anyway.
fn collect(dir: &Path, prefix: &str, out: &mut Vec<ConfigFile>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let relative = format!("{prefix}{name}");
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            collect(&entry.path(), &format!("{relative}/"), out);
        } else if kind.is_file() && name.ends_with(".conf") {
            let small = entry.metadata().is_ok_and(|m| m.len() <= MAX_SHOWN_BYTES);
            let content = match small {
                true => fs::read_to_string(entry.path()).unwrap_or_default(),
                false => format!("(larger than {MAX_SHOWN_BYTES} bytes: not shown)"),
            };
            out.push(ConfigFile {
                path: relative,
                content,
            });
        }
    }
}
