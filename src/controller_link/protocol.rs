//! The agent ↔ controller protocol: one HTTPS round trip per interval, initiated by the agent
//! (so hosts behind NAT or strict ingress work). The agent sends its status, the events the
//! controller has not acknowledged and the results of commands; the controller answers with
//! acknowledgements, the desired state and commands. Pure: documents and decisions only.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

pub use hostmanager_protocol::{
    Command, CommandKind, CommandResult, DesiredResult, DesiredState, MAX_EVENTS_PER_REPORT,
    Outcome, ReportReply,
};

use crate::local_api::StatusReport;

/// The report as the agent sends it: its whole local status (the controller reads the part it
/// needs, `hostmanager_protocol::HostStatus`).
pub type Report = hostmanager_protocol::Report<StatusReport>;

/// Command ids remembered so that a command sent twice runs once.
pub const REMEMBERED_COMMANDS: usize = 1000;

/// What survives agent restarts (`var/lib/hostmanager/controller.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LinkState {
    /// Last event id the controller acknowledged.
    pub events_cursor: u64,
    pub applied_serial: u64,
    /// Ids of commands already run, newest last.
    pub seen_commands: VecDeque<String>,
    /// Results not yet acknowledged by the controller.
    pub pending_results: Vec<CommandResult>,
    /// How desired states ended, not yet acknowledged (`desired_results_ack`).
    pub desired_results: Vec<DesiredResult>,
    /// Deployments of desired states and commands whose end is still to be reported.
    pub awaiting: Vec<super::outcomes::Awaiting>,
}

impl LinkState {
    /// Applies the acknowledgements of a reply.
    /// `sent_up_to` is the newest event id the report carried: an acknowledgement beyond it
    /// (a confused controller) must not skip events it never received.
    pub fn acknowledge(&mut self, reply: &ReportReply, sent_up_to: u64) {
        if let Some(ack) = reply.events_ack {
            self.events_cursor = self.events_cursor.max(ack.min(sent_up_to));
        }
        self.pending_results
            .retain(|result| !reply.commands_ack.contains(&result.id));
        self.desired_results
            .retain(|result| !reply.desired_results_ack.contains(&result.serial));
    }

    /// The desired state to apply, if it is newer than what was applied.
    pub fn newer_desired<'r>(&self, reply: &'r ReportReply) -> Option<&'r DesiredState> {
        reply
            .desired
            .as_ref()
            .filter(|desired| desired.serial > self.applied_serial)
    }

    /// The commands of a reply that have not run yet, remembering them as run.
    pub fn take_new_commands(&mut self, reply: &ReportReply) -> Vec<Command> {
        let mut fresh = Vec::new();
        for command in &reply.commands {
            if self.seen_commands.contains(&command.id) {
                continue;
            }
            self.seen_commands.push_back(command.id.clone());
            if self.seen_commands.len() > REMEMBERED_COMMANDS {
                self.seen_commands.pop_front();
            }
            fresh.push(command.clone());
        }
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::DeploymentRequest;

    fn reply(serial: Option<u64>, commands: &[&str]) -> ReportReply {
        ReportReply {
            events_ack: Some(7),
            commands_ack: vec!["a".into()],
            desired: serial.map(|serial| DesiredState {
                serial,
                deployment: DeploymentRequest::default(),
            }),
            commands: commands
                .iter()
                .map(|id| Command {
                    id: id.to_string(),
                    kind: CommandKind::Restart,
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn acknowledgements_move_forward_only() {
        let mut state = LinkState {
            events_cursor: 9,
            ..Default::default()
        };
        state.pending_results = vec![
            CommandResult {
                id: "a".into(),
                accepted: true,
                deployment_id: Some(1),
                error: None,
                outcome: None,
            },
            CommandResult {
                id: "b".into(),
                accepted: true,
                deployment_id: Some(2),
                error: None,
                outcome: None,
            },
        ];
        state.acknowledge(&reply(None, &[]), 100);
        assert_eq!(
            state.events_cursor, 9,
            "an older ack does not rewind the cursor"
        );
        assert_eq!(state.pending_results.len(), 1);
        assert_eq!(state.pending_results[0].id, "b");
    }

    #[test]
    fn only_newer_desired_states_apply() {
        let state = LinkState {
            applied_serial: 3,
            ..Default::default()
        };
        assert!(state.newer_desired(&reply(Some(3), &[])).is_none());
        assert!(state.newer_desired(&reply(Some(2), &[])).is_none());
        assert_eq!(
            state.newer_desired(&reply(Some(4), &[])).map(|d| d.serial),
            Some(4)
        );
    }

    #[test]
    fn a_command_runs_once_even_when_sent_again() {
        let mut state = LinkState::default();
        assert_eq!(
            state.take_new_commands(&reply(None, &["c1", "c2"])).len(),
            2
        );
        assert_eq!(
            state
                .take_new_commands(&reply(None, &["c1", "c3"]))
                .iter()
                .map(|c| c.id.as_str())
                .collect::<Vec<_>>(),
            ["c3"]
        );
    }
}
