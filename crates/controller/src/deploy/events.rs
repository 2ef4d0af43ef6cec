//! The events a deployment step emits, in Elastic Beanstalk's words.

use super::EVENT_SOURCE;
use crate::model::{Deployment, DeploymentKind, DeploymentStatus, EventSeverity, Millis, NewEvent};

use super::StepOutcome;

pub(super) const ABORTED_NOTE: &str = "During an aborted deployment, some instances may have deployed the new application version. To ensure all instances are running the same version, re-deploy the appropriate application version.";

/// Collects a step's events, all stamped with the deployment and the step's time.
pub(super) struct Emitter {
    environment: String,
    deployment_id: i64,
    now_ms: Millis,
    events: Vec<NewEvent>,
}

impl Emitter {
    pub(super) fn new(deployment: &Deployment, now_ms: Millis) -> Self {
        Self {
            environment: deployment.environment.clone(),
            deployment_id: deployment.id,
            now_ms,
            events: Vec::new(),
        }
    }

    pub(super) fn push(
        &mut self,
        instance_id: Option<&str>,
        severity: EventSeverity,
        message: &str,
    ) {
        self.events.push(NewEvent {
            environment: self.environment.clone(),
            instance_id: instance_id.map(str::to_string),
            source_id: None,
            time_ms: self.now_ms,
            severity,
            source: EVENT_SOURCE.to_string(),
            message: message.to_string(),
            deployment_id: Some(self.deployment_id),
        });
    }

    pub(super) fn info(&mut self, message: &str) {
        self.push(None, EventSeverity::Info, message);
    }

    pub(super) fn warn(&mut self, message: &str) {
        self.push(None, EventSeverity::Warn, message);
    }

    pub(super) fn error(&mut self, message: &str) {
        self.push(None, EventSeverity::Error, message);
    }

    /// The deployment to step and its emitter, the first step marking it InProgress with its
    /// first events; `None` for a finished deployment, which no step changes.
    pub(super) fn begin(deployment: &Deployment, now_ms: Millis) -> Option<(Deployment, Self)> {
        if deployment.status.is_finished() {
            return None;
        }
        let mut d = deployment.clone();
        let mut out = Self::new(&d, now_ms);
        if d.status == DeploymentStatus::Pending {
            d.status = DeploymentStatus::InProgress;
            out.starting(d.kind);
        }
        Some((d, out))
    }

    /// The first events of a deployment.
    pub(super) fn starting(&mut self, kind: DeploymentKind) {
        match kind {
            DeploymentKind::Deploy | DeploymentKind::Rollback => {
                self.info("Environment update is starting.");
                self.info("Deploying new version to instance(s).");
            }
            // EB names its restart events after the API action.
            DeploymentKind::Restart => self.info("restartAppServer is starting."),
        }
    }

    /// The last events of a successful deployment.
    pub(super) fn succeeded(&mut self, kind: DeploymentKind) {
        match kind {
            DeploymentKind::Deploy | DeploymentKind::Rollback => {
                self.info("New application version was deployed to running EC2 instances.");
                self.info("Environment update completed successfully.");
            }
            DeploymentKind::Restart => self.info("restartAppServer completed successfully."),
        }
    }

    /// The last events of a failed deployment, after `message` (why it aborted).
    pub(super) fn failed(&mut self, kind: DeploymentKind, message: &str) {
        self.error(message);
        if kind.is_deploy() {
            self.error("Failed to deploy application.");
            self.error(ABORTED_NOTE);
        }
    }

    pub(super) fn finish(
        self,
        deployment: Deployment,
        commands: Vec<(String, String)>,
    ) -> StepOutcome {
        self.finish_with(deployment, commands, 0, Vec::new())
    }

    /// `finish`, with the hosts to launch and to release.
    pub(super) fn finish_with(
        self,
        deployment: Deployment,
        commands: Vec<(String, String)>,
        launch: usize,
        mut release: Vec<String>,
    ) -> StepOutcome {
        release.sort_unstable();
        release.dedup();
        StepOutcome {
            deployment,
            events: self.events,
            commands,
            launch,
            release,
        }
    }
}
