//! What happens to one received message: its plan, the POST, then its delete (queued for
//! the batched deleter) or its return to the queue after the error visibility timeout; and
//! the deleter itself. A message's connection permit is released only once its delete or its
//! return is done, so deletes falling behind slow the receives instead of letting processed
//! messages reach their visibility timeout and run again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, mpsc};

use super::daemon::{Shared, now_ms};
use super::log::SqsdLog;
use super::message::{Delivery, Plan, PlanSettings, Received, plan};
use super::post::post_with_retry;
use super::sqs::Queue;
use crate::events::EventSink;

/// A processed message to delete, with the connection permit it holds until then.
pub(super) type ToDelete = (String, String, OwnedSemaphorePermit);

/// One message, from its plan to its delete or its return to the queue.
pub(super) async fn deliver(shared: Arc<Shared>, message: Received, permit: OwnedSemaphorePermit) {
    let settings = PlanSettings {
        http_path: &shared.settings.http_path,
        mime_type: &shared.settings.mime_type,
        queue_name: shared.settings.queue_name(),
        retention_secs: shared.settings.retention_period,
    };
    let id = &message.message_id;
    let count = message.receive_count();
    match plan(&message, settings, now_ms()) {
        Plan::Expired { age_secs } => {
            shared
                .log
                .line("expired-msg", &format!("{id} ({count})"), None);
            shared.live().totals.expired += 1;
            shared.events.warn("worker", format!(
                "Message {id} deleted without a request: first received {age_secs} s ago, past the retention period of {} s (RetentionPeriod)",
                shared.settings.retention_period
            ));
            let _ = shared
                .deletes
                .send((id.clone(), message.receipt_handle.clone(), permit))
                .await;
        }
        Plan::Corrupt { expected, found } => {
            shared.live().totals.corrupt += 1;
            shared.events.error("worker", format!(
                "Message {id} not posted: its body's MD5 is {found}, SQS sent {expected} (corrupted in transit); it comes back after {} s",
                shared.settings.error_visibility_timeout
            ));
            return_to_queue(&shared, &message).await;
            drop(permit);
        }
        Plan::Post(delivery) => {
            shared.live().daemon.in_flight += 1;
            // A deployment stops a release only once this is done (`Intake::idle`).
            let request = shared.intake.request();
            let started = Instant::now();
            let outcome = post_with_retry(&shared, &delivery).await;
            let seconds = started.elapsed().as_secs_f64();
            drop(request);
            shared.live().daemon.in_flight -= 1;
            shared.note_connection(&outcome);
            let latency_ms = (seconds * 1000.0) as u64;
            match outcome {
                Ok(200) => {
                    shared.meter.record(true, latency_ms);
                    shared
                        .live()
                        .window
                        .record(now_ms(), true, latency_ms, None);
                    shared.live().totals.processed += 1;
                    shared.log.line(
                        "message",
                        &format!("{id} ({count}) 200 {}", delivery.path),
                        Some(seconds),
                    );
                    let _ = shared
                        .deletes
                        .send((id.clone(), message.receipt_handle.clone(), permit))
                        .await;
                }
                outcome => {
                    // sqsd's lines: `http-err: <id> (<count>) 504`, `socket-err: <id> (<count>) …`.
                    let (category, logged, reason) = match outcome {
                        Ok(status) => ("http-err", status.to_string(), format!("HTTP {status}")),
                        Err(failure) => ("socket-err", failure.reason.clone(), failure.reason),
                    };
                    shared
                        .log
                        .line(category, &format!("{id} ({count}) {logged}"), Some(seconds));
                    failed(&shared, &message, &delivery, &reason, latency_ms);
                    return_to_queue(&shared, &message).await;
                    drop(permit);
                }
            }
        }
    }
}

fn failed(shared: &Shared, message: &Received, delivery: &Delivery, reason: &str, latency_ms: u64) {
    let now = now_ms();
    shared.meter.record(false, latency_ms);
    let event = {
        let mut live = shared.live();
        live.window
            .record(now, false, latency_ms, Some(reason.to_string()));
        live.totals.failed += 1;
        live.digest.failure(now, reason, &message.message_id)
    };
    if event.is_some() {
        let what = delivery
            .task
            .as_ref()
            .map(|t| format!("periodic task {t:?}"))
            .unwrap_or_else(|| format!("message {}", message.message_id));
        shared.events.warn("worker", format!(
            "The app failed {what} (receive {}): {reason} from POST {}; it comes back after {} s (ErrorVisibilityTimeout)",
            message.receive_count(),
            delivery.path,
            shared.settings.error_visibility_timeout
        ));
    }
}

async fn return_to_queue(shared: &Shared, message: &Received) {
    if let Err(error) = shared
        .queue
        .change_visibility(
            &message.receipt_handle,
            shared.settings.error_visibility_timeout,
        )
        .await
    {
        shared
            .log
            .line("sqs-err", &format!("{} {error}", message.message_id), None);
    }
}

/// Deletes in batches of up to 10, each sent when full or 100 ms after its first message; a
/// failed call is tried once more. The permits go back when the batch is done.
pub(super) async fn delete_loop(
    queue: Queue,
    mut rx: mpsc::Receiver<ToDelete>,
    log: SqsdLog,
    events: EventSink,
) {
    let mut warned = false;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + Duration::from_millis(100);
        while batch.len() < 10 {
            tokio::select! {
                more = rx.recv() => match more {
                    Some(more) => batch.push(more),
                    None => break,
                },
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        let receipts: Vec<(String, String)> = batch
            .iter()
            .map(|(id, receipt, _)| (id.clone(), receipt.clone()))
            .collect();
        let mut outcome = queue.delete_batch(&receipts).await;
        if outcome.is_err() {
            outcome = queue.delete_batch(&receipts).await;
        }
        drop(batch);
        let failures = match outcome {
            Ok(failed) => failed,
            Err(error) => receipts
                .iter()
                .map(|(id, _)| (id.clone(), error.clone()))
                .collect(),
        };
        for (id, error) in &failures {
            log.line("delete-err", &format!("{id} {error}"), None);
        }
        match failures.first() {
            Some((id, error)) if !warned => {
                warned = true;
                events.warn("worker", format!(
                    "Cannot delete {} processed messages (first: {id}: {error}); they come back after their visibility timeout and run again",
                    failures.len()
                ));
            }
            None => warned = false,
            _ => {}
        }
    }
}

/// A message that will not be posted now (the apps are stopped, the daemon stops): visible
/// again at once.
pub(super) async fn release_message(shared: &Shared, message: &Received, why: &str) {
    shared.log.line(
        "message",
        &format!("{} released: {why}", message.message_id),
        None,
    );
    if let Err(error) = shared
        .queue
        .change_visibility(&message.receipt_handle, 0)
        .await
    {
        shared
            .log
            .line("sqs-err", &format!("{} {error}", message.message_id), None);
    }
}
