//! Procfile and Buildfile parsing: `name: command` lines, as Elastic Beanstalk validates them
//! (`^[A-Za-z0-9_-]+:\s*[^\s].*$`). Pure; every error names its line.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcfileEntry {
    pub name: String,
    pub command: String,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub file: &'static str,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} line {}: {}", self.file, self.line, self.message)
    }
}

impl std::error::Error for LineError {}

/// Parses a Procfile: unique process names, at least one process.
pub fn parse_procfile(text: &str) -> Result<Vec<ProcfileEntry>, LineError> {
    let entries = parse_lines("Procfile", text)?;
    for (index, entry) in entries.iter().enumerate() {
        if let Some(first) = entries[..index].iter().find(|e| e.name == entry.name) {
            return Err(LineError {
                file: "Procfile",
                line: entry.line,
                message: format!(
                    "process {:?} is already defined on line {}",
                    entry.name, first.line
                ),
            });
        }
    }
    if entries.is_empty() {
        return Err(LineError {
            file: "Procfile",
            line: 1,
            message: "no processes defined (expected `web: <command>`)".into(),
        });
    }
    Ok(entries)
}

/// Parses a Buildfile: one-shot commands, run in order; names may repeat.
pub fn parse_buildfile(text: &str) -> Result<Vec<ProcfileEntry>, LineError> {
    parse_lines("Buildfile", text)
}

fn parse_lines(file: &'static str, text: &str) -> Result<Vec<ProcfileEntry>, LineError> {
    let mut entries = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        // Bundles zipped on Windows carry CRLF; the CR is not part of the command.
        let content = raw.strip_suffix('\r').unwrap_or(raw);
        if content.trim().is_empty() || content.trim_start().starts_with('#') {
            continue;
        }
        let error = |message: String| LineError {
            file,
            line,
            message,
        };
        let Some((name, command)) = content.split_once(':') else {
            return Err(error(format!("{content:?} is not `name: command`")));
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(error(format!(
                "process name {name:?} may only contain letters, digits, '_' and '-'"
            )));
        }
        let command = command.trim();
        if command.is_empty() {
            return Err(error(format!("process {name:?} has no command")));
        }
        entries.push(ProcfileEntry {
            name: name.to_string(),
            command: command.to_string(),
            line,
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_commands() {
        let text =
            "# comment\nweb: python3 app.py --port $PORT\r\n\nworker_1: ./worker: with colon\n";
        let entries = parse_procfile(text).expect("valid");
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].name, "web");
        assert_eq!(entries[0].command, "python3 app.py --port $PORT");
        assert_eq!(entries[1].command, "./worker: with colon");
        assert_eq!(entries[1].line, 4);
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            ("web: a\nbad line\n", 2, "not `name: command`"),
            ("web: a\nwe b: c\n", 2, "may only contain"),
            ("web:\n", 1, "has no command"),
            ("web: a\nweb: b\n", 2, "already defined on line 1"),
            ("\n# only comments\n", 1, "no processes"),
        ];
        for (text, line, words) in cases {
            let error = parse_procfile(text).expect_err(text);
            assert_eq!(error.line, line, "{text:?}");
            assert!(error.to_string().contains(words), "{error}");
            assert!(
                error
                    .to_string()
                    .starts_with(&format!("Procfile line {line}:")),
                "{error}"
            );
        }
    }

    #[test]
    fn buildfile_allows_repeated_names() {
        let entries = parse_buildfile("make: make a\nmake: make b\n").expect("valid");
        assert_eq!(entries.len(), 2);
    }
}
