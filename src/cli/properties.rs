//! Environment properties from the command line: `--env-file FILE` (`-` is standard input)
//! and `--env`/`--set KEY=VALUE`. A value on the command line sits in `/proc/<pid>/cmdline`,
//! which every local user can read while the CLI waits; a file or a pipe does not.

use std::io::Read;
use std::path::PathBuf;

use crate::deploy::is_property_name;
use crate::secret::Properties;

/// Larger than any valid environment (the agent allows 64 KiB): a bigger input is a mistake,
/// and reading stops there instead of at the end of `/dev/zero`.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// A property file's assignments in order. One `KEY=VALUE` per line; blank lines and lines
/// whose first non-blank character is `#` are skipped; the value is everything after the
/// first `=`, taken literally (quotes included, nothing expanded) except a trailing `\r`.
/// `name` is how errors name the file (`name:line: …`).
pub fn parse_env_file(text: &str, name: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    for (index, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let at = format!("{name}:{}", index + 1);
        let Some((key, value)) = trimmed.split_once('=') else {
            return Err(format!("{at}: not KEY=VALUE (no '=')"));
        };
        if !is_property_name(key) {
            return Err(format!(
                "{at}: {key:?} is not a property name (letters, digits and '_', not starting with a digit)"
            ));
        }
        pairs.push((key.to_string(), value.to_string()));
    }
    Ok(pairs)
}

/// `KEY=VALUE` given with `flag` (`--env` or `--set`).
pub fn parse_pair(pair: &str, flag: &str) -> Result<(String, String), String> {
    match pair.split_once('=') {
        Some((key, value)) => Ok((key.to_string(), value.to_string())),
        None => Err(format!("{flag} {pair:?} is not KEY=VALUE")),
    }
}

/// The properties of `files` (in order), then of `pairs` given with `flag`: a later
/// assignment of a key wins, so the command line overrides the files.
pub fn collect(files: &[PathBuf], pairs: &[String], flag: &str) -> Result<Properties, String> {
    let mut properties = Properties::default();
    if files.iter().filter(|f| f.as_os_str() == "-").count() > 1 {
        return Err("--env-file -: standard input can be read only once".to_string());
    }
    for file in files {
        let (text, name) = read(file)?;
        properties.extend(parse_env_file(&text, &name)?);
    }
    for pair in pairs {
        let (key, value) = parse_pair(pair, flag)?;
        properties.insert(key, value);
    }
    Ok(properties)
}

/// The text of a property file and how errors name it.
fn read(file: &PathBuf) -> Result<(String, String), String> {
    let (name, reader): (String, Box<dyn Read>) = if file.as_os_str() == "-" {
        ("standard input".to_string(), Box::new(std::io::stdin()))
    } else {
        let name = file.display().to_string();
        let opened =
            std::fs::File::open(file).map_err(|error| format!("--env-file {name}: {error}"))?;
        (name, Box::new(opened))
    };
    let mut bytes = Vec::new();
    reader
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| format!("--env-file {name}: {error}"))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "--env-file {name}: larger than {} KiB",
            MAX_FILE_BYTES >> 10
        ));
    }
    let text =
        String::from_utf8(bytes).map_err(|_| format!("--env-file {name}: not UTF-8 text"))?;
    Ok((text, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_hold_one_assignment_a_line_with_comments_and_blank_lines() {
        let text = "# database\nDB_PASSWORD=s3cret=with=equals\n\n  # indented comment\n\
                    EMPTY=\nQUOTED=\"kept\"\r\n  INDENTED=value with spaces \nDB_PASSWORD=later";
        let pairs = parse_env_file(text, "app.env").expect("valid");
        let expected = [
            ("DB_PASSWORD", "s3cret=with=equals"),
            ("EMPTY", ""),
            ("QUOTED", "\"kept\""),
            ("INDENTED", "value with spaces "),
            ("DB_PASSWORD", "later"),
        ];
        let pairs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(pairs, expected);
    }

    #[test]
    fn a_bad_line_is_named_by_file_and_line_number() {
        assert_eq!(
            parse_env_file("A=1\n# c\nnot an assignment\n", "app.env"),
            Err("app.env:3: not KEY=VALUE (no '=')".to_string())
        );
        let bad_name = parse_env_file("\nexport A=1", "standard input").expect_err("bad");
        assert!(
            bad_name.starts_with("standard input:2: \"export A\" is not a property name"),
            "{bad_name}"
        );
        let bad_name = parse_env_file("=x", "f").expect_err("empty key");
        assert!(bad_name.starts_with("f:1: \"\" is not"), "{bad_name}");
    }

    #[test]
    fn the_command_line_overrides_the_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = dir.path().join("first.env");
        let second = dir.path().join("second.env");
        std::fs::write(&first, "A=from-first\nB=from-first\nC=from-first\n").expect("write");
        std::fs::write(&second, "B=from-second\nC=from-second\n").expect("write");
        let properties =
            collect(&[first, second], &["C=from-argv".to_string()], "--env").expect("collect");
        let got: Vec<(&str, &str)> = properties
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("A", "from-first"),
                ("B", "from-second"),
                ("C", "from-argv")
            ]
        );
    }

    #[test]
    fn unreadable_files_and_bad_pairs_are_usage_errors_naming_them() {
        let missing = collect(&["/nonexistent/app.env".into()], &[], "--env").expect_err("missing");
        assert!(
            missing.starts_with("--env-file /nonexistent/app.env: "),
            "{missing}"
        );
        let twice = collect(&["-".into(), "-".into()], &[], "--env").expect_err("stdin twice");
        assert!(twice.contains("standard input"), "{twice}");
        assert_eq!(
            collect(&[], &["NOEQUALS".to_string()], "--set"),
            Err("--set \"NOEQUALS\" is not KEY=VALUE".to_string())
        );
    }
}
