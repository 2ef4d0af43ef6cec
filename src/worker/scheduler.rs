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
    was_leader: bool,
}

impl Succession {
    /// `Some(from)` when the host just became the leader (not by resuming its own leadership
    /// after a restart): the runs before `from` are not its own. `from` is `takeover` after now,
    /// the time the previous leader may still believe it leads.
    fn observe(
        &mut self,
        leader: bool,
        now: Timestamp,
        takeover: SignedDuration,
    ) -> Option<Timestamp> {
        let from = (leader && !self.was_leader && !self.resuming).then(|| now + takeover);
        self.resuming = false;
        self.was_leader = leader;
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
            was_leader: false,
        };
        // The runs this agent sent (what status shows).
        let mut sent: BTreeMap<String, Timestamp> = BTreeMap::new();
        let mut ticks = tokio::time::interval(Duration::from_secs(1));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let now = Timestamp::now();
            if !self.leadership.known() {
                // No answer from the controller yet: neither leader nor follower.
                continue;
            }
            let leader = self.leadership.is_leader();
            let takeover = SignedDuration::try_from(self.leadership.takeover_delay())
                .unwrap_or(SignedDuration::ZERO);
            if let Some(from) = succession.observe(leader, now, takeover) {
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

    #[test]
    fn a_new_leader_waits_out_the_old_ones_lease() {
        let mut succession = Succession {
            resuming: false,
            was_leader: false,
        };
        let now = ts("2026-01-01T00:00:00Z");
        assert_eq!(succession.observe(false, now, TAKEOVER), None);
        assert_eq!(
            succession.observe(true, now, TAKEOVER),
            Some(ts("2026-01-01T00:00:06Z"))
        );
        assert_eq!(succession.observe(true, now, TAKEOVER), None);
        // Lost it and won it back: the runs in between were another host's.
        assert_eq!(succession.observe(false, now, TAKEOVER), None);
        assert!(succession.observe(true, now, TAKEOVER).is_some());
    }

    #[test]
    fn a_restarted_leader_resumes_its_own_runs_unless_another_leads_now() {
        let now = ts("2026-01-01T00:00:00Z");
        let mut resumed = Succession {
            resuming: true,
            was_leader: false,
        };
        assert_eq!(resumed.observe(true, now, TAKEOVER), None);
        let mut replaced = Succession {
            resuming: true,
            was_leader: false,
        };
        assert_eq!(replaced.observe(false, now, TAKEOVER), None);
        assert!(replaced.observe(true, now, TAKEOVER).is_some());
    }
}
