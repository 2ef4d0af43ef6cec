//! Which files of `.ebextensions` are configuration files, and reading one: YAML first, then
//! JSON, both errors in Elastic Beanstalk's words when neither reads; a file with a key EB
//! does not know is skipped whole, with EB's warning. Pure.

use serde_json::{Map, Value};

/// The top-level keys Elastic Beanstalk accepts in a configuration file.
const VALID_KEYS: &[&str] = &[
    "option_settings",
    "packages",
    "groups",
    "users",
    "sources",
    "files",
    "commands",
    "services",
    "container_commands",
    "Resources",
    "Parameters",
    "Outputs",
    "Mappings",
    "Conditions",
];

/// The largest configuration file read (EB's bundles carry a few KiB).
pub const MAX_CONFIG_BYTES: usize = 1024 * 1024;

/// One configuration file that was read: its path in the bundle and its keys.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigFile {
    /// `.ebextensions/01-app.config`.
    pub name: String,
    pub keys: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    File(ConfigFile),
    /// Skipped whole, with the warning to record.
    Skipped(String),
}

/// The configuration files among the entries of `.ebextensions` (file names, with whether
/// each is a regular file), in byte order, and a warning for each entry left out that a user
/// may have meant to be read.
pub fn config_file_names(entries: &[(String, bool)]) -> (Vec<String>, Vec<String>) {
    let mut names = Vec::new();
    let mut warnings = Vec::new();
    for (name, regular) in entries {
        let path = format!("{}/{name}", super::DIR);
        if name.starts_with("._") {
            warnings.push(format!(
                "{path} ignored: a macOS resource fork (AppleDouble) file, not a configuration file (Elastic Beanstalk fails on it; zip without them)"
            ));
        } else if name == "nginx" {
            warnings.push(format!(
                "{path} ignored: Amazon Linux 1 read nginx configuration there; move it to .platform/nginx/ (docs/nginx.md)"
            ));
        } else if name.ends_with(".config") {
            if *regular {
                names.push(name.clone());
            } else {
                warnings.push(format!("{path} ignored: not a regular file"));
            }
        } else if [".yaml", ".yml", ".json"].iter().any(|e| name.ends_with(e)) {
            warnings.push(format!(
                "{path} ignored: only files ending in .config are configuration files"
            ));
        }
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    (names, warnings)
}

/// Reads one configuration file. `Err` is the deployment's failure in EB's words;
/// `warnings` gets duplicate keys (the last one wins).
pub fn parse_config(
    name: &str,
    text: &str,
    version: &str,
    warnings: &mut Vec<String>,
) -> Result<Parsed, String> {
    let value = match yaml(text) {
        Ok(value) => {
            if let Err(duplicate) = yaml_strict(text) {
                warnings.push(format!(
                    "{name}: {duplicate} (the last one is used; Elastic Beanstalk drops one of them)"
                ));
            }
            value
        }
        Err(yaml_error) => match serde_json::from_str::<Value>(text) {
            Ok(value) => value,
            Err(json_error) => {
                // The first line says what and where; the rest is a source excerpt.
                let yaml_error = yaml_error.to_string();
                let yaml_error = yaml_error.lines().next().unwrap_or_default();
                return Err(format!(
                    "The configuration file {name} in application version {version} contains invalid YAML or JSON. YAML exception: Invalid Yaml: {yaml_error}, JSON exception: Invalid JSON: {json_error}. Update the configuration file."
                ));
            }
        },
    };
    let keys = match value {
        Value::Object(keys) => keys,
        Value::Null => Map::new(),
        other => {
            return Err(format!(
                "The configuration file {name} in application version {version} is not a map of keys (it is {}). Update the configuration file.",
                kind(&other)
            ));
        }
    };
    if let Some(invalid) = keys.keys().find(|k| !VALID_KEYS.contains(&k.as_str())) {
        return Ok(Parsed::Skipped(format!(
            "Error processing file (Skipping): '{name}' - Contains invalid key: '{invalid}'. For information about valid keys, see https://docs.aws.amazon.com/elasticbeanstalk/latest/dg/ebextensions.html"
        )));
    }
    Ok(Parsed::File(ConfigFile {
        name: name.to_string(),
        keys,
    }))
}

fn yaml(text: &str) -> Result<Value, serde_saphyr::Error> {
    let options = serde_saphyr::options! {
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::LastWins,
    };
    serde_saphyr::from_str_with_options(text, options)
}

fn yaml_strict(text: &str) -> Result<Value, serde_saphyr::Error> {
    let options = serde_saphyr::options! {
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
    };
    serde_saphyr::from_str_with_options(text, options)
}

pub(super) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "empty",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Parsed, String> {
        parse_config(".ebextensions/01.config", text, "v1", &mut Vec::new())
    }

    #[test]
    fn configuration_files_are_the_config_files_in_byte_order_and_the_rest_is_said() {
        let entries: Vec<(String, bool)> = [
            ("b.config", true),
            ("B.config", true),
            ("01.config", true),
            ("._01.config", true),
            ("nginx", false),
            ("notes.yaml", true),
            ("script.sh", true),
            ("dir.config", false),
        ]
        .iter()
        .map(|(n, r)| (n.to_string(), *r))
        .collect();
        let (names, warnings) = config_file_names(&entries);
        assert_eq!(names, ["01.config", "B.config", "b.config"]);
        assert_eq!(warnings.len(), 4, "{warnings:?}");
        assert!(warnings[0].contains("._01.config ignored: a macOS"));
        assert!(warnings[1].contains("move it to .platform/nginx/"));
    }

    #[test]
    fn yaml_and_json_read_and_neither_gives_both_errors_in_ebs_words() {
        let Ok(Parsed::File(file)) = parse("option_settings:\n  - option_name: A\n    value: b\n")
        else {
            panic!("YAML reads");
        };
        assert!(file.keys["option_settings"].is_array());
        assert!(matches!(
            parse(r#"{"commands": {"a": {"command": "true"}}}"#),
            Ok(Parsed::File(_))
        ));
        let error = parse("files:\n  \"/a\":\n    content: x\n   mode: y\n{").expect_err("invalid");
        assert!(
            error.starts_with("The configuration file .ebextensions/01.config in application version v1 contains invalid YAML or JSON. YAML exception: Invalid Yaml: "),
            "{error}"
        );
        assert!(
            error.contains(", JSON exception: Invalid JSON: "),
            "{error}"
        );
        assert!(error.contains("line"), "names the line: {error}");
        assert!(
            error.ends_with(". Update the configuration file."),
            "{error}"
        );
    }

    #[test]
    fn an_unknown_top_level_key_skips_the_file_with_ebs_warning() {
        let Ok(Parsed::Skipped(warning)) = parse("OptionSettings:\n  a: b\ncommands: {}\n") else {
            panic!("skipped");
        };
        assert_eq!(
            warning,
            "Error processing file (Skipping): '.ebextensions/01.config' - Contains invalid key: 'OptionSettings'. For information about valid keys, see https://docs.aws.amazon.com/elasticbeanstalk/latest/dg/ebextensions.html"
        );
    }

    #[test]
    fn duplicate_keys_warn_and_the_last_wins_and_a_list_is_refused() {
        let mut warnings = Vec::new();
        let parsed = parse_config(
            ".ebextensions/a.config",
            "commands:\n  a: {command: one}\ncommands:\n  b: {command: two}\n",
            "v1",
            &mut warnings,
        );
        let Ok(Parsed::File(file)) = parsed else {
            panic!("reads");
        };
        assert!(file.keys["commands"].get("b").is_some());
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            parse("- a\n- b\n")
                .expect_err("list")
                .contains("is not a map of keys (it is a list)")
        );
        assert!(matches!(parse(""), Ok(Parsed::File(f)) if f.keys.is_empty()));
    }
}
