//! The orchestrator: on every tick, for each environment whose lease this replica holds, it
//! steps the running deployment (the pure state machine in `deploy`) and, every report
//! interval, rolls up the environment's health (`health`). Everything it decides is written
//! before it acts on it, and the state machine emits each event on a transition only, so a
//! crash or a lease handed to another replica resumes without doing anything twice.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::deploy::{self, FleetView, StepOutcome};
use crate::fleet::{App, now_ms};
use crate::model::*;
use crate::store::{Store, StoreResult};

pub async fn run<S: Store>(app: Arc<App<S>>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(app.config.deploy.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let interval = app.config.hosts.interval.as_millis() as i64;
    let (mut last_refresh, mut last_rollup, mut last_prune) = (now_ms(), 0, 0);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = now_ms();
        if now - last_refresh >= interval {
            if let Err(error) = app.refresh().await {
                tracing::warn!(%error, "refreshing the cache");
            }
            last_refresh = now;
        }
        let rollup_due = now - last_rollup >= interval;
        if rollup_due {
            last_rollup = now;
        }
        let environments: Vec<Environment> = {
            let cache = app.cache.lock().unwrap_or_else(|p| p.into_inner());
            cache.environments.values().cloned().collect()
        };
        for env in environments {
            if env.status == EnvStatus::Terminated {
                continue;
            }
            if let Err(error) = tend(&app, &env.name, rollup_due).await {
                tracing::warn!(environment = %env.name, %error, "orchestrating");
            }
        }
        if now - last_prune >= 3_600_000 {
            last_prune = now;
            let before = now - app.config.events_retention.as_millis() as i64;
            if let Ok(true) = app.store.try_lease("retention", &app.replica, now, now + 60_000).await {
                match app.store.prune_events(before).await {
                    Ok(0) => {}
                    Ok(count) => tracing::info!(count, "old events deleted"),
                    Err(error) => tracing::warn!(%error, "deleting old events"),
                }
            }
        }
    }
}

/// One environment's turn, when this replica holds its lease.
async fn tend<S: Store>(app: &App<S>, name: &str, rollup_due: bool) -> StoreResult<()> {
    let now = now_ms();
    let lease = app.config.deploy.lease.as_millis() as i64;
    if !app.store.try_lease(&format!("environment:{name}"), &app.replica, now, now + lease).await? {
        return Ok(());
    }
    let Some(mut env) = app.store.environment(name).await? else {
        return Ok(());
    };
    let instances = fresh_instances(app, name).await?;
    if let Some(active) = app.store.active_deployment(name).await? {
        if begin(app, &mut env, &active).await? {
            // The desired state changed: replies carry it from now on.
            app.refresh().await?;
        }
        let view = FleetView::new(&instances, &app.config.deploy, &env, &active);
        let outcome = deploy::step(&active, &view, now);
        apply_step(app, &env, &active, outcome).await?;
    }
    if rollup_due {
        let env = app.store.environment(name).await?.unwrap_or(env);
        rollup(app, env, &instances).await?;
    }
    Ok(())
}

/// Makes the environment's desired state the deployment's (deploy) or queues its commands
/// (restart). Idempotent: does nothing when already done. Returns whether it changed the
/// desired state.
async fn begin<S: Store>(app: &App<S>, env: &mut Environment, active: &Deployment) -> StoreResult<bool> {
    match active.kind {
        DeploymentKind::Deploy if env.desired_serial < active.serial => {
            env.desired_serial = active.serial;
            env.desired_version = active.version_label.clone();
            env.status = EnvStatus::Updating;
            env.updated_ms = now_ms();
            app.store.save_environment(env).await?;
            Ok(true)
        }
        DeploymentKind::Restart => {
            let mut changed = active.clone();
            for member in changed.members.iter_mut().filter(|m| m.command_id.is_none()) {
                let id = format!("restart-{}-{}", active.id, member.instance_id);
                if app.store.command(&id).await?.is_none() {
                    app.store
                        .queue_command(&QueuedCommand {
                            id: id.clone(),
                            instance_id: member.instance_id.clone(),
                            kind: hostmanager_protocol::CommandKind::Restart,
                            deployment_id: Some(active.id),
                            created_ms: now_ms(),
                            result: None,
                        })
                        .await?;
                }
                member.command_id = Some(id);
            }
            if changed != *active {
                app.store.save_deployment(&changed).await?;
            }
            if env.status != EnvStatus::Updating {
                env.status = EnvStatus::Updating;
                app.store.save_environment(env).await?;
            }
            Ok(false)
        }
        _ => Ok(false),
    }
}

