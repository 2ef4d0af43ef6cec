//! The agent plane: enrollment, reports, credential rotation. A report is authenticated by
//! its instance secret, bound to the instance id in the path; what it changes is committed
//! (group commit) before the reply acknowledges it; the reply carries the environment's
//! desired state and the instance's pending commands.

use hostmanager_protocol::{
    Command, Credential, EnrollRequest, Event, Report, ReportReply, Severity,
};

use crate::http::response::Failure;
use crate::model::*;
use crate::secrets;
use crate::store::Store;

use super::{App, now_ms};

/// Desired results remembered per instance (the newest serials).
const KEPT_RESULTS: usize = 8;

/// Who a bearer secret belongs to, checked against the instance in the path.
pub async fn authenticate<S: Store>(
    app: &App<S>,
    path_id: &str,
    bearer: Option<&str>,
) -> Result<Instance, Failure> {
    let Some(secret) = bearer else {
        return Err(Failure::unauthorized(
            "missing Authorization: Bearer <instance secret>",
        ));
    };
    let hash = secrets::hash(secret);
    let refused = match check_cached(app, path_id, &hash) {
        Ok(instance) => return Ok(instance),
        Err(refused) => refused,
    };
    // Another replica may have enrolled this host, rotated its secret or revoked it since this
    // replica's cache was refreshed: the database decides before a host is refused.
    let Ok(Some(row)) = app.store.instance(path_id).await else {
        return Err(refused);
    };
    {
        let mut cache = app.cache.lock().unwrap_or_else(|p| p.into_inner());
        let merged = match cache.instances.get(path_id) {
            // The cache may be ahead on what reports changed; the row is right on these.
            Some(cached) => Instance {
                credential: row.credential,
                revoked_ms: row.revoked_ms,
                environment: row.environment,
                ..cached.clone()
            },
            None => row,
        };
        cache.put_instance(merged);
    }
    check_cached(app, path_id, &hash)
}

fn check_cached<S: Store>(app: &App<S>, path_id: &str, hash: &str) -> Result<Instance, Failure> {
    let hash = hash.to_string();
    let now = now_ms();
    let cache = app.cache.lock().unwrap_or_else(|p| p.into_inner());
    let owner = cache.by_secret.get(&hash).cloned();
    let Some(instance) = cache.instances.get(path_id) else {
        return Err(match owner {
            Some(_) => Failure::forbidden(format!("this credential is not instance {path_id}'s")),
            None => Failure::unauthorized("unknown instance secret"),
        });
    };
    let credential = &instance.credential;
    let current = secrets::same_hash(&hash, &credential.current);
    let previous = credential
        .previous
        .as_deref()
        .is_some_and(|p| secrets::same_hash(&hash, p) && now < credential.previous_until_ms);
    if !current && !previous {
        return Err(match owner {
            Some(other) if other != path_id => {
                Failure::forbidden(format!("this credential is not instance {path_id}'s"))
            }
            _ => Failure::unauthorized("unknown instance secret"),
        });
    }
    if instance.revoked_ms.is_some() {
        return Err(Failure::unauthorized(
            "revoked: this instance's credential was revoked",
        ));
    }
    if current && now >= credential.expires_ms {
        return Err(Failure::unauthorized(
            "expired: this instance's credential expired; enroll again",
        ));
    }
    Ok(instance.clone())
}

