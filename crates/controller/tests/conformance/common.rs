//! Builders for the conformance cases: small, valid model values that a case then changes.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use hostmanager_controller::model::*;
use hostmanager_controller::store::Store;
use hostmanager_protocol::{HostFacts, HostStatus};

pub fn app(name: &str) -> Application {
    Application {
        name: name.into(),
        description: format!("{name} app"),
        created_ms: 1_000,
    }
}

pub fn version(application: &str, label: &str, created_ms: Millis) -> AppVersion {
    AppVersion {
        application: application.into(),
        label: label.into(),
        source: format!("upload:{application}/{label}.zip"),
        sha256: Some("ab".repeat(32)),
        description: String::new(),
        size_bytes: Some(4096),
        created_ms,
    }
}

pub fn env(name: &str, application: &str) -> Environment {
    Environment {
        id: 0,
        name: name.into(),
        application: application.into(),
        tier: Tier::Web,
        options: [(
            "aws:elasticbeanstalk:command:DeploymentPolicy".into(),
            "AllAtOnce".into(),
        )]
        .into_iter()
        .collect(),
        status: EnvStatus::Ready,
        expected_version: None,
        expected_deployment: None,
        desired_serial: 0,
        desired_version: None,
        health: PublishedHealth::default(),
        created_ms: 2_000,
        updated_ms: 2_000,
        cname: None,
    }
}

/// An application and an environment of it, created.
pub async fn app_env<S: Store>(store: &S, name: &str) -> Environment {
    let app_name = format!("{name}-app");
    store
        .create_application(&app(&app_name))
        .await
        .expect("create application");
    store
        .create_environment(&env(name, &app_name))
        .await
        .expect("create environment")
}

pub fn credential(secret: &str) -> CredentialHashes {
    CredentialHashes {
        current: format!("sha-{secret}"),
        expires_ms: 9_000_000,
        previous: None,
        previous_until_ms: 0,
    }
}

pub fn instance(id: &str, environment: &str, fingerprint: &str) -> Instance {
    Instance {
        id: id.into(),
        environment: environment.into(),
        enrolled_ms: 3_000,
        machine_fingerprint: fingerprint.into(),
        facts: HostFacts {
            advertised_addr: Some("10.0.0.1:80".into()),
            availability_zone: Some("az-1".into()),
            instance_type: None,
            launched_at: None,
        },
        agent_version: "1.0.0".into(),
        credential: credential(id),
        revoked_ms: None,
        last_seen_ms: None,
        status: HostStatus::default(),
        metrics: None,
        applied_serial: 0,
        events_cursor: 0,
        desired_results: Vec::new(),
    }
}

pub fn token(id: &str, environment: &str, uses: u32, expires_ms: Millis) -> EnrollmentToken {
    EnrollmentToken {
        id: id.into(),
        hash: format!("hash-{id}"),
        environment: environment.into(),
        uses_left: uses,
        expires_ms,
        created_ms: 1_000,
        revoked: false,
    }
}

/// An environment with one instance enrolled in it (token `hash-<env>-token`).
pub async fn enrolled<S: Store>(store: &S, env_name: &str, ids: &[&str]) -> Vec<Instance> {
    app_env(store, env_name).await;
    let token = token(&format!("{env_name}-token"), env_name, 1_000, 10_000_000);
    store
        .create_enrollment_token(&token)
        .await
        .expect("create token");
    let mut out = Vec::new();
    for id in ids {
        let enrolled = store
            .enroll(
                &token.hash,
                &instance(id, env_name, &format!("machine-{id}")),
                5_000,
            )
            .await
            .expect("enroll")
            .expect("enrollment accepted");
        out.push(enrolled);
    }
    out
}

pub fn event(
    env: &str,
    instance: Option<&str>,
    source_id: Option<u64>,
    time_ms: Millis,
) -> NewEvent {
    NewEvent {
        environment: env.into(),
        instance_id: instance.map(Into::into),
        source_id,
        time_ms,
        severity: EventSeverity::Info,
        source: "test".into(),
        message: format!("event at {time_ms}"),
        deployment_id: None,
    }
}

pub fn deployment(environment: &str, status: DeploymentStatus, created_ms: Millis) -> Deployment {
    Deployment {
        id: 0,
        environment: environment.into(),
        kind: DeploymentKind::Deploy,
        version_label: Some("v1".into()),
        serial: 1,
        policy: "AllAtOnce".into(),
        status,
        created_ms,
        finished_ms: None,
        message: None,
        members: Vec::new(),
    }
}

pub fn seen_only(instance_id: &str, seen_ms: Millis) -> ReportWrite {
    ReportWrite {
        instance_id: instance_id.into(),
        seen_ms,
        instance: None,
        events: Vec::new(),
        command_results: Vec::new(),
    }
}

/// Runs every future concurrently in this task (the cases take `&S`, so no `spawn`).
pub async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs
        .into_iter()
        .map(|o| o.expect("every future finished"))
        .collect()
}
