//! `cron.yaml`: the periodic tasks of a worker bundle, read as Elastic Beanstalk's sqsd reads
//! them (`version: 1`, `cron:` entries with `name`, `url`, `schedule`; extra keys ignored; a
//! later entry with the same name replaces the earlier one), with every problem reported at
//! once, each with its line. Schedules: five fields in UTC, `*`, `*/n`, `a`, `a-b`, `a-b/n`,
//! lists, month and day names, Sunday 0 or 7, either day field matching when both are set,
//! `@hourly`…`@yearly`; a sixth field is ignored with a warning (sqsd does, so `*/30 * * * * *`
//! means every 30 minutes); `@reboot`, `L`, `W`, `#`, `?` are refused. Pure.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_saphyr::Spanned;

/// The file sqsd reads from the release's root.
pub const FILE: &str = "cron.yaml";

/// The body of every periodic task's message (Elastic Beanstalk's).
pub const MESSAGE_BODY: &str = "elasticbeanstalk scheduled job";

/// One task, as validated at deploy time and kept with the release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeriodicTask {
    pub name: String,
    /// The path its message is POSTed to.
    pub url: String,
    /// As written in the file.
    pub schedule: String,
}

impl PeriodicTask {
    /// The parsed schedule (validated when the task was read, so this does not fail then).
    pub fn cron(&self) -> Result<croner::Cron, String> {
        parse_schedule(&self.schedule).map(|(cron, _)| cron)
    }
}

/// What the file holds: tasks in file order, and what was accepted with a warning.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CronFile {
    pub tasks: Vec<PeriodicTask>,
    pub warnings: Vec<String>,
}

#[derive(Deserialize)]
struct Raw {
    version: Option<Spanned<Value>>,
    cron: Option<Spanned<Value>>,
}

#[derive(Deserialize)]
struct RawEntry {
    name: Option<Spanned<Value>>,
    url: Option<Spanned<Value>>,
    schedule: Option<Spanned<Value>>,
}

