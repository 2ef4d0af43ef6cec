//! The periodic tasks of the release's `cron.yaml`: while this host is the leader, each run is
//! sent once to the worker queue, with Elastic Beanstalk's body and attributes; any worker of
//! the environment may receive it. The last run sent per task is kept on disk
//! (`worker-cron.json`), so an agent that restarts sends a run it missed while down, late,
//! within five minutes (sqsd's resend grace period), and never one it already sent. A host
//! that becomes the leader while running starts from that instant: the runs before were the
//! previous leader's.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::Leadership;
use super::cron::{self, MESSAGE_BODY, PeriodicTask};
use super::daemon::Live;
use super::log::SqsdLog;
use super::message::{PATH_ATTRIBUTE, SCHEDULED_ATTRIBUTE, TASK_ATTRIBUTE};
use super::sqs::Queue;
use super::stats::TaskStatus;
use crate::events::EventSink;

const GRACE: SignedDuration = SignedDuration::from_secs(300);

#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    /// Whether the host was the leader when it wrote the file.
    leader: bool,
    /// Task name → the scheduled time of the last run sent, milliseconds since the epoch.
    last_sent: BTreeMap<String, i64>,
}

/// Whose runs are whose when the leadership changes.
#[derive(Debug)]
struct Succession {
    /// The host led when it stopped: its first answer as leader resumes its own runs.
    resuming: bool,
    leading: bool,
    /// The leadership term it last led in (`Leadership::lead`).
    term: Option<u64>,
}

impl Succession {
    /// `Some(from)` when the host starts leading again and the runs before `from` are not its
    /// own: after a lapse (no answer for a while: nobody may have sent them, or another host),
    /// `from` is now; in a new term (another host led), `takeover` after now, the time the
    /// previous leader may still take itself for one. Resuming its own leadership after a
    /// restart keeps its runs (the ones missed meanwhile are sent late).
    fn observe(
        &mut self,
        lead: Option<u64>,
        now: Timestamp,
        takeover: SignedDuration,
    ) -> Option<Timestamp> {
        let from = match lead {
            Some(term) if !self.leading => {
                let new_term = self.term != Some(term);
                self.term = Some(term);
                match (self.resuming, new_term) {
                    (true, _) => None,
                    (false, true) => Some(now + takeover),
                    (false, false) => Some(now),
                }
            }
            _ => None,
        };
        self.resuming = false;
        self.leading = lead.is_some();
        from
    }
}

/// [`Saved`] in memory.
#[derive(Debug)]
struct Memory {
    leader: bool,
    last_sent: BTreeMap<String, Timestamp>,
}

#[derive(Debug)]
pub(super) struct Scheduler {
    pub queue: Queue,
    pub tasks: Vec<PeriodicTask>,
    pub leadership: Leadership,
    pub state_file: PathBuf,
    pub live: Arc<Mutex<Live>>,
    pub log: SqsdLog,
    pub events: EventSink,
}

