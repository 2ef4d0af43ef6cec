//! The report round trip and what the agent does with the answer: acknowledgements move the
//! cursors, a newer desired state is queued, new commands run once.

use super::http::{Encoding, Failure, post_json};
use super::info;
use super::outcomes::{self, Awaiting};
use super::protocol::*;
use super::{ControllerLink, facts};
use crate::deploy::SubmitError;
use crate::events::{NewEvent, Severity};

impl ControllerLink {
    /// The events to send: the batch of the last failed attempt if the cursor has not moved,
    /// else read once from the store.
    fn events_batch(&mut self) -> Vec<crate::events::Event> {
        let store = self.api.events.clone();
        batch_after(&mut self.batch, self.state.events_cursor, |cursor| {
            store.oldest_after(cursor, MAX_EVENTS_PER_REPORT)
        })
    }

    pub(super) async fn round_trip(&mut self) -> Result<ReportReply, Failure> {
        let deployer = self.api.deployer.clone();
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let finished_info: Vec<_> =
            std::mem::take(&mut *self.info_results.lock().unwrap_or_else(|p| p.into_inner()));
        let has_info = !finished_info.is_empty();
        self.state.pending_results.extend(finished_info);
        // Outcomes are known the moment they are persisted: a restart does not lose them.
        if self
            .state
            .collect_finished(|id| deployer.record(id), now_ms)
            || has_info
        {
            self.save_state();
        }
        let events = self.events_batch();
        let metrics = self
            .api
            .metrics
            .borrow()
            .as_deref()
            .map(facts::metrics_window);
        let report = Report {
            instance_id: self.instance_id.clone(),
            environment: self.api.info.environment.clone(),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            applied_serial: self.state.applied_serial,
            status: crate::local_api::status_report(&self.api),
            events,
            command_results: self.state.pending_results.clone(),
            desired_results: self.state.desired_results.clone(),
            metrics,
            facts: Some(self.facts()),
        };
        let url = format!(
            "{}/v1/hosts/{}/report",
            self.url.trim_end_matches('/'),
            self.instance_id
        );
        let reply: ReportReply =
            post_json(&self.client, &url, self.bearer(), &report, Encoding::Gzip).await?;
        let sent_up_to = report
            .events
            .last()
            .map_or(self.state.events_cursor, |e| e.id);
        self.state.acknowledge(&reply, sent_up_to);
        self.batch = None;
        self.apply(&reply);
        self.save_state();
        let state = self.state.clone();
        self.set_status(|status| {
            status.connected = true;
            status.last_contact = Some(jiff::Timestamp::now().to_string());
            status.last_error = None;
            status.events_acknowledged = state.events_cursor;
            status.applied_serial = state.applied_serial;
        });
        Ok(reply)
    }