/// Writes what a step decided: the deployment, its events, and when it ended the
/// environment's status and expected version.
pub async fn apply_step<S: Store>(app: &App<S>, env: &Environment, before: &Deployment, outcome: StepOutcome) -> StoreResult<()> {
    let deployment = outcome.deployment;
    if deployment != *before {
        app.store.save_deployment(&deployment).await?;
    }
    if !outcome.events.is_empty() {
        let events: Vec<NewEvent> = outcome
            .events
            .into_iter()
            .map(|event| NewEvent {
                environment: env.name.clone(),
                instance_id: event.instance_id,
                source_id: None,
                time_ms: now_ms(),
                severity: event.severity,
                source: "controller".into(),
                message: event.message,
                deployment_id: Some(deployment.id),
            })
            .collect();
        app.store.append_events(&events).await?;
    }
    if deployment.status.is_finished() && !before.status.is_finished() {
        let mut env = app.store.environment(&env.name).await?.unwrap_or_else(|| env.clone());
        env.status = EnvStatus::Ready;
        env.updated_ms = now_ms();
        if deployment.status == DeploymentStatus::Succeeded && deployment.kind == DeploymentKind::Deploy {
            env.expected_version = deployment.version_label.clone();
            env.expected_deployment = Some(deployment.id);
        }
        app.store.save_environment(&env).await?;
        app.refresh().await?;
    }
    Ok(())
}

/// The environment's instances as fresh as this replica knows them: the database's rows, or
/// this replica's cache when it saw a newer report (the cache is ahead of coalesced writes).
async fn fresh_instances<S: Store>(app: &App<S>, name: &str) -> StoreResult<Vec<Instance>> {
    let rows = app.store.instances(name).await?;
    let cache = app.cache.lock().unwrap_or_else(|p| p.into_inner());
    Ok(rows
        .into_iter()
        .map(|row| match cache.instances.get(&row.id) {
            Some(cached) if cached.last_seen_ms > row.last_seen_ms && cached.revoked_ms == row.revoked_ms => cached.clone(),
            _ => row,
        })
        .collect())
}

async fn rollup<S: Store>(app: &App<S>, mut env: Environment, instances: &[Instance]) -> StoreResult<()> {
    let active = app.store.active_deployment(&env.name).await?;
    let now = now_ms();
    let evaluation = crate::health::evaluate(&crate::health::RollupInput {
        published: &env.health,
        expected_version: env.expected_version.as_deref(),
        expected_deployment: env.expected_deployment,
        instances,
        active: active.as_ref(),
        now_ms: now,
        interval_ms: app.config.hosts.interval.as_millis() as i64,
        missed_reports: app.config.hosts.missed_reports,
        grace_until_ms: app.started_ms + app.config.hosts.failover_grace.as_millis() as i64,
    });
    if evaluation.published != env.health {
        env.health = evaluation.published.clone();
        app.store.save_environment(&env).await?;
        let mut cache = app.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.environments.insert(env.name.clone(), env.clone());
    }
    if let Some((severity, message)) = evaluation.event {
        app.store
            .append_events(&[crate::fleet::reports::controller_event(&env.name, None, severity, message)])
            .await?;
    }
    Ok(())
}
