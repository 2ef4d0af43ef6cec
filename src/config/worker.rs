//! `[worker]`: the SQS daemon of a worker host, in the keys of Elastic Beanstalk's own
//! `/etc/aws-sqsd.d/default.yaml` with its defaults and ranges (the option names of
//! `aws:elasticbeanstalk:sqsd` beside them, which a bundle's `.ebextensions` may set over
//! the host's). The same table checks both. Pure.

use std::time::Duration;

use super::reader::Section;

/// The namespace of the daemon's options in option settings.
pub const SQSD_NAMESPACE: &str = "aws:elasticbeanstalk:sqsd";

/// A numeric option: seconds, a count of connections or of receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumericOption {
    /// The key in `[worker]` (and in `default.yaml`).
    pub key: &'static str,
    /// The option name in `aws:elasticbeanstalk:sqsd`.
    pub option: &'static str,
    pub default: u64,
    pub low: u64,
    pub high: u64,
}

const fn numeric(
    key: &'static str,
    option: &'static str,
    default: u64,
    range: (u64, u64),
) -> NumericOption {
    NumericOption {
        key,
        option,
        default,
        low: range.0,
        high: range.1,
    }
}

/// Elastic Beanstalk's table (`command-options-general.md`, `aws:elasticbeanstalk:sqsd`).
/// `InactivityTimeout` takes the option table's 299 s, not the console text's 180.
pub const NUMERIC: [NumericOption; 7] = [
    numeric("http_connections", "HttpConnections", 50, (1, 100)),
    numeric("connect_timeout", "ConnectTimeout", 5, (1, 60)),
    numeric("inactivity_timeout", "InactivityTimeout", 299, (1, 36_000)),
    numeric("visibility_timeout", "VisibilityTimeout", 300, (0, 43_200)),
    numeric(
        "error_visibility_timeout",
        "ErrorVisibilityTimeout",
        2,
        (0, 43_200),
    ),
    numeric(
        "retention_period",
        "RetentionPeriod",
        345_600,
        (60, 1_209_600),
    ),
    numeric("max_retries", "MaxRetries", 10, (1, 100)),
];

/// (key, option name, default) of the text options; `queue_url` has no default.
pub const TEXT: [(&str, &str, &str); 3] = [
    ("queue_url", "WorkerQueueURL", ""),
    ("http_path", "HttpPath", "/"),
    ("mime_type", "MimeType", "application/json"),
];

/// What the daemon runs with: the host's `[worker]`, or that with a release's settings over it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SqsdSettings {
    pub queue_url: String,
    pub http_path: String,
    pub mime_type: String,
    pub http_connections: u64,
    pub connect_timeout: u64,
    pub inactivity_timeout: u64,
    pub visibility_timeout: u64,
    pub error_visibility_timeout: u64,
    pub retention_period: u64,
    pub max_retries: u64,
}

impl SqsdSettings {
    /// Builds the settings from any source: `text(key)` and `number(option)` give the raw
    /// values a layer sets (`None`: the default). Every problem comes back, each with its key.
    pub fn build(
        mut text: impl FnMut(&'static str) -> Option<String>,
        mut number: impl FnMut(&NumericOption) -> Option<Result<u64, String>>,
    ) -> Result<Self, Vec<(&'static str, String)>> {
        let mut problems = Vec::new();
        let mut texts =
            TEXT.map(|(key, _, default)| text(key).unwrap_or_else(|| default.to_string()));
        for ((key, _, default), value) in TEXT.iter().zip(texts.iter_mut()) {
            if let Some(problem) = text_problem(key, value) {
                problems.push((*key, problem));
                *value = default.to_string();
            }
        }
        let numbers = NUMERIC.map(|option| match number(&option) {
            None => option.default,
            Some(Ok(n)) if (option.low..=option.high).contains(&n) => n,
            Some(Ok(n)) => {
                problems.push((option.key, range_problem(&option, &n.to_string())));
                option.default
            }
            Some(Err(found)) => {
                problems.push((option.key, range_problem(&option, &found)));
                option.default
            }
        });
        if !problems.is_empty() {
            return Err(problems);
        }
        let [queue_url, http_path, mime_type] = texts;
        let [
            http_connections,
            connect_timeout,
            inactivity_timeout,
            visibility_timeout,
            error_visibility_timeout,
            retention_period,
            max_retries,
        ] = numbers;
        Ok(Self {
            queue_url,
            http_path,
            mime_type,
            http_connections,
            connect_timeout,
            inactivity_timeout,
            visibility_timeout,
            error_visibility_timeout,
            retention_period,
            max_retries,
        })
    }

    /// `(option name, value)` of every option, as option settings show them.
    pub fn options(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![
            ("WorkerQueueURL", self.queue_url.clone()),
            ("HttpPath", self.http_path.clone()),
            ("MimeType", self.mime_type.clone()),
        ];
        for option in &NUMERIC {
            out.push((option.option, self.number(option.key).to_string()));
        }
        out
    }

    pub fn number(&self, key: &str) -> u64 {
        match key {
            "http_connections" => self.http_connections,
            "connect_timeout" => self.connect_timeout,
            "inactivity_timeout" => self.inactivity_timeout,
            "visibility_timeout" => self.visibility_timeout,
            "error_visibility_timeout" => self.error_visibility_timeout,
            "retention_period" => self.retention_period,
            _ => self.max_retries,
        }
    }

    /// The queue's name: the last segment of its URL (what `X-Aws-Sqsd-Queue` carries).
    pub fn queue_name(&self) -> &str {
        self.queue_url
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or(&self.queue_url)
    }

    /// What is legal but probably not meant, for the daemon's start event.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.inactivity_timeout >= self.visibility_timeout {
            out.push(format!(
                "inactivity_timeout ({} s) is not below visibility_timeout ({} s): a message whose request is still running becomes visible again and may run twice",
                self.inactivity_timeout, self.visibility_timeout
            ));
        }
        out
    }
}

