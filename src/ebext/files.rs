//! The `files` key of a configuration file: paths, modes as cfn-init reads them (six-digit
//! octal strings; `120xxx` a link), content in its forms, owners. Pure.

use serde_json::{Map, Value};

use base64::Engine as _;

use super::parse::kind;
use super::server::{FileContent, FileEntry, Reader, is_absolute_clean, is_account_name};

impl Reader<'_> {
    pub(super) fn files(&mut self, value: &Value) -> Vec<FileEntry> {
        let mut entries = Vec::new();
        let mut listed = self.map("files", value);
        listed.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        for (path, spec) in listed {
            let at = format!("files.{path}");
            if !is_absolute_clean(path) {
                self.problem(&at, "must be an absolute path without `..`");
                continue;
            }
            if path == "/etc/nginx" || path.starts_with("/etc/nginx/") {
                self.problem(&at, "hostmanager renders nginx's configuration itself and never loads files written there: put it under .platform/nginx/ in the bundle (docs/nginx.md)");
                continue;
            }
            let Value::Object(spec) = spec else {
                self.problem(&at, format!("must be a map (it is {})", kind(spec)));
                continue;
            };
            if spec.contains_key("context") {
                self.problem(
                    &format!("{at}.context"),
                    "Mustache templates are not rendered by hostmanager: write the content itself",
                );
                continue;
            }
            let mode = self.mode(&at, spec);
            let link = mode.is_some_and(|(kind, _)| kind == 0o12);
            let content = self.content(&at, spec, link);
            let owner = spec
                .get("owner")
                .and_then(|v| self.text(&format!("{at}.owner"), v));
            let group = spec
                .get("group")
                .and_then(|v| self.text(&format!("{at}.group"), v));
            for (field, name) in [("owner", &owner), ("group", &group)] {
                if let Some(name) = name
                    && !is_account_name(name)
                    && name.parse::<u32>().is_err()
                {
                    self.problem(
                        &format!("{at}.{field}"),
                        format!("{name:?} is not a user or group name"),
                    );
                }
            }
            if let Some(content) = content {
                entries.push(FileEntry {
                    path: path.clone(),
                    content,
                    mode: mode.map(|(_, bits)| bits),
                    owner,
                    group,
                });
            }
        }
        entries
    }

    /// A six-digit octal mode written as a string: (file type digits `0o10`/`0o12`, permission bits).
    fn mode(&mut self, at: &str, spec: &Map<String, Value>) -> Option<(u32, u32)> {
        match spec.get("mode")? {
            Value::String(text)
                if !text.is_empty() && text.len() <= 6 && text.chars().all(|c| c.is_digit(8)) =>
            {
                let value = u32::from_str_radix(text, 8).ok()?;
                let kind = value >> 12;
                if kind != 0 && kind != 0o12 && kind != 0o10 {
                    self.problem(&format!("{at}.mode"), format!("{text:?}: only regular files (000xxx, 100xxx) and links (120xxx) are written"));
                    return None;
                }
                Some((kind, value & 0o7777))
            }
            Value::Number(number) => {
                self.problem(&format!("{at}.mode"), format!("written without quotes, YAML reads it as the number {number}, not as an octal mode: write it as a six-digit octal string in quotes, e.g. mode: \"000755\""));
                None
            }
            other => {
                self.problem(
                    &format!("{at}.mode"),
                    format!("{other} is not a six-digit octal mode such as \"000644\""),
                );
                None
            }
        }
    }

    fn content(&mut self, at: &str, spec: &Map<String, Value>, link: bool) -> Option<FileContent> {
        let base64 = match spec.get("encoding").and_then(Value::as_str) {
            None | Some("plain") => false,
            Some("base64") => true,
            Some(other) => {
                self.problem(
                    &format!("{at}.encoding"),
                    format!("{other:?} is not plain or base64"),
                );
                return None;
            }
        };
        match (spec.get("content"), spec.get("source")) {
            (Some(_), Some(_)) => {
                self.problem(at, "give content or source, not both");
                None
            }
            (None, Some(source)) => {
                let url = self.text(&format!("{at}.source"), source)?;
                if url.starts_with("https://")
                    || url.starts_with("http://")
                    || url.starts_with("s3://")
                {
                    Some(FileContent::Remote(url))
                } else {
                    self.problem(
                        &format!("{at}.source"),
                        format!("{url:?}: sources are https:// or s3:// URLs"),
                    );
                    None
                }
            }
            (Some(Value::String(text)), None) if link => Some(FileContent::Link(text.clone())),
            (Some(Value::String(text)), None) if base64 => {
                let compact: String = text.split_whitespace().collect();
                match base64::engine::general_purpose::STANDARD.decode(compact) {
                    Ok(bytes) => Some(FileContent::Bytes(bytes)),
                    Err(error) => {
                        self.problem(&format!("{at}.content"), format!("not base64: {error}"));
                        None
                    }
                }
            }
            (Some(Value::String(text)), None) => {
                Some(FileContent::Bytes(text.clone().into_bytes()))
            }
            // cfn-init writes an object (or list) as JSON.
            (Some(value @ (Value::Object(_) | Value::Array(_))), None) if !link => {
                Some(FileContent::Bytes(value.to_string().into_bytes()))
            }
            (Some(other), None) => Some(FileContent::Bytes(other.to_string().into_bytes())),
            (None, None) => {
                self.problem(at, "needs content or source");
                None
            }
        }
    }
}