pub async fn enroll<S: Store>(
    app: &App<S>,
    token: Option<&str>,
    body: &[u8],
) -> Result<Credential, Failure> {
    let Some(token) = token else {
        return Err(Failure::unauthorized(
            "missing Authorization: Bearer <enrollment token>",
        ));
    };
    let request: EnrollRequest = crate::http::response::parse_json(body, "enrollment")?;
    if !valid_instance_id(&request.instance_id) {
        return Err(Failure::bad_request(
            "instance_id: 1 to 64 characters, letters, digits, '-', '_' and '.'",
        ));
    }
    let now = now_ms();
    let secret = secrets::new_secret("hmi_");
    let lifetime = app.config.hosts.credential_lifetime.as_millis() as i64;
    let instance = Instance {
        id: request.instance_id.clone(),
        environment: String::new(),
        enrolled_ms: now,
        machine_fingerprint: request.machine_fingerprint,
        facts: request.facts,
        agent_version: request.agent_version,
        credential: CredentialHashes {
            current: secrets::hash(&secret),
            expires_ms: now + lifetime,
            previous: None,
            previous_until_ms: 0,
        },
        revoked_ms: None,
        last_seen_ms: None,
        status: Default::default(),
        metrics: None,
        applied_serial: 0,
        events_cursor: 0,
        desired_results: Vec::new(),
    };
    let enrolled = match app
        .store
        .enroll(&secrets::hash(token), &instance, now)
        .await?
    {
        Ok(enrolled) => enrolled,
        Err(refusal) => {
            app.counters
                .reports_rejected
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(match refusal {
                EnrollRefusal::UnknownToken => Failure::unauthorized("unknown enrollment token"),
                EnrollRefusal::Expired => {
                    Failure::unauthorized("this enrollment token has expired")
                }
                EnrollRefusal::UsedUp => {
                    Failure::unauthorized("this enrollment token has no uses left")
                }
                EnrollRefusal::Revoked => {
                    Failure::unauthorized("this enrollment token was revoked")
                }
                EnrollRefusal::FingerprintMismatch => Failure::conflict(format!(
                    "instance {} is enrolled from another machine (machine_fingerprint differs)",
                    request.instance_id
                )),
            });
        }
    };
    app.counters
        .enrollments
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let environment = enrolled.environment.clone();
    {
        let mut cache = app.cache.lock().unwrap_or_else(|p| p.into_inner());
        // A re-enrollment replaces the old secret: forget its hash.
        if let Some(old) = cache
            .instances
            .get(&enrolled.id)
            .map(|i| i.credential.clone())
        {
            cache.by_secret.remove(&old.current);
        }
        cache.put_instance(enrolled.clone());
    }
    app.store
        .append_events(&[controller_event(
            &environment,
            Some(&enrolled.id),
            EventSeverity::Info,
            format!("Added instance [{}] to your environment.", enrolled.id),
        )])
        .await?;
    Ok(Credential {
        instance_id: enrolled.id,
        environment,
        secret,
        expires_ms: instance.credential.expires_ms,
        interval_ms: app.config.hosts.interval.as_millis() as u64,
    })
}

/// `POST /v1/hosts/{id}/credential`: a new secret; the old one keeps working for the grace.
pub async fn rotate<S: Store>(app: &App<S>, instance: Instance) -> Result<Credential, Failure> {
    let now = now_ms();
    let secret = secrets::new_secret("hmi_");
    let credential = CredentialHashes {
        current: secrets::hash(&secret),
        expires_ms: now + app.config.hosts.credential_lifetime.as_millis() as i64,
        previous: Some(instance.credential.current.clone()),
        previous_until_ms: now + app.config.hosts.rotation_grace.as_millis() as i64,
    };
    app.store.save_credential(&instance.id, &credential).await?;
    let mut updated = instance.clone();
    updated.credential = credential.clone();
    app.cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .put_instance(updated);
    Ok(Credential {
        instance_id: instance.id,
        environment: instance.environment,
        secret,
        expires_ms: credential.expires_ms,
        interval_ms: app.config.hosts.interval.as_millis() as u64,
    })
}

