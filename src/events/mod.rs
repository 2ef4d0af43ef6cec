//! Events: every module reports what happened through one bounded channel (`EventSink`); the
//! events task stamps each event with an id and a time, appends it to the durable journal and
//! keeps the newest ones in memory for the control API.

mod index;
mod journal;
mod model;

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

pub use journal::Retention;
pub use model::{Event, EventQuery, NewEvent, Severity};

const CHANNEL_CAPACITY: usize = 1024;
const RECENT_CAPACITY: usize = 2000;

/// The producer side. Cloned into every module; never blocks.
#[derive(Debug, Clone)]
pub struct EventSink {
    tx: mpsc::Sender<NewEvent>,
    dropped: Arc<AtomicU64>,
}

impl EventSink {
    pub fn emit(&self, event: NewEvent) {
        match event.severity {
            Severity::Info => tracing::info!(source = event.source, "{}", event.message),
            Severity::Warning => tracing::warn!(source = event.source, "{}", event.message),
            Severity::Error => tracing::error!(source = event.source, "{}", event.message),
        }
        if self.tx.try_send(event).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn info(&self, source: &'static str, message: impl Into<String>) {
        self.emit(NewEvent::new(Severity::Info, source, message));
    }

    pub fn warn(&self, source: &'static str, message: impl Into<String>) {
        self.emit(NewEvent::new(Severity::Warning, source, message));
    }

    pub fn error(&self, source: &'static str, message: impl Into<String>) {
        self.emit(NewEvent::new(Severity::Error, source, message));
    }

    /// Events lost because the channel was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The reader side: recent events in memory, older ones from the journal, and a feed of new ones.
#[derive(Debug)]
pub struct EventStore {
    inner: Mutex<StoreInner>,
    feed: broadcast::Sender<Event>,
}

#[derive(Debug)]
struct StoreInner {
    journal: journal::Journal,
    recent: VecDeque<Event>,
    journal_errors: u64,
}

impl EventStore {
    pub fn open(dir: &Path, retention: Retention) -> std::io::Result<Arc<Self>> {
        let journal = journal::Journal::open(dir, retention)?;
        let newest = journal.last_id().saturating_sub(RECENT_CAPACITY as u64);
        let recent = journal.read_after(newest, RECENT_CAPACITY)?.into();
        let (feed, _) = broadcast::channel(256);
        Ok(Arc::new(Self {
            inner: Mutex::new(StoreInner {
                journal,
                recent,
                journal_errors: 0,
            }),
            feed,
        }))
    }

    /// Events matching `query`, oldest first. Served from memory when the ring holds the
    /// answer; otherwise read from the journal after the lock is released (the journal is
    /// append-only), starting at the query's `after` through the index. Blocking: async
    /// callers use `query_blocking`.
    pub fn query(&self, query: &EventQuery) -> Vec<Event> {
        let limit = query.limit.unwrap_or(500).min(10_000);
        let (journal, matching) = {
            let inner = self.lock();
            let matching: Vec<Event> = inner
                .recent
                .iter()
                .filter(|e| query.matches(e))
                .cloned()
                .collect();
            let oldest_in_memory = inner.recent.front().map_or(0, |e| e.id);
            let memory_is_enough = inner.recent.len() < RECENT_CAPACITY
                || matching.len() >= limit
                || query
                    .after
                    .is_some_and(|after| after + 1 >= oldest_in_memory);
            let snapshot = match memory_is_enough {
                true => None,
                false => inner.journal.snapshot(query.after).ok(),
            };
            (snapshot, matching)
        };
        // The lock is released: the journal is read without it.
        if let Some(journal) = journal
            && let Ok(events) = journal.read(query, limit)
        {
            return events;
        }
        let skip = matching.len().saturating_sub(limit);
        matching.into_iter().skip(skip).collect()
    }

    /// `query` on the blocking pool: a journal read never runs on a runtime thread.
    pub async fn query_blocking(self: &Arc<Self>, query: &EventQuery) -> Vec<Event> {
        let store = self.clone();
        let query = query.clone();
        tokio::task::spawn_blocking(move || store.query(&query))
            .await
            .unwrap_or_default()
    }

    /// The oldest `limit` events after `cursor` (for delivery that must not skip any). Past
    /// the ring, the journal is read from the index entry before `cursor` and only until
    /// `limit` events are found.
    pub fn oldest_after(&self, cursor: u64, limit: usize) -> Vec<Event> {
        let inner = self.lock();
        let in_memory = inner
            .recent
            .front()
            .is_some_and(|oldest| oldest.id <= cursor + 1)
            || inner.recent.len() < RECENT_CAPACITY;
        if in_memory {
            return inner
                .recent
                .iter()
                .filter(|e| e.id > cursor)
                .take(limit)
                .cloned()
                .collect();
        }
        inner.journal.read_after(cursor, limit).unwrap_or_default()
    }

    /// Bytes the journal's reads have read since it was opened.
    pub fn journal_bytes_read(&self) -> u64 {
        self.lock().journal.bytes_read()
    }

    /// New events as they are recorded.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.feed.subscribe()
    }

    /// Like `query`, but when nothing matches yet, waits up to `timeout` for a matching event
    /// (the long poll behind `hostmanager events --follow`).
    pub async fn wait(
        self: &Arc<Self>,
        query: &EventQuery,
        timeout: std::time::Duration,
    ) -> Vec<Event> {
        // Subscribe before looking, so an event recorded in between is not missed.
        let mut feed = self.subscribe();
        let found = self.query_blocking(query).await;
        if !found.is_empty() {
            return found;
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                received = feed.recv() => match received {
                    Ok(event) if query.matches(&event) => return self.query_blocking(query).await,
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => return self.query_blocking(query).await,
                    Err(broadcast::error::RecvError::Closed) => return Vec::new(),
                },
                () = &mut deadline => return Vec::new(),
            }
        }
    }

