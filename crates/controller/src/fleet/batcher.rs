//! Group commit: reports that carry something to store (events, results, a changed row) are
//! committed in one transaction with whatever else queued meanwhile, and only then answered, so
//! an acknowledgement always means "stored". A group starts committing as soon as its first
//! write arrives, with every write already waiting; what arrives during that commit forms the
//! next group. So a lone report pays one commit, not a window, and under load groups grow as
//! long as a commit takes (at most [`MAX_GROUP`]). `deploy.commit_window`, zero by default,
//! adds a wait for company on top, trading latency for fewer, larger commits. Reports that
//! change nothing but `last_seen_ms` are answered at once; their times are kept here and
//! flushed with the next group (or by the flush tick), so an idle fleet costs a few writes per
//! interval, not one per report.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::model::{Millis, ReportWrite};
use crate::store::{Store, StoreError};

/// Most writes committed in one transaction.
const MAX_GROUP: usize = 1000;
/// Reports waiting for a commit before new ones are told to come back later (503).
pub const MAX_QUEUED: usize = 20_000;

type Done = oneshot::Sender<Result<(), String>>;

enum Job {
    Write(Box<ReportWrite>, Done),
    Seen(String, Millis),
}

#[derive(Debug, Clone)]
pub struct Batcher {
    sender: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Job::Write(write, _) => write!(f, "Write({})", write.instance_id),
            Job::Seen(id, at) => write!(f, "Seen({id}, {at})"),
        }
    }
}

impl Batcher {
    /// Starts the committer task on `store`, returning the handle reports use.
    pub fn start<S: Store>(
        store: std::sync::Arc<S>,
        window: Duration,
        flush_every: Duration,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (sender, receiver) = mpsc::channel(MAX_QUEUED);
        let task = tokio::spawn(run(store, receiver, window, flush_every));
        (Self { sender }, task)
    }

    /// Commits `write` with its group; returns when it is durable.
    pub async fn commit(&self, write: ReportWrite) -> Result<(), String> {
        let (done, wait) = oneshot::channel();
        self.sender
            .try_send(Job::Write(Box::new(write), done))
            .map_err(|_| "the controller is overloaded: too many reports waiting".to_string())?;
        wait.await
            .map_err(|_| "the controller is shutting down".to_string())?
    }

    /// Records that the instance reported at `at`; written with the next group.
    pub fn seen(&self, instance_id: &str, at: Millis) {
        let _ = self.sender.try_send(Job::Seen(instance_id.to_string(), at));
    }
}

async fn run<S: Store>(
    store: std::sync::Arc<S>,
    mut receiver: mpsc::Receiver<Job>,
    window: Duration,
    flush_every: Duration,
) {
    let mut seen: HashMap<String, Millis> = HashMap::new();
    let mut flush = tokio::time::interval(flush_every);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut group: Vec<(Box<ReportWrite>, Done)> = Vec::new();
        tokio::select! {
            job = receiver.recv() => match job {
                None => {
                    commit(&*store, group, &mut seen).await;
                    return;
                }
                Some(job) => take(job, &mut group, &mut seen),
            },
            _ = flush.tick() => {
                if !seen.is_empty() {
                    commit(&*store, group, &mut seen).await;
                }
                continue;
            }
        }
        if group.is_empty() {
            continue;
        }
        // Everything that queued while the last group committed joins this one.
        while group.len() < MAX_GROUP {
            match receiver.try_recv() {
                Ok(job) => take(job, &mut group, &mut seen),
                Err(_) => break,
            }
        }
        if !window.is_zero() {
            let deadline = tokio::time::Instant::now() + window;
            while group.len() < MAX_GROUP {
                match tokio::time::timeout_at(deadline, receiver.recv()).await {
                    Ok(Some(job)) => take(job, &mut group, &mut seen),
                    _ => break,
                }
            }
        }
        commit(&*store, group, &mut seen).await;
    }
}

fn take(job: Job, group: &mut Vec<(Box<ReportWrite>, Done)>, seen: &mut HashMap<String, Millis>) {
    match job {
        Job::Write(write, done) => {
            seen.remove(&write.instance_id);
            group.push((write, done));
        }
        Job::Seen(id, at) => {
            let entry = seen.entry(id).or_insert(at);
            *entry = (*entry).max(at);
        }
    }
}

async fn commit<S: Store>(
    store: &S,
    group: Vec<(Box<ReportWrite>, Done)>,
    seen: &mut HashMap<String, Millis>,
) {
    let mut writes: Vec<ReportWrite> = group.iter().map(|(w, _)| (**w).clone()).collect();
    writes.extend(seen.drain().map(|(instance_id, seen_ms)| ReportWrite {
        instance_id,
        seen_ms,
        instance: None,
        events: Vec::new(),
        command_results: Vec::new(),
    }));
    if writes.is_empty() {
        return;
    }
    let result = store
        .commit_reports(&writes)
        .await
        .map_err(|e: StoreError| e.to_string());
    if let Err(error) = &result {
        tracing::error!(%error, writes = writes.len(), "group commit failed");
    }
    for (_, done) in group {
        let _ = done.send(result.clone());
    }
}