pub async fn report<S: Store>(
    app: &App<S>,
    mut instance: Instance,
    body: &[u8],
) -> Result<ReportReply, Failure> {
    let report: Report = crate::http::response::parse_json(body, "report")?;
    if report.instance_id != instance.id {
        return Err(Failure::forbidden(format!(
            "the report is instance {}'s, the path and credential instance {}'s",
            report.instance_id, instance.id
        )));
    }
    let now = now_ms();
    let before = instance.clone();
    instance.last_seen_ms = Some(now);
    instance.status = report.status;
    instance.applied_serial = report.applied_serial;
    instance.agent_version = report.agent_version;
    if let Some(facts) = report.facts {
        instance.facts = facts;
    }
    if report.metrics.is_some() {
        instance.metrics = report.metrics;
    }
    for result in &report.desired_results {
        instance
            .desired_results
            .retain(|r| r.serial != result.serial);
        instance.desired_results.push(result.clone());
    }
    instance.desired_results.sort_by_key(|r| r.serial);
    let excess = instance.desired_results.len().saturating_sub(KEPT_RESULTS);
    instance.desired_results.drain(..excess);
    let newest_event = report.events.iter().map(|e| e.id).max();
    let events: Vec<NewEvent> = report
        .events
        .iter()
        .filter(|e| e.id > before.events_cursor)
        .map(|e| host_event(&instance, e))
        .collect();
    if let Some(newest) = newest_event {
        instance.events_cursor = instance.events_cursor.max(newest);
    }
    let changed = significant_change(&before, &instance);
    let needs_commit = changed
        || !events.is_empty()
        || !report.command_results.is_empty()
        || !report.desired_results.is_empty();
    let event_count = events.len() as u64;
    if needs_commit {
        app.batcher
            .commit(ReportWrite {
                instance_id: instance.id.clone(),
                seen_ms: now,
                instance: Some(instance.clone()),
                events,
                command_results: report.command_results.clone(),
            })
            .await
            .map_err(|e| Failure(hyper::StatusCode::SERVICE_UNAVAILABLE, e))?;
        app.counters
            .events_stored
            .fetch_add(event_count, std::sync::atomic::Ordering::Relaxed);
    } else {
        app.batcher.seen(&instance.id, now);
    }
    let (desired, rotate, leader) = {
        let mut cache = app.cache.lock().unwrap_or_else(|p| p.into_inner());
        let desired = cache.desired_for_instance(&instance.environment, &instance.id);
        let issued = instance.credential.expires_ms
            - app.config.hosts.credential_lifetime.as_millis() as i64;
        let lifetime = instance.credential.expires_ms - issued;
        let rotate = now >= issued + lifetime * 67 / 100;
        cache.put_instance(instance.clone());
        let hosts = &app.config.hosts;
        let silent_ms = i64::from(hosts.missed_reports) * hosts.interval.as_millis() as i64;
        let grace_until_ms = app.started_ms + hosts.failover_grace.as_millis() as i64;
        let leader = cache.periodic_leader(&instance.environment, now, silent_ms, grace_until_ms)
            == Some(instance.id.as_str());
        (desired, rotate, leader)
    };
    let pending = app.store.pending_commands(&instance.id).await?;
    let acked: Vec<String> = report
        .command_results
        .iter()
        .map(|r| r.id.clone())
        .collect();
    let interval = app.config.hosts.interval.as_millis() as u64;
    Ok(ReportReply {
        events_ack: newest_event,
        commands_ack: acked.clone(),
        desired_results_ack: report.desired_results.iter().map(|r| r.serial).collect(),
        desired,
        commands: pending
            .into_iter()
            .filter(|c| !acked.contains(&c.id))
            .map(|c| Command {
                id: c.id,
                kind: c.kind,
            })
            .collect(),
        // ±10 % around the interval, so hosts that came back together drift apart.
        report_after_ms: Some(interval * 9 / 10 + fastrand_below(interval / 5 + 1)),
        rotate_credential: rotate,
        leader: Some(leader),
    })
}

/// Whether the row must be written now (not only its `last_seen_ms`, which is coalesced).
/// Metrics change with every window; they ride along with the next significant write or the
/// coalesced flush's row, see `batcher`.
fn significant_change(before: &Instance, after: &Instance) -> bool {
    before.status != after.status
        || before.applied_serial != after.applied_serial
        || before.agent_version != after.agent_version
        || before.facts != after.facts
        || before.desired_results != after.desired_results
        || before.events_cursor != after.events_cursor
        || (before.metrics.as_ref().map(|m| m.requests)
            != after.metrics.as_ref().map(|m| m.requests))
        || before.last_seen_ms.is_none()
}

fn host_event(instance: &Instance, event: &Event) -> NewEvent {
    NewEvent {
        environment: instance.environment.clone(),
        instance_id: Some(instance.id.clone()),
        source_id: Some(event.id),
        time_ms: event.time_ms,
        severity: match event.severity {
            Severity::Info => EventSeverity::Info,
            Severity::Warning => EventSeverity::Warn,
            Severity::Error => EventSeverity::Error,
        },
        source: event.source.clone(),
        message: event.message.clone(),
        deployment_id: None,
    }
}

pub fn controller_event(
    environment: &str,
    instance_id: Option<&str>,
    severity: EventSeverity,
    message: String,
) -> NewEvent {
    NewEvent {
        environment: environment.to_string(),
        instance_id: instance_id.map(str::to_string),
        source_id: None,
        time_ms: now_ms(),
        severity,
        source: "controller".into(),
        message,
        deployment_id: None,
    }
}

pub fn valid_instance_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !id.starts_with('.')
}

fn fastrand_below(bound: u64) -> u64 {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    u64::from_le_bytes(bytes) % bound.max(1)
}
