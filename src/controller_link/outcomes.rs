//! How the deployments the controller asked for ended. A desired state or a command is
//! accepted in one round trip, but its deployment ends minutes later: the link remembers what
//! it waits for (`Awaiting`, persisted with the link state) and, at every round trip, turns the
//! finished ones into results that are resent until acknowledged. Pure.

use serde::{Deserialize, Serialize};

use super::protocol::{CommandResult, DesiredResult, LinkState, Outcome};
use crate::deploy::{DeploymentRecord, DeploymentStatus, StepStatus};

/// A deployment whose end the controller is to hear about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "for", rename_all = "snake_case")]
pub enum Awaiting {
    Desired { serial: u64, deployment_id: u64 },
    Command { id: String, deployment_id: u64 },
}

impl Awaiting {
    fn deployment_id(&self) -> u64 {
        match self {
            Self::Desired { deployment_id, .. } | Self::Command { deployment_id, .. } => {
                *deployment_id
            }
        }
    }
}

/// How a finished deployment ended: the outcome, the step that failed and the record's error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub outcome: Outcome,
    pub step: Option<String>,
    pub message: Option<String>,
    pub finished_ms: Option<i64>,
}

/// `None` while the deployment is queued or running.
pub fn ended(record: &DeploymentRecord) -> Option<Ended> {
    let outcome = match record.status {
        DeploymentStatus::Queued | DeploymentStatus::Running => return None,
        DeploymentStatus::Succeeded => Outcome::Succeeded,
        DeploymentStatus::Noop => Outcome::Noop,
        DeploymentStatus::Failed => Outcome::Failed,
        DeploymentStatus::RolledBack => Outcome::RolledBack,
    };
    // The first failed step is the cause; a rolled-back deployment's later rollback steps
    // are its consequences.
    let step = (!outcome.is_success())
        .then(|| {
            record
                .steps
                .iter()
                .find(|s| s.status == StepStatus::Failed)
                .map(|s| s.name.clone())
        })
        .flatten();
    Some(Ended {
        outcome,
        step,
        message: (!outcome.is_success())
            .then(|| record.message.clone())
            .flatten(),
        finished_ms: record.finished_ms,
    })
}

/// What a record that vanished while awaited counts as: the controller must not wait forever.
fn vanished() -> Ended {
    Ended {
        outcome: Outcome::Failed,
        step: None,
        message: Some("the deployment record is gone".into()),
        finished_ms: None,
    }
}

/// The result of a desired state the agent refused (an invalid document).
pub fn refused(serial: u64, message: String, now_ms: i64) -> DesiredResult {
    DesiredResult {
        serial,
        deployment_id: None,
        outcome: Outcome::Refused,
        step: None,
        message: Some(message),
        finished_ms: now_ms,
    }
}