impl Scheduler {
    pub async fn run(self, stop: CancellationToken) {
        let schedules: Vec<(PeriodicTask, croner::Cron)> = self
            .tasks
            .iter()
            .filter_map(|task| task.cron().ok().map(|cron| (task.clone(), cron)))
            .collect();
        let file: Saved = crate::fsutil::read_json(&self.state_file)
            .ok()
            .flatten()
            .unwrap_or_default();
        let mut saved = Memory {
            leader: file.leader,
            last_sent: file
                .last_sent
                .into_iter()
                .filter_map(|(name, ms)| Some((name, Timestamp::from_millisecond(ms).ok()?)))
                .collect(),
        };
        let now = Timestamp::now();
        // Runs missed while the agent was down are the host's to send only if it led then.
        let resume = saved.leader;
        for (task, _) in &schedules {
            if !resume || !saved.last_sent.contains_key(&task.name) {
                saved.last_sent.insert(task.name.clone(), now);
            }
        }
        saved
            .last_sent
            .retain(|name, _| schedules.iter().any(|(t, _)| &t.name == name));
        let mut succession = Succession {
            resuming: resume,
            leading: false,
            term: None,
        };
        // The runs this agent sent (what status shows).
        let mut sent: BTreeMap<String, Timestamp> = BTreeMap::new();
        let mut ticks = tokio::time::interval(Duration::from_secs(1));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let now = Timestamp::now();
            if !self.leadership.known() {
                // No answer from the controller yet: neither leader nor follower.
                continue;
            }
            let lead = self.leadership.lead();
            let leader = lead.is_some();
            let takeover = SignedDuration::try_from(self.leadership.takeover_delay())
                .unwrap_or(SignedDuration::ZERO);
            if let Some(from) = succession.observe(lead, now, takeover) {
                for last in saved.last_sent.values_mut() {
                    *last = (*last).max(from);
                }
            }
            let mut changed = leader != saved.leader;
            saved.leader = leader;
            if leader {
                for (task, schedule) in &schedules {
                    let last = saved.last_sent.get(&task.name).copied().unwrap_or(now);
                    let Some(at) = cron::due(schedule, last, now, GRACE) else {
                        continue;
                    };
                    // A daemon being replaced sends nothing more: the next one resumes.
                    if stop.is_cancelled() {
                        return;
                    }
                    if self.send(task, at).await {
                        saved.last_sent.insert(task.name.clone(), at);
                        sent.insert(task.name.clone(), at);
                        changed = true;
                    }
                }
            }
            let file = Saved {
                leader: saved.leader,
                last_sent: saved
                    .last_sent
                    .iter()
                    .map(|(name, at)| (name.clone(), at.as_millisecond()))
                    .collect(),
            };
            if changed
                && let Err(error) = crate::fsutil::write_json_atomic(&self.state_file, &file, 0o644)
            {
                tracing::warn!(%error, "cannot save the periodic tasks' state");
            }
            self.publish(leader, &schedules, &sent, now);
        }
    }

    /// Sends one run; false when it failed (tried again on the next tick, within the grace).
    async fn send(&self, task: &PeriodicTask, at: Timestamp) -> bool {
        let scheduled = cron::scheduled_time_attribute(at);
        let attributes = [
            (PATH_ATTRIBUTE, task.url.clone()),
            (TASK_ATTRIBUTE, task.name.clone()),
            (SCHEDULED_ATTRIBUTE, scheduled.clone()),
        ];
        match self.queue.send(MESSAGE_BODY, &attributes).await {
            Ok(id) => {
                self.log.line(
                    "cron",
                    &format!(
                        "sent task {} scheduled at {scheduled} as message {id}",
                        task.name
                    ),
                    None,
                );
                self.live
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .periodic
                    .error = None;
                true
            }
            Err(error) => {
                self.log.line(
                    "cron-err",
                    &format!("task {} scheduled at {scheduled}: {error}", task.name),
                    None,
                );
                let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
                if live.periodic.error.is_none() {
                    self.events.error(
                        "worker",
                        format!(
                            "Cannot send periodic task {:?} scheduled at {scheduled}: {error}",
                            task.name
                        ),
                    );
                }
                live.periodic.error = Some(error);
                false
            }
        }
    }

    fn publish(
        &self,
        leader: bool,
        schedules: &[(PeriodicTask, croner::Cron)],
        sent: &BTreeMap<String, Timestamp>,
        now: Timestamp,
    ) {
        let tasks = schedules
            .iter()
            .map(|(task, schedule)| TaskStatus {
                name: task.name.clone(),
                url: task.url.clone(),
                schedule: task.schedule.clone(),
                next_at: cron::next_after(schedule, now).map(|t| t.to_string()),
                last_sent_at: sent.get(&task.name).map(|t| t.to_string()),
            })
            .collect();
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.periodic.leader = leader;
        live.periodic.tasks = tasks;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    const TAKEOVER: SignedDuration = SignedDuration::from_secs(6);

    fn fresh(resuming: bool) -> Succession {
        Succession {
            resuming,
            leading: false,
            term: None,
        }
    }

    #[test]
    fn a_new_leader_waits_out_the_old_ones_lease() {
        let mut succession = fresh(false);
        let now = ts("2026-01-01T00:00:00Z");
        assert_eq!(succession.observe(None, now, TAKEOVER), None);
        assert_eq!(
            succession.observe(Some(1), now, TAKEOVER),
            Some(ts("2026-01-01T00:00:06Z"))
        );
        assert_eq!(succession.observe(Some(1), now, TAKEOVER), None);
        // A lapse in the same term: the runs meanwhile are skipped, no wait.
        assert_eq!(succession.observe(None, now, TAKEOVER), None);
        assert_eq!(succession.observe(Some(1), now, TAKEOVER), Some(now));
        // Another host led in between (a new term): wait again.
        assert_eq!(succession.observe(None, now, TAKEOVER), None);
        assert_eq!(
            succession.observe(Some(2), now, TAKEOVER),
            Some(ts("2026-01-01T00:00:06Z"))
        );
    }

    #[test]
    fn a_restarted_leader_resumes_its_own_runs_unless_another_leads_now() {
        let now = ts("2026-01-01T00:00:00Z");
        assert_eq!(fresh(true).observe(Some(1), now, TAKEOVER), None);
        let mut replaced = fresh(true);
        assert_eq!(replaced.observe(None, now, TAKEOVER), None);
        assert!(replaced.observe(Some(1), now, TAKEOVER).is_some());
    }
}
