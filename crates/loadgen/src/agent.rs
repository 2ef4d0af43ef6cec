//! One simulated agent's life, as `src/controller_link/mod.rs` runs it: a random first delay,
//! then a report per interval paced by the reply (`report_after_ms`), backoff with jitter on
//! failures (`Retry-After` on 429/503), and a credential rotation when a reply asks for one.
//! Requests share one bounded connection pool (a semaphore caps those in flight).

use std::sync::Arc;
use std::time::{Duration, Instant};

use hostmanager_protocol::{Credential, EnrollRequest, ReportReply};
use tokio::sync::Semaphore;

use crate::client::{self, Encoding, Failure};
use crate::now_ms;
use crate::report::{Profile, SimHost, sent_up_to};
use crate::stats::{Outcome, Stats};
use hostmanager_protocol::pacing;

/// What every simulated agent shares.
#[derive(Debug)]
pub struct Shared {
    pub client: reqwest::Client,
    pub url: String,
    pub interval: Duration,
    pub profile: Profile,
    /// Caps requests in flight: the pool has this many connections at most.
    pub in_flight: Semaphore,
    pub stats: Stats,
}

/// Exchanges the enrollment token for the host's secret, retrying like the agent does when
/// the controller is busy or unreachable (enrolling thousands at once is a thundering herd).
pub async fn enroll(shared: &Shared, host: &SimHost, token: &str) -> Result<Credential, String> {
    let request = EnrollRequest {
        instance_id: host.instance_id.clone(),
        // Any stable value: the controller only checks that re-enrollments match it.
        machine_fingerprint: format!("bench-{}", host.instance_id),
        agent_version: "0.1.0".into(),
        facts: host.facts(),
    };
    let body = client::encode(&request, Encoding::Identity)?;
    let url = format!("{}/v1/enroll", shared.url);
    let mut failures = 0;
    loop {
        let answer = {
            let _permit = shared
                .in_flight
                .acquire()
                .await
                .map_err(|e| e.to_string())?;
            client::post(
                &shared.client,
                &url,
                token,
                body.clone(),
                Encoding::Identity,
            )
            .await
        };
        match answer {
            Ok(credential) => return Ok(credential),
            // A refusal (401, 409) will not change by retrying.
            Err(failure) if failure.status.is_some() && !failure.is_busy() => {
                return Err(format!(
                    "enrolling {}: {}",
                    host.instance_id, failure.message
                ));
            }
            Err(failure) if failures >= 8 => {
                return Err(format!(
                    "enrolling {}: {}",
                    host.instance_id, failure.message
                ));
            }
            Err(failure) => {
                failures += 1;
                let delay = pacing::after_failure(
                    Duration::from_secs(1),
                    failures,
                    failure.retry_after(),
                    fastrand::f64(),
                );
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Reports until the process ends.
pub async fn run(shared: Arc<Shared>, mut host: SimHost, mut credential: Credential) {
    let mut rng = fastrand::Rng::new();
    let interval = shared.interval;
    let report_url = format!("{}/v1/hosts/{}/report", shared.url, host.instance_id);
    // A fleet started together must not report in step.
    let mut due = Instant::now() + pacing::first_delay(interval, rng.f64());
    let mut failures: u32 = 0;
    loop {
        tokio::time::sleep_until(due.into()).await;
        let report = host.next_report(now_ms(), &mut rng, &shared.profile);
        let upto = sent_up_to(&report);
        let Ok(body) = client::encode(&report, Encoding::Gzip) else {
            shared.stats.record(Outcome::Error);
            due = Instant::now() + interval;
            continue;
        };
        let (answer, lag, took) = {
            let permit = shared.in_flight.acquire().await;
            let started = Instant::now();
            let lag = started.saturating_duration_since(due);
            let answer: Result<ReportReply, Failure> = client::post(
                &shared.client,
                &report_url,
                &credential.secret,
                body,
                Encoding::Gzip,
            )
            .await;
            drop(permit);
            (answer, lag, started.elapsed())
        };
        let delay = match answer {
            Ok(reply) => {
                shared.stats.record(Outcome::Ok {
                    latency_us: took.as_micros() as u64,
                    lag_us: lag.as_micros() as u64,
                });
                failures = 0;
                host.acknowledge(&reply, upto, now_ms());
                if reply.rotate_credential {
                    rotate(&shared, &host, &mut credential).await;
                }
                pacing::after_success(interval, reply.report_after_ms, rng.f64())
            }
            Err(failure) => {
                shared.stats.record(if failure.is_busy() {
                    Outcome::Busy
                } else {
                    Outcome::Error
                });
                failures += 1;
                pacing::after_failure(interval, failures, failure.retry_after(), rng.f64())
            }
        };
        due = Instant::now() + delay;
    }
}

/// `POST /v1/hosts/{id}/credential`; on failure the old secret serves on and the next reply
/// asks again (the agent's behaviour).
async fn rotate(shared: &Shared, host: &SimHost, credential: &mut Credential) {
    let url = format!("{}/v1/hosts/{}/credential", shared.url, host.instance_id);
    let Ok(body) = client::encode(&serde_json::json!({}), Encoding::Identity) else {
        return;
    };
    let _permit = shared.in_flight.acquire().await;
    let rotated: Result<Credential, Failure> = client::post(
        &shared.client,
        &url,
        &credential.secret,
        body,
        Encoding::Identity,
    )
    .await;
    match rotated {
        Ok(new) => *credential = new,
        Err(failure) => eprintln!(
            "rotation of {} failed: {}",
            host.instance_id, failure.message
        ),
    }
}