impl LinkState {
    /// Moves every awaited deployment that finished into the results to send. `record` looks a
    /// deployment up. Returns whether anything changed (so the state is saved).
    pub fn collect_finished(
        &mut self,
        record: impl Fn(u64) -> Option<DeploymentRecord>,
        now_ms: i64,
    ) -> bool {
        let before = self.awaiting.len();
        let mut still = Vec::new();
        for awaiting in std::mem::take(&mut self.awaiting) {
            let end = match record(awaiting.deployment_id()) {
                Some(record) => ended(&record),
                None => Some(vanished()),
            };
            let Some(end) = end else {
                still.push(awaiting);
                continue;
            };
            let finished_ms = end.finished_ms.unwrap_or(now_ms);
            match awaiting {
                Awaiting::Desired {
                    serial,
                    deployment_id,
                } => {
                    self.desired_results.retain(|r| r.serial != serial);
                    self.desired_results.push(DesiredResult {
                        serial,
                        deployment_id: Some(deployment_id),
                        outcome: end.outcome,
                        step: end.step,
                        message: end.message,
                        finished_ms,
                    });
                }
                Awaiting::Command { id, deployment_id } => {
                    // The same id went up once when accepted; this one carries the outcome.
                    self.pending_results.retain(|r| r.id != id);
                    self.pending_results.push(CommandResult {
                        id,
                        accepted: true,
                        deployment_id: Some(deployment_id),
                        error: end.message,
                        outcome: Some(end.outcome),
                    });
                }
            }
        }
        self.awaiting = still;
        self.awaiting.len() != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::{JobKind, StepRecord};

    fn record(id: u64, status: DeploymentStatus, steps: &[(&str, StepStatus)]) -> DeploymentRecord {
        DeploymentRecord {
            id,
            kind: JobKind::Deploy,
            version_label: "v1".into(),
            source: "/b.zip".into(),
            sha256: None,
            env_keys: Vec::new(),
            status,
            steps: steps
                .iter()
                .map(|(name, status)| StepRecord {
                    name: name.to_string(),
                    status: *status,
                    started_ms: 0,
                    duration_ms: None,
                    message: None,
                })
                .collect(),
            created_ms: 0,
            finished_ms: status.is_finished().then_some(1_000),
            web_port: None,
            web_listening: None,
            message: (status == DeploymentStatus::Failed || status == DeploymentStatus::RolledBack)
                .then(|| "health-gate: connection refused".into()),
            proxy_translations: Vec::new(),
            serial: None,
            platform_options: Default::default(),
            command_leader: None,
            host_changes: Vec::new(),
        }
    }

    #[test]
    fn outcomes_map_from_the_record_status_with_the_first_failed_step() {
        use DeploymentStatus as S;
        use StepStatus::{Failed, Succeeded};
        assert_eq!(ended(&record(1, S::Running, &[])), None);
        assert_eq!(ended(&record(1, S::Queued, &[])), None);
        let ok = ended(&record(1, S::Succeeded, &[("fetch", Succeeded)])).expect("ended");
        assert_eq!(
            (ok.outcome, ok.step, ok.message),
            (Outcome::Succeeded, None, None)
        );
        assert_eq!(ok.finished_ms, Some(1_000));
        assert_eq!(
            ended(&record(1, S::Noop, &[])).map(|e| e.outcome),
            Some(Outcome::Noop)
        );
        let failed = ended(&record(
            1,
            S::Failed,
            &[("fetch", Succeeded), ("health-gate", Failed)],
        ))
        .expect("ended");
        assert_eq!(failed.outcome, Outcome::Failed);
        assert_eq!(failed.step.as_deref(), Some("health-gate"));
        assert_eq!(
            failed.message.as_deref(),
            Some("health-gate: connection refused")
        );
        let back = ended(&record(
            1,
            S::RolledBack,
            &[("postdeploy", Failed), ("rollback-flip", Failed)],
        ))
        .expect("ended");
        assert_eq!(
            (back.outcome, back.step.as_deref()),
            (Outcome::RolledBack, Some("postdeploy"))
        );
    }

    #[test]
    fn finished_deployments_become_results_and_running_ones_wait() {
        let mut state = LinkState {
            awaiting: vec![
                Awaiting::Desired {
                    serial: 4,
                    deployment_id: 10,
                },
                Awaiting::Desired {
                    serial: 5,
                    deployment_id: 11,
                },
                Awaiting::Command {
                    id: "c1".into(),
                    deployment_id: 12,
                },
                Awaiting::Desired {
                    serial: 6,
                    deployment_id: 99,
                },
            ],
            ..Default::default()
        };
        state.pending_results.push(CommandResult {
            id: "c1".into(),
            accepted: true,
            deployment_id: Some(12),
            error: None,
            outcome: None,
        });
        let lookup = |id: u64| match id {
            10 => Some(record(10, DeploymentStatus::Succeeded, &[])),
            11 => Some(record(11, DeploymentStatus::Running, &[])),
            12 => Some(record(
                12,
                DeploymentStatus::Failed,
                &[("start-web", StepStatus::Failed)],
            )),
            _ => None,
        };
        assert!(state.collect_finished(lookup, 5_000));
        assert_eq!(
            state.awaiting,
            [Awaiting::Desired {
                serial: 5,
                deployment_id: 11
            }]
        );
        let outcomes: Vec<_> = state
            .desired_results
            .iter()
            .map(|r| (r.serial, r.outcome, r.finished_ms))
            .collect();
        assert_eq!(
            outcomes,
            [(4, Outcome::Succeeded, 1_000), (6, Outcome::Failed, 5_000)]
        );
        assert_eq!(state.pending_results.len(), 1, "replaced, not added");
        assert_eq!(state.pending_results[0].outcome, Some(Outcome::Failed));
        assert!(!state.collect_finished(lookup, 6_000), "nothing new");
        let ack = crate::controller_link::ReportReply {
            desired_results_ack: vec![4],
            ..Default::default()
        };
        state.acknowledge(&ack, 0);
        assert_eq!(
            state
                .desired_results
                .iter()
                .map(|r| r.serial)
                .collect::<Vec<_>>(),
            [6]
        );
    }
}
