//! Reads a TOML table key by key so that one pass reports EVERY problem at once: each key is
//! deserialised on its own (a type error in one key does not hide the next one), keys that are
//! left over are reported as unknown, and semantic checks add to the same list.
//!
//! Pure: works on an already parsed `toml::Table`.

use std::fmt;
use std::time::Duration;

use serde::de::DeserializeOwned;

/// The longest duration any key accepts. humantime reads "1000000000years", and
/// `Instant + Duration` panics on overflow: no timeout or interval needs more than a year.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// One thing wrong with the config, naming the dotted key at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Collects problems while sections read their keys.
#[derive(Debug, Default)]
pub struct Problems(Vec<Problem>);

impl Problems {
    pub fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }

    pub fn into_vec(self) -> Vec<Problem> {
        self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A view of one table (the document or a `[section]`) that hands out its keys one at a time.
#[derive(Debug)]
pub struct Section<'p> {
    prefix: String,
    table: toml::Table,
    problems: &'p mut Problems,
}

impl<'p> Section<'p> {
    pub fn root(table: toml::Table, problems: &'p mut Problems) -> Self {
        Self {
            prefix: String::new(),
            table,
            problems,
        }
    }

    fn key_path(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.prefix)
        }
    }

    /// Reports a problem with `key` of this section.
    pub fn problem(&mut self, key: &str, message: impl Into<String>) {
        let path = self.key_path(key);
        self.problems.add(path, message);
    }

    /// Takes `key` and deserialises it; a wrong type is recorded and `default` is used.
    pub fn get<T: DeserializeOwned>(&mut self, key: &str, default: T) -> T {
        self.optional(key).unwrap_or(default)
    }

    /// Takes `key` if present; a wrong type is recorded and yields `None`.
    pub fn optional<T: DeserializeOwned>(&mut self, key: &str) -> Option<T> {
        let value = self.table.remove(key)?;
        match value.clone().try_into::<T>() {
            Ok(parsed) => Some(parsed),
            Err(error) => {
                let found = value.type_str();
                let detail = first_line(&error.to_string());
                self.problem(key, format!("wrong type (found {found}): {detail}"));
                None
            }
        }
    }

    /// A duration written the human way ("500ms", "10s", "2m"), at most [`MAX_DURATION`].
    pub fn duration(&mut self, key: &str, default: Duration) -> Duration {
        let Some(text) = self.optional::<String>(key) else {
            return default;
        };
        match humantime::parse_duration(&text) {
            Ok(duration) if duration > MAX_DURATION => {
                self.problem(
                    key,
                    format!("{text:?} is longer than the longest duration accepted, 365 days"),
                );
                default
            }
            Ok(duration) => duration,
            Err(error) => {
                self.problem(
                    key,
                    format!("{text:?} is not a duration like \"10s\" or \"2m\": {error}"),
                );
                default
            }
        }
    }

    /// A sub-table; absent means empty (every key takes its default).
    pub fn section(&mut self, key: &str) -> Section<'_> {
        let prefix = self.key_path(key);
        let table = match self.table.remove(key) {
            Some(toml::Value::Table(table)) => table,
            Some(other) => {
                self.problems.add(
                    prefix.clone(),
                    format!("must be a table, found {}", other.type_str()),
                );
                toml::Table::new()
            }
            None => toml::Table::new(),
        };
        Section {
            prefix,
            table,
            problems: self.problems,
        }
    }

    /// The keys not taken yet, for tables whose keys are names (e.g. one per process).
    pub fn keys(&self) -> Vec<String> {
        self.table.keys().cloned().collect()
    }

    /// Reports every key nobody asked for. Call after the last `get`.
    pub fn finish(self) {
        for key in self.table.keys() {
            let path = if self.prefix.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", self.prefix)
            };
            self.problems.add(path, "unknown key");
        }
    }
}

fn first_line(text: &str) -> String {
    text.lines()
        .find(|line| !line.trim().is_empty())
        .unwrap_or(text)
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> toml::Table {
        text.parse().expect("test TOML parses")
    }

    #[test]
    fn wrong_types_and_unknown_keys_are_all_reported() {
        let mut problems = Problems::default();
        let mut root = Section::root(
            parse("[a]\nport = \"x\"\nname = 3\nextra = 1\n[zzz]\n"),
            &mut problems,
        );
        let mut a = root.section("a");
        assert_eq!(a.get("port", 80u16), 80);
        assert_eq!(a.get("name", String::from("d")), "d");
        a.finish();
        root.finish();
        let keys: Vec<_> = problems.into_vec().into_iter().map(|p| p.key).collect();
        assert_eq!(keys, ["a.port", "a.name", "a.extra", "zzz"]);
    }

    #[test]
    fn durations_are_human() {
        let mut problems = Problems::default();
        let mut root = Section::root(parse("t = \"250ms\"\nbad = \"soon\""), &mut problems);
        assert_eq!(
            root.duration("t", Duration::ZERO),
            Duration::from_millis(250)
        );
        assert_eq!(
            root.duration("bad", Duration::from_secs(1)),
            Duration::from_secs(1)
        );
        assert_eq!(
            root.duration("absent", Duration::from_secs(2)),
            Duration::from_secs(2)
        );
        root.finish();
        let problems = problems.into_vec();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].key, "bad");
    }

    #[test]
    fn absurd_durations_are_refused_naming_their_key() {
        let mut problems = Problems::default();
        let mut root = Section::root(
            parse("huge = \"1000000000years\"\nyear = \"365days\""),
            &mut problems,
        );
        let default = Duration::from_secs(60);
        assert_eq!(root.duration("huge", default), default);
        assert_eq!(root.duration("year", default), MAX_DURATION);
        root.finish();
        let problems = problems.into_vec();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "huge");
        assert!(problems[0].message.contains("365 days"), "{problems:?}");
    }
}