/// Why a text option's value is not one, if it is not.
pub fn text_problem(key: &str, value: &str) -> Option<String> {
    let printable = !value.is_empty() && value.chars().all(|c| c.is_ascii_graphic());
    match key {
        "queue_url" if value.is_empty() => {
            Some("is required on a worker host (the SQS queue's URL)".into())
        }
        "queue_url"
            if !(printable
                && (value.starts_with("https://") || value.starts_with("http://"))
                && value
                    .trim_end_matches('/')
                    .rsplit('/')
                    .next()
                    .is_some_and(|name| !name.is_empty() && !name.contains(':'))) =>
        {
            Some(format!(
                "{value:?} is not an SQS queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)"
            ))
        }
        "http_path" if !(printable && value.starts_with('/')) => {
            Some(format!("{value:?} is not a URL path starting with '/'"))
        }
        "mime_type" if !printable || !value.contains('/') => Some(format!(
            "{value:?} is not a media type such as application/json"
        )),
        _ => None,
    }
}

pub fn range_problem(option: &NumericOption, found: &str) -> String {
    format!(
        "{found} is not a whole number from {} to {} ({SQSD_NAMESPACE}:{} has that range)",
        option.low, option.high, option.option
    )
}

/// `[worker]`: absent (or without `queue_url`), the host is a web server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerConfig {
    pub sqsd: Option<SqsdSettings>,
    /// How often the queue's depth is read (`GetQueueAttributes`).
    pub stats_interval: Duration,
    /// A message that waited longer than this in the queue before the daemon received it makes
    /// the host's health Warning: the app does not keep up.
    pub oldest_message_warning: Duration,
}

pub(super) fn worker(mut s: Section) -> WorkerConfig {
    let stats_interval = super::parse::positive(&mut s, "stats_interval", Duration::from_secs(30));
    let oldest_message_warning =
        super::parse::positive(&mut s, "oldest_message_warning", Duration::from_secs(600));
    let queue_url: Option<String> = s.optional("queue_url");
    let mut texts: Vec<(&str, Option<String>)> = vec![("queue_url", queue_url.clone())];
    for (key, _, _) in &TEXT[1..] {
        texts.push((key, s.optional(key)));
    }
    let mut numbers = Vec::new();
    for option in &NUMERIC {
        let raw: Option<i64> = s.optional(option.key);
        numbers.push((option.key, raw));
    }
    let built = SqsdSettings::build(
        |key| {
            texts
                .iter()
                .find(|(k, _)| *k == key)
                .and_then(|(_, v)| v.clone())
        },
        |option| {
            numbers
                .iter()
                .find(|(k, _)| *k == option.key)
                .and_then(|(_, v)| *v)
                .map(|n| u64::try_from(n).map_err(|_| n.to_string()))
        },
    );
    let sqsd = match (queue_url, built) {
        (None, Ok(_)) => None,
        (_, Ok(settings)) => Some(settings),
        (None, Err(problems)) | (Some(_), Err(problems)) => {
            for (key, problem) in problems {
                if key == "queue_url" && texts[0].1.is_none() {
                    continue;
                }
                s.problem(key, problem);
            }
            None
        }
    };
    s.finish();
    WorkerConfig {
        sqsd,
        stats_interval,
        oldest_message_warning,
    }
}

#[cfg(test)]
mod tests {
    use crate::config::parse_config;

    #[test]
    fn defaults_are_elastic_beanstalks() {
        let config =
            parse_config("[worker]\nqueue_url = \"http://127.0.0.1:5000/123456789012/jobs\"\n")
                .expect("valid");
        let sqsd = config.worker.sqsd.expect("a worker");
        assert_eq!(sqsd.http_path, "/");
        assert_eq!(sqsd.mime_type, "application/json");
        assert_eq!(
            (
                sqsd.http_connections,
                sqsd.connect_timeout,
                sqsd.inactivity_timeout
            ),
            (50, 5, 299)
        );
        assert_eq!(
            (
                sqsd.visibility_timeout,
                sqsd.error_visibility_timeout,
                sqsd.retention_period,
                sqsd.max_retries
            ),
            (300, 2, 345_600, 10)
        );
        assert_eq!(sqsd.queue_name(), "jobs");
        assert!(sqsd.warnings().is_empty());
    }

    #[test]
    fn no_queue_url_is_a_web_server() {
        assert_eq!(parse_config("").expect("valid").worker.sqsd, None);
        assert_eq!(
            parse_config("[worker]\nhttp_connections = 4\n")
                .expect("valid")
                .worker
                .sqsd,
            None
        );
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_key() {
        let text = "[worker]\nqueue_url = \"sqs\"\nhttp_path = \"jobs\"\nhttp_connections = 500\nretention_period = 10\nmax_retries = -1\nmime_type = \"\"\n";
        let problems = parse_config(text).expect_err("invalid");
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "worker.queue_url",
                "worker.http_path",
                "worker.mime_type",
                "worker.http_connections",
                "worker.retention_period",
                "worker.max_retries"
            ],
            "{problems:?}"
        );
        assert!(
            problems[3].message.contains("from 1 to 100"),
            "{}",
            problems[3].message
        );
    }

    #[test]
    fn an_inactivity_timeout_past_the_visibility_timeout_is_warned() {
        let config = parse_config("[worker]\nqueue_url = \"https://sqs.eu-west-1.amazonaws.com/1/q\"\ninactivity_timeout = 400\n").expect("valid");
        let warnings = config.worker.sqsd.expect("worker").warnings();
        assert!(warnings[0].contains("may run twice"), "{warnings:?}");
    }
}