    /// Applies the journal's size and age retention (also done whenever a segment fills).
    pub fn expire(&self) {
        if let Err(error) = self.lock().journal.enforce_retention() {
            tracing::warn!(%error, "event journal retention failed");
        }
    }

    pub fn last_id(&self) -> u64 {
        self.lock().journal.last_id()
    }

    fn record(&self, new: NewEvent) -> Event {
        let mut inner = self.lock();
        let event = Self::stamp(&inner, new);
        // A full disk must not stop the agent; the event still reaches memory and followers.
        match inner.journal.append(&event) {
            Ok(()) if inner.journal_errors > 0 => {
                let lost = std::mem::take(&mut inner.journal_errors);
                let message = format!(
                    "The event journal is written again; {lost} events could not be written \
                     and were kept in memory only"
                );
                tracing::info!("{message}");
                Self::remember(&mut inner, event.clone());
                let notice = Self::stamp(&inner, NewEvent::new(Severity::Info, "agent", message));
                let _ = inner.journal.append(&notice);
                let _ = self.feed.send(event);
                Self::remember(&mut inner, notice.clone());
                return notice;
            }
            Ok(()) => {}
            Err(error) => {
                inner.journal_errors += 1;
                if inner.journal_errors == 1 || inner.journal_errors.is_power_of_two() {
                    tracing::error!(%error, "cannot append to the event journal");
                }
                if inner.journal_errors == 1 {
                    // Said once per outage, as an event of its own (in memory: the journal
                    // cannot take it), naming the file and the error.
                    Self::remember(&mut inner, event.clone());
                    let _ = self.feed.send(event);
                    let notice = Self::stamp(
                        &inner,
                        NewEvent::new(
                            Severity::Error,
                            "agent",
                            format!(
                                "Cannot write the event journal ({error}): events are kept in \
                                 memory only until there is room"
                            ),
                        ),
                    );
                    if inner.journal.append(&notice).is_err() {
                        inner.journal_errors += 1;
                    }
                    Self::remember(&mut inner, notice.clone());
                    return notice;
                }
            }
        }
        Self::remember(&mut inner, event.clone());
        event
    }

    fn remember(inner: &mut StoreInner, event: Event) {
        if inner.recent.len() == RECENT_CAPACITY {
            inner.recent.pop_front();
        }
        inner.recent.push_back(event);
    }

    /// `new` with the next id and the time now.
    fn stamp(inner: &StoreInner, new: NewEvent) -> Event {
        let now = jiff::Timestamp::now();
        Event {
            id: inner.journal.last_id() + 1,
            time: now
                .round(jiff::Unit::Millisecond)
                .unwrap_or(now)
                .to_string(),
            time_ms: now.as_millisecond(),
            severity: new.severity,
            source: new.source.to_string(),
            message: new.message,
            deployment_id: new.deployment_id,
            details: new.details,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StoreInner> {
        // A panic while holding the lock leaves consistent data (every write is one push).
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Creates the channel; the receiver goes to `run`.
pub fn channel() -> (EventSink, mpsc::Receiver<NewEvent>) {
    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    (
        EventSink {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        },
        rx,
    )
}

/// The events task: drains the channel into the store until cancelled, then drains what is left.
pub async fn run(
    store: Arc<EventStore>,
    mut rx: mpsc::Receiver<NewEvent>,
    cancel: CancellationToken,
) {
    // An idle journal still ages out: check retention now and then, not only on writes.
    let mut retention = tokio::time::interval(std::time::Duration::from_secs(600));
    loop {
        tokio::select! {
            _ = retention.tick() => store.expire(),
            received = rx.recv() => match received {
                Some(new) => { let event = store.record(new); let _ = store.feed.send(event); }
                None => break,
            },
            () = cancel.cancelled() => {
                rx.close();
                while let Some(new) = rx.recv().await {
                    let event = store.record(new);
                    let _ = store.feed.send(event);
                }
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_past_the_ring_reads_a_bounded_slice_of_the_journal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let retention = Retention {
            segment_bytes: 1 << 20,
            ..Retention::default()
        };
        let store = EventStore::open(dir.path(), retention).expect("open");
        for n in 0..20_000 {
            store.record(NewEvent::new(Severity::Info, "test", format!("event {n}")));
        }
        let before = store.journal_bytes_read();
        let events = store.oldest_after(4_321, 100);
        let ids: Vec<u64> = events.iter().map(|e| e.id).collect();
        assert_eq!(ids, (4_322..=4_421).collect::<Vec<u64>>());
        let read = store.journal_bytes_read() - before;
        assert!(read < 2 * index::STRIDE, "read {read} bytes for 100 events");

        // A query that needs the journal reads it after the lock: it still answers.
        let found = store.query(&EventQuery {
            after: Some(10),
            limit: Some(5),
            ..Default::default()
        });
        assert_eq!(found.len(), 5);
        assert!(found.iter().all(|e| e.id > 10));
    }
}
