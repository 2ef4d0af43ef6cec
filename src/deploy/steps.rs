//! Recording deployment steps: the record (persisted after every change), the
//! `var/log/hostmanager/deploy.log` line with its duration, and the step shown by status.

use std::io::Write;
use std::time::Duration;

use tokio::time::Instant;

use super::Engine;
use super::model::{DeploymentStatus, StepRecord, StepStatus};

/// Why a deployment stopped, with what an operator needs to see.
#[derive(Debug, Clone)]
pub struct StepFailure {
    pub step: String,
    pub message: String,
    /// Extra context for the event (command, exit status, output tail, …).
    pub details: serde_json::Value,
    /// The release had taken traffic and the previous one was restored.
    pub rolled_back: bool,
    /// The new web process exited because a port it binds was in use (its stderr said so).
    pub port_taken: bool,
}

impl StepFailure {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            step: String::new(),
            message: message.into(),
            details: serde_json::Value::Null,
            rolled_back: false,
            port_taken: false,
        }
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

impl<E: std::fmt::Display> From<E> for StepFailure {
    fn from(error: E) -> Self {
        Self::new(error.to_string())
    }
}

/// A stop in one step for the crash tests, which `kill -9` the agent there: from the
/// environment variable `HOSTMANAGER_TEST_PAUSE_AT`, `<step>` (after the step started, before
/// its work) or `<step>:done` (after its work succeeded, before the step ends). Read once at
/// start; unset (always, in production) it costs nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestPause {
    pub step: String,
    pub after_work: bool,
}

impl TestPause {
    pub const VAR: &'static str = "HOSTMANAGER_TEST_PAUSE_AT";

    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let (step, after_work) = match text.strip_suffix(":done") {
            Some(step) => (step, true),
            None => (text, false),
        };
        (!step.is_empty()).then(|| Self {
            step: step.to_string(),
            after_work,
        })
    }

    pub fn from_env() -> Option<Self> {
        std::env::var(Self::VAR)
            .ok()
            .as_deref()
            .and_then(Self::parse)
    }
}

pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

impl Engine {
    /// Runs one step: marks it running, then succeeded or failed with its duration.
    pub(super) async fn step<T>(
        &self,
        id: u64,
        name: &str,
        work: impl std::future::Future<Output = Result<T, StepFailure>>,
    ) -> Result<T, StepFailure> {
        self.begin_step(id, name);
        let started = Instant::now();
        self.test_pause(id, name, false).await;
        let outcome = work.await;
        if outcome.is_ok() {
            self.test_pause(id, name, true).await;
        }
        let elapsed = started.elapsed();
        match &outcome {
            Ok(_) => self.end_step(id, name, StepStatus::Succeeded, None, elapsed),
            Err(failure) => self.end_step(
                id,
                name,
                StepStatus::Failed,
                Some(failure.message.clone()),
                elapsed,
            ),
        }
        outcome.map_err(|mut failure| {
            failure.step = name.to_string();
            failure
        })
    }

    /// Never returns when `HOSTMANAGER_TEST_PAUSE_AT` names this point (see [`TestPause`]).
    async fn test_pause(&self, id: u64, name: &str, after_work: bool) {
        let Some(pause) = &self.test_pause else {
            return;
        };
        if pause.step != name || pause.after_work != after_work {
            return;
        }
        let when = if after_work { "after" } else { "before" };
        self.deploy_log(
            id,
            &format!("paused {when} the work of step {name} ({})", TestPause::VAR),
        );
        std::future::pending::<()>().await;
    }

    fn begin_step(&self, id: u64, name: &str) {
        self.update_record(id, |record| {
            record.status = DeploymentStatus::Running;
            record.steps.push(StepRecord {
                name: name.to_string(),
                status: StepStatus::Running,
                started_ms: now_ms(),
                duration_ms: None,
                message: None,
            });
        });
        self.publish_step(id, name);
        self.deploy_log(id, &format!("step {name} started"));
    }

    fn end_step(
        &self,
        id: u64,
        name: &str,
        status: StepStatus,
        message: Option<String>,
        elapsed: Duration,
    ) {
        let millis = elapsed.as_millis() as u64;
        self.update_record(id, |record| {
            if let Some(step) = record.steps.iter_mut().rev().find(|s| s.name == name) {
                step.status = status;
                step.duration_ms = Some(millis);
                step.message = message.clone();
            }
        });
        let outcome = match status {
            StepStatus::Succeeded => "succeeded".to_string(),
            _ => format!("FAILED: {}", message.unwrap_or_default()),
        };
        self.deploy_log(id, &format!("step {name} {outcome} ({millis} ms)"));
    }

    /// Appends one line to deploy.log; a failure to log never fails a deployment.
    pub(super) fn deploy_log(&self, id: u64, line: &str) {
        let path = self.paths.deploy_log();
        let stamp = jiff::Timestamp::now()
            .round(jiff::Unit::Millisecond)
            .unwrap_or_else(|_| jiff::Timestamp::now());
        let text = format!("{stamp} [deployment {id}] {line}\n");
        if let Ok(mut file) = crate::fsutil::open_append(&path) {
            let _ = file.write_all(text.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_pauses_name_a_step_and_when() {
        let before = TestPause::parse("flip").expect("a step");
        assert_eq!((before.step.as_str(), before.after_work), ("flip", false));
        let after = TestPause::parse("switch-traffic:done").expect("a step");
        assert_eq!(
            (after.step.as_str(), after.after_work),
            ("switch-traffic", true)
        );
        assert_eq!(TestPause::parse(""), None);
        assert_eq!(TestPause::parse(":done"), None);
    }
}
