//! One received SQS message → what the daemon does with it: POST it (path, headers, body, as
//! Elastic Beanstalk's sqsd does), drop it past its retention, or refuse a body whose MD5 is
//! not the one SQS computed. Pure.

use std::collections::BTreeMap;

use md5::{Digest, Md5};

/// What the app sees in `User-Agent`; frameworks key on the `aws-sqsd/` prefix
/// (aws-sdk-rails' middleware handles a request only when it starts so).
pub const USER_AGENT: &str = concat!(
    "aws-sqsd/3.0.4 (hostmanager ",
    env!("CARGO_PKG_VERSION"),
    ")"
);

/// Attributes sqsd sets on a periodic task's message; never forwarded as headers.
pub const ATTRIBUTE_PREFIX: &str = "beanstalk.sqsd.";
pub const PATH_ATTRIBUTE: &str = "beanstalk.sqsd.path";
pub const TASK_ATTRIBUTE: &str = "beanstalk.sqsd.task_name";
pub const SCHEDULED_ATTRIBUTE: &str = "beanstalk.sqsd.scheduled_time";

/// A message as the SDK gave it, in plain types.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Received {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
    pub md5_of_body: Option<String>,
    /// System attributes (`ApproximateReceiveCount`, `SentTimestamp`, …), as strings.
    pub attributes: BTreeMap<String, String>,
    /// Message attributes: name → (data type, string value; `None` for binary).
    pub message_attributes: BTreeMap<String, (String, Option<String>)>,
}

impl Received {
    pub fn receive_count(&self) -> u64 {
        self.attributes
            .get("ApproximateReceiveCount")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1)
    }

    fn millis(&self, name: &str) -> Option<i64> {
        self.attributes.get(name).and_then(|v| v.parse().ok())
    }

    /// How long it waited in the queue before this receive, from `SentTimestamp`.
    pub fn age_ms(&self, now_ms: i64) -> Option<i64> {
        // Saturating: a timestamp far off (i64::MIN) must not overflow (found by fuzzing).
        self.millis("SentTimestamp")
            .map(|sent| now_ms.saturating_sub(sent).max(0))
    }
}

/// The request to make for a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// A periodic task's name, when it is one.
    pub task: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    Post(Delivery),
    /// Past `RetentionPeriod` since its first receive: deleted without a request.
    Expired {
        age_secs: i64,
    },
    /// The body is not what SQS sent: let it come back rather than run corrupt input.
    Corrupt {
        expected: String,
        found: String,
    },
}

/// The daemon's settings a message's plan depends on.
#[derive(Debug, Clone, Copy)]
pub struct PlanSettings<'a> {
    pub http_path: &'a str,
    pub mime_type: &'a str,
    pub queue_name: &'a str,
    pub retention_secs: u64,
}

pub fn plan(message: &Received, settings: PlanSettings<'_>, now_ms: i64) -> Plan {
    if let Some(expected) = &message.md5_of_body {
        let found = hex(&Md5::digest(message.body.as_bytes()));
        if !found.eq_ignore_ascii_case(expected) {
            return Plan::Corrupt {
                expected: expected.clone(),
                found,
            };
        }
    }
    // Measured from the first receive, not from SentTimestamp, as sqsd does.
    if let Some(first) = message.millis("ApproximateFirstReceiveTimestamp") {
        let age_ms = now_ms.saturating_sub(first);
        if age_ms > (settings.retention_secs as i64).saturating_mul(1000) {
            return Plan::Expired {
                age_secs: age_ms / 1000,
            };
        }
    }
    let string_attribute = |name: &str| {
        message
            .message_attributes
            .get(name)
            .and_then(|(kind, value)| {
                kind.starts_with("String")
                    .then_some(value.clone())
                    .flatten()
            })
    };
    // A periodic task: both attributes, and the POST goes to its url with an empty body.
    let scheduled = string_attribute(SCHEDULED_ATTRIBUTE);
    let task_path = string_attribute(PATH_ATTRIBUTE);
    let periodic = scheduled.as_ref().and(task_path.as_ref()).is_some();
    let path = match (&scheduled, &task_path) {
        (Some(_), Some(path)) => normalise_path(path),
        _ => settings.http_path.to_string(),
    };
    let mut headers = vec![
        ("Host".to_string(), "localhost".to_string()),
        ("User-Agent".to_string(), USER_AGENT.to_string()),
        ("Content-Type".to_string(), settings.mime_type.to_string()),
        ("X-Aws-Sqsd-Msgid".to_string(), message.message_id.clone()),
        (
            "X-Aws-Sqsd-Receive-Count".to_string(),
            message.receive_count().to_string(),
        ),
        (
            "X-Aws-Sqsd-Queue".to_string(),
            settings.queue_name.to_string(),
        ),
        ("X-Aws-Sqsd-Path".to_string(), path.clone()),
    ];
    for (attribute, header) in [
        (
            "ApproximateFirstReceiveTimestamp",
            "X-Aws-Sqsd-First-Received-At",
        ),
        ("SentTimestamp", "X-Aws-Sqsd-Sent-At"),
    ] {
        if let Some(at) = message.millis(attribute).and_then(iso_seconds) {
            headers.push((header.to_string(), at));
        }
    }
    if let Some(sender) = message.attributes.get("SenderId") {
        headers.push(("X-Aws-Sqsd-Sender-Id".to_string(), sender.clone()));
    }
    let mut task = None;
    if periodic {
        let name = string_attribute(TASK_ATTRIBUTE).unwrap_or_default();
        headers.push(("X-Aws-Sqsd-Taskname".to_string(), name.clone()));
        if let Some(at) = scheduled.as_deref().and_then(parse_ruby_time) {
            headers.push(("X-Aws-Sqsd-Scheduled-At".to_string(), at));
        }
        task = Some(name);
    }
    for (name, (kind, value)) in &message.message_attributes {
        let forwarded = (kind.starts_with("String") || kind.starts_with("Number"))
            && !name.starts_with(ATTRIBUTE_PREFIX)
            && is_header_token(name);
        if let (true, Some(value)) = (forwarded, value)
            && is_header_value(value)
        {
            headers.push((format!("X-Aws-Sqsd-Attr-{name}"), value.clone()));
        }
    }
    Plan::Post(Delivery {
        path,
        headers,
        body: if periodic {
            String::new()
        } else {
            message.body.clone()
        },
        task,
    })
}

/// sqsd joins the task's url onto `http://localhost/`: `backup` and `/backup` are one path.
fn normalise_path(path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    }
}

/// ISO-8601 UTC to the second (`2023-08-15T13:57:53Z`), as sqsd sends its dates.
fn iso_seconds(millis: i64) -> Option<String> {
    let at = jiff::Timestamp::from_millisecond(millis).ok()?;
    Some(at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// `2017-03-22 23:10:00 UTC` → `2017-03-22T23:10:00Z`.
fn parse_ruby_time(text: &str) -> Option<String> {
    let trimmed = text
        .trim()
        .trim_end_matches(" UTC")
        .trim_end_matches(" +0000");
    let at = jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M:%S", trimmed).ok()?;
    Some(at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// A name HTTP allows in a header (sqsd skips the others; nginx drops `.` names anyway).
fn is_header_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn is_header_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
#[path = "message_tests.rs"]
mod tests;