    /// Queues the desired state if it is new and runs new commands; results go up next time.
    fn apply(&mut self, reply: &ReportReply) {
        // Periodic tasks follow the controller's leader; an older controller only names one
        // in its desired state. Valid for a few round trips, not for good.
        let leader = reply.leader.or_else(|| {
            reply
                .desired
                .as_ref()
                .and_then(|d| d.deployment.command_leader)
        });
        if let Some(leader) = leader {
            // Until three reports could have come and gone at the pace the controller asks
            // for (it may space them out to 10 × the interval), not the agent's own.
            let pace = reply
                .report_after_ms
                .map(std::time::Duration::from_millis)
                .unwrap_or(self.config.interval)
                .max(self.config.interval);
            self.api
                .leadership
                .set(leader, pace * 3 + self.config.timeout);
        }
        if let Some(desired) = self.state.newer_desired(reply).cloned() {
            let serial = desired.serial;
            match self
                .api
                .deployer
                .submit_desired(desired.deployment, Some(serial))
            {
                Ok(record) => {
                    self.state.applied_serial = serial;
                    self.state.awaiting.push(Awaiting::Desired {
                        serial,
                        deployment_id: record.id,
                    });
                    self.api.sink.emit(
                        NewEvent::new(
                            Severity::Info,
                            "controller",
                            format!(
                                "Desired state {serial} from the controller: deployment {} queued",
                                record.id
                            ),
                        )
                        .deployment(record.id),
                    )
                }
                // An invalid document is recorded as applied: retrying it would fail forever.
                Err(error @ SubmitError::Invalid(_)) => {
                    self.state.applied_serial = serial;
                    let now_ms = jiff::Timestamp::now().as_millisecond();
                    self.state.desired_results.push(outcomes::refused(
                        serial,
                        error.to_string(),
                        now_ms,
                    ));
                    self.api.sink.error(
                        "controller",
                        format!("Desired state {serial} from the controller refused: {error}"),
                    )
                }
                // A full queue or a disk error passes: the next round trip tries again.
                Err(error) => {
                    tracing::warn!(serial, %error, "desired state not queued yet")
                }
            }
        }
        let commands = self.state.take_new_commands(reply);
        if commands.is_empty() {
            return;
        }
        // Remembered as run BEFORE they run: a crash in between loses a command rather than
        // running it twice (two rollbacks would go back two releases).
        self.save_state();
        for command in commands {
            let outcome = match command.kind {
                CommandKind::Restart => self.api.deployer.submit_restart(),
                CommandKind::Rollback => self.api.deployer.submit_rollback(),
                CommandKind::TailLogs | CommandKind::BundleLogs => {
                    info::spawn(
                        self.api.clone(),
                        self.uploader(),
                        command.id,
                        command.kind,
                        self.info_results.clone(),
                    );
                    continue;
                }
                CommandKind::Unsupported => {
                    self.state.pending_results.push(CommandResult {
                        id: command.id,
                        accepted: false,
                        deployment_id: None,
                        error: Some(format!(
                            "hostmanager {} does not know this command; upgrade the agent",
                            env!("CARGO_PKG_VERSION")
                        )),
                        outcome: None,
                    });
                    continue;
                }
            };
            let result = match outcome {
                Ok(record) => {
                    self.state.awaiting.push(Awaiting::Command {
                        id: command.id.clone(),
                        deployment_id: record.id,
                    });
                    CommandResult {
                        id: command.id,
                        accepted: true,
                        deployment_id: Some(record.id),
                        error: None,
                        outcome: None,
                    }
                }
                Err(error) => CommandResult {
                    id: command.id,
                    accepted: false,
                    deployment_id: None,
                    error: Some(error.to_string()),
                    outcome: None,
                },
            };
            self.state.pending_results.push(result);
        }
    }
}

/// The batch cached for `cursor`, or a fresh one from `read` (cached for the next retry).
fn batch_after<T: Clone>(
    cache: &mut Option<(u64, Vec<T>)>,
    cursor: u64,
    read: impl FnOnce(u64) -> Vec<T>,
) -> Vec<T> {
    match cache {
        Some((after, batch)) if *after == cursor => batch.clone(),
        _ => {
            let batch = read(cursor);
            *cache = Some((cursor, batch.clone()));
            batch
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_reuse_the_batch_until_the_cursor_moves() {
        let mut cache = None;
        let mut reads = 0;
        let mut read = |cursor: u64| {
            reads += 1;
            vec![cursor + 1, cursor + 2]
        };
        assert_eq!(batch_after(&mut cache, 10, &mut read), [11, 12]);
        assert_eq!(batch_after(&mut cache, 10, &mut read), [11, 12], "a retry");
        assert_eq!(batch_after(&mut cache, 10, &mut read), [11, 12], "another");
        assert_eq!(
            batch_after(&mut cache, 12, &mut read),
            [13, 14],
            "acknowledged"
        );
        assert_eq!(reads, 2, "the journal is read once per cursor");
    }
}
