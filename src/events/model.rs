//! What an event is and how a query selects events. Pure.

use serde::Deserialize;

pub use hostmanager_protocol::{Event, Severity};

/// An event as a producer hands it over; the journal gives it an id and a time.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub severity: Severity,
    pub source: &'static str,
    pub message: String,
    pub deployment_id: Option<u64>,
    pub details: serde_json::Value,
}

impl NewEvent {
    pub fn new(severity: Severity, source: &'static str, message: impl Into<String>) -> Self {
        Self {
            severity,
            source,
            message: message.into(),
            deployment_id: None,
            details: serde_json::Value::Null,
        }
    }

    pub fn deployment(mut self, id: u64) -> Self {
        self.deployment_id = Some(id);
        self
    }

    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

/// Which events a reader wants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct EventQuery {
    /// Only events with an id greater than this.
    pub after: Option<u64>,
    /// Only events at or after this time (milliseconds since the epoch).
    pub since_ms: Option<i64>,
    /// Only events at least this severe.
    pub severity: Option<Severity>,
    pub deployment_id: Option<u64>,
    /// At most this many, the newest ones.
    pub limit: Option<usize>,
}

impl EventQuery {
    pub fn matches(&self, event: &Event) -> bool {
        self.after.is_none_or(|after| event.id > after)
            && self.since_ms.is_none_or(|since| event.time_ms >= since)
            && self.severity.is_none_or(|min| event.severity >= min)
            && self
                .deployment_id
                .is_none_or(|id| event.deployment_id == Some(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: u64, severity: Severity) -> Event {
        Event {
            id,
            time: String::new(),
            time_ms: id as i64 * 1000,
            severity,
            source: "test".into(),
            message: String::new(),
            deployment_id: Some(id % 2),
            details: serde_json::Value::Null,
        }
    }

    #[test]
    fn query_filters_combine() {
        let query = EventQuery {
            after: Some(1),
            severity: Some(Severity::Warning),
            ..Default::default()
        };
        assert!(!query.matches(&event(1, Severity::Error)));
        assert!(!query.matches(&event(2, Severity::Info)));
        assert!(query.matches(&event(3, Severity::Warning)));
        let query = EventQuery {
            since_ms: Some(3000),
            deployment_id: Some(1),
            ..Default::default()
        };
        assert!(!query.matches(&event(2, Severity::Info)));
        assert!(query.matches(&event(3, Severity::Info)));
        assert!(!query.matches(&event(4, Severity::Info)));
    }

    #[test]
    fn severity_words() {
        assert_eq!(Severity::parse("WARN"), Some(Severity::Warning));
        assert_eq!(Severity::parse("severe"), Some(Severity::Error));
        assert_eq!(Severity::parse("loud"), None);
    }
}