/// Parses and checks the whole file; `Err` lists every problem, each `cron.yaml line N: …`.
pub fn parse(text: &str) -> Result<CronFile, Vec<String>> {
    if text.trim().is_empty() {
        return Err(vec![format!(
            "{FILE}: Failed of parsing file '{FILE}', because: the file is empty"
        )]);
    }
    let raw: Raw = serde_saphyr::from_str(text).map_err(|error| {
        vec![format!(
            "{FILE}: Failed of parsing file '{FILE}', because: {}",
            first_line(&error.to_string())
        )]
    })?;
    let mut problems = Vec::new();
    match &raw.version {
        None => problems.push(format!(
            "{FILE}: Cannot find 'version' attribute: the file must start with version: 1"
        )),
        Some(version) if !is_one(&version.value) => problems.push(format!(
            "{FILE} line {}: Not supported version {}: only version 1 is",
            version.referenced.line(),
            scalar(&version.value).unwrap_or_else(|| version.value.to_string())
        )),
        Some(_) => {}
    }
    let mut out = CronFile::default();
    let entries: Vec<Spanned<RawEntry>> = match raw.cron {
        None => {
            problems.push(format!(
                "{FILE}: Failed of parsing file '{FILE}', because: there is no cron: list of tasks"
            ));
            Vec::new()
        }
        Some(cron) => match cron.value {
            Value::Array(_) => reparse_entries(text)
                .map_err(|e| problems.push(e))
                .unwrap_or_default(),
            _ => {
                problems.push(format!("{FILE} line {}: cron: must be a list of tasks (- name: …, url: …, schedule: …)", cron.referenced.line()));
                Vec::new()
            }
        },
    };
    for (index, entry) in entries.iter().enumerate() {
        let line = entry.referenced.line();
        let at = format!("{FILE} line {line}: task {}", index + 1);
        let field = |value: &Option<Spanned<Value>>,
                     name: &str,
                     problems: &mut Vec<String>|
         -> Option<(String, u64)> {
            match value {
                None => {
                    problems.push(format!(
                        "{at}: Failed of parsing file '{FILE}', because: {name} is missing"
                    ));
                    None
                }
                Some(v) => match scalar(&v.value) {
                    Some(text) if !text.trim().is_empty() => Some((text, v.referenced.line())),
                    _ => {
                        problems.push(format!(
                            "{FILE} line {}: task {}: {name} must be a non-empty string",
                            v.referenced.line(),
                            index + 1
                        ));
                        None
                    }
                },
            }
        };
        let name = field(&entry.value.name, "name", &mut problems);
        let url = field(&entry.value.url, "url", &mut problems);
        let schedule = field(&entry.value.schedule, "schedule", &mut problems);
        if let Some((url, line)) = &url
            && let Some(problem) = url_problem(url)
        {
            problems.push(format!(
                "{FILE} line {line}: task {}: url {url:?} {problem}",
                index + 1
            ));
        }
        if let Some((schedule, line)) = &schedule {
            match parse_schedule(schedule) {
                Ok((_, Some(warning))) => {
                    out.warnings.push(format!("{FILE} line {line}: {warning}"))
                }
                Ok(_) => {}
                Err(problem) => problems.push(format!(
                    "{FILE} line {line}: task {}: schedule {schedule:?}: {problem}",
                    index + 1
                )),
            }
        }
        if let (Some((name, _)), Some((url, _)), Some((schedule, _))) = (name, url, schedule) {
            if let Some(earlier) = out.tasks.iter().position(|t| t.name == name) {
                out.warnings.push(format!("{FILE} line {line}: task {name:?} is defined again: this entry replaces the earlier one (as on Elastic Beanstalk)"));
                out.tasks.remove(earlier);
            }
            out.tasks.push(PeriodicTask {
                name,
                url,
                schedule,
            });
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// The entries again, typed, with their own lines (the first pass kept `cron:` as a value).
fn reparse_entries(text: &str) -> Result<Vec<Spanned<RawEntry>>, String> {
    #[derive(Deserialize)]
    struct Entries {
        cron: Vec<Spanned<RawEntry>>,
    }
    serde_saphyr::from_str::<Entries>(text).map(|e| e.cron).map_err(|error| {
        format!("{FILE}: Failed of parsing file '{FILE}', because: each task must be a mapping with name, url and schedule ({})", first_line(&error.to_string()))
    })
}

fn is_one(value: &Value) -> bool {
    match value {
        Value::Number(n) => n.as_u64() == Some(1),
        Value::String(s) => s.trim() == "1",
        _ => false,
    }
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or(text).to_string()
}

/// sqsd joins the url onto `http://localhost/`: a path (query allowed), nothing that could
/// leave the host or break the request line.
fn url_problem(url: &str) -> Option<&'static str> {
    if url.contains("://") || url.starts_with("//") {
        return Some("must be a path on this host, not a URL to elsewhere");
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("must not contain spaces or control characters");
    }
    None
}

const ALIASES: [(&str, &str); 7] = [
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
const FIELDS: [&str; 5] = ["minute", "hour", "day of month", "month", "day of week"];

/// The schedule, with a warning when a sixth field was ignored; `Err` says what is wrong.
pub fn parse_schedule(schedule: &str) -> Result<(croner::Cron, Option<String>), String> {
    let trimmed = schedule.trim();
    let mut warning = None;
    let five = if trimmed.starts_with('@') {
        let lower = trimmed.to_ascii_lowercase();
        if lower == "@reboot" {
            return Err("@reboot is not supported (there is no boot of a queue)".into());
        }
        ALIASES
            .iter()
            .find(|(alias, _)| *alias == lower)
            .map(|(_, five)| five.to_string())
            .ok_or_else(|| format!("{trimmed} is not one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly"))?
    } else {
        let fields: Vec<&str> = trimmed.split_whitespace().collect();
        match fields.len() {
            5 => {}
            6 => {
                warning = Some(format!(
                    "schedule {trimmed:?} has a sixth field {:?}, ignored as Elastic Beanstalk ignores it: the first five are minute, hour, day of month, month, day of week (there are no seconds)",
                    fields[5]
                ));
            }
            n => {
                return Err(format!(
                    "has {n} fields; a schedule has five: minute hour day-of-month month day-of-week (UTC)"
                ));
            }
        }
        for (field, name) in fields.iter().zip(FIELDS) {
            check_field(field, name)?;
        }
        fields[..5].join(" ")
    };
    let cron = croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Disallowed)
        .year(croner::parser::Year::Disallowed)
        .build()
        .parse(&five)
        .map_err(|e| e.to_string())?;
    Ok((cron, warning))
}

/// Only what sqsd's parser accepts: `*`, numbers, the field's names, `,` `-` `/` between them,
/// and a step only after `*` or a range.
fn check_field(field: &str, name: &str) -> Result<(), String> {
    let names: &[&str] = match name {
        "month" => &MONTHS,
        "day of week" => &DAYS,
        _ => &[],
    };
    for part in field.split(',') {
        let (base, step) = match part.split_once('/') {
            Some((base, step)) => (base, Some(step)),
            None => (part, None),
        };
        if let Some(step) = step
            && (step.is_empty() || !step.chars().all(|c| c.is_ascii_digit()))
        {
            return Err(format!(
                "{name} field {field:?}: the step after '/' must be a number"
            ));
        }
        if step.is_some() && base != "*" && !base.contains('-') {
            return Err(format!(
                "{name} field {field:?}: a step needs * or a range before it (use {base}-…/…)"
            ));
        }
        if base == "*" {
            continue;
        }
        for atom in base.split('-') {
            let known = atom.chars().all(|c| c.is_ascii_digit()) && !atom.is_empty()
                || names.contains(&atom.to_ascii_uppercase().as_str());
            if !known {
                return Err(format!(
                    "{name} field {field:?}: {atom:?} is not a number{} (L, W, #, ? and the like are not supported)",
                    if names.is_empty() { "" } else { " or a name" }
                ));
            }
        }
    }
    Ok(())
}

/// The run to send now, if any: the latest time the schedule fired at or before `now`, after
/// the last one sent, and no older than `grace` (a run missed while the agent was down is sent
/// late within the window, once; older ones are skipped).
pub fn due(
    cron: &croner::Cron,
    last_sent: jiff::Timestamp,
    now: jiff::Timestamp,
    grace: jiff::SignedDuration,
) -> Option<jiff::Timestamp> {
    let zoned = now.to_zoned(jiff::tz::TimeZone::UTC);
    let latest = cron
        .find_previous_occurrence(&zoned, true)
        .ok()?
        .timestamp();
    (latest > last_sent && latest >= now - grace).then_some(latest)
}

/// The next time the schedule fires after `after`.
pub fn next_after(cron: &croner::Cron, after: jiff::Timestamp) -> Option<jiff::Timestamp> {
    let zoned = after.to_zoned(jiff::tz::TimeZone::UTC);
    cron.find_next_occurrence(&zoned, false)
        .ok()
        .map(|z| z.timestamp())
}

/// Ruby's `Time#to_s` in UTC, which sqsd writes in `beanstalk.sqsd.scheduled_time`
/// (`2017-03-22 23:10:00 UTC`).
pub fn scheduled_time_attribute(at: jiff::Timestamp) -> String {
    at.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

#[cfg(test)]
#[path = "cron_tests.rs"]
mod tests;
