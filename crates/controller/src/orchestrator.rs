//! The orchestrator: on every tick, for each environment whose lease this replica holds, it
//! steps the running deployment (the pure state machine in `deploy`) and, every report
//! interval, rolls up the environment's health (`health`). Everything it decides is written
//! before it acts on it, and the state machine emits each event on a transition only, so a
//! crash or a lease handed to another replica resumes without doing anything twice.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::deploy::{self, DeploySettings, FleetView, InstanceView, StepOutcome};
use crate::fleet::{App, now_ms};
use crate::health::{self, Evaluation, RollupInput};
use crate::model::*;
use crate::options::CommandOptions;
use crate::store::{Store, StoreError, StoreResult};

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
            // A pass over many environments can take seconds; a stopping controller does not
            // finish it (every step is stored, so the next start resumes where this one was).
            if stop.is_cancelled() {
                return;
            }
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
            if let Ok(true) = app
                .store
                .try_lease("retention", &app.replica, now, now + 60_000)
                .await
            {
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
    if !app
        .store
        .try_lease(
            &format!("environment:{name}"),
            &app.replica,
            now,
            now + lease,
        )
        .await?
    {
        return Ok(());
    }
    let active = app.store.active_deployment(name).await?;
    // Most ticks have nothing to do: no deployment runs and no roll-up is due. Reading the
    // environment's instances then would cost a query per environment per tick for nothing.
    if active.is_none() && !rollup_due {
        return Ok(());
    }
    let Some(mut env) = app.store.environment(name).await? else {
        return Ok(());
    };
    let instances = fresh_instances(app, name).await?;
    if let Some(active) = active {
        if begin(app, &mut env, &active).await? {
            // The desired state changed: replies carry it from now on.
            app.refresh().await?;
        }
        let view = fleet_view(app, &env, &active, &instances).await?;
        let outcome = deploy::step(&active, &view, &settings(app, &env), now);
        apply_step(app, &env, &active, outcome).await?;
    } else if rollup_due {
        // A controller that stopped between a failed deployment and its rollback's creation
        // creates it now (nothing newer was started meanwhile, or this does nothing).
        if let Some(last) = app.store.deployments(name, 1).await?.into_iter().next() {
            crate::rollback::auto_rollback(app, &env, &last).await?;
        }
    }
    if rollup_due {
        let env = app.store.environment(name).await?.unwrap_or(env);
        rollup(app, env, &instances).await?;
    }
    Ok(())
}

/// The deployment machine's settings: the environment's options, with the health gate the
/// controller's configuration may shorten (tests, small fleets).
pub fn settings<S: Store>(app: &App<S>, env: &Environment) -> DeploySettings {
    let mut settings = DeploySettings::new(&CommandOptions::from(&env.options), env.tier);
    settings.margin_s = app.config.deploy.timeout_margin.as_secs();
    if let Some(reports) = app.config.deploy.health_gate_reports {
        settings.gate_reports = reports;
    }
    if let Some(span) = app.config.deploy.health_gate_min {
        settings.gate_min_ms = span.as_millis() as u64;
    }
    if let Some(evaluation) = app.config.deploy.evaluation_time {
        settings.evaluation_ms = evaluation.as_millis() as u64;
    }
    settings
}

/// What the deployment machine sees of the fleet: each member's last report, its outcome for
/// the deployment's serial and its restart command's result.
async fn fleet_view<S: Store>(
    app: &App<S>,
    env: &Environment,
    active: &Deployment,
    instances: &[Instance],
) -> StoreResult<FleetView> {
    let mut view = FleetView {
        desired_serial: env.desired_serial,
        ..FleetView::default()
    };
    for instance in instances {
        let result = instance
            .desired_results
            .iter()
            .find(|r| r.serial == active.serial)
            .cloned();
        let member = active.members.iter().find(|m| m.instance_id == instance.id);
        let command = match member.and_then(|m| m.command_id.as_deref()) {
            Some(id) => app.store.command(id).await?.and_then(|c| c.result),
            None => None,
        };
        let mut host = InstanceView::of(instance, result, command);
        host.lb = app
            .lb
            .as_ref()
            .and_then(|lb| lb.server(&env.name, &instance.id));
        view.instances.insert(instance.id.clone(), host);
    }
    Ok(view)
}

/// Makes the environment's desired state the deployment's (deploy) and marks the
/// environment Updating. Idempotent. Returns whether it changed the desired state.
async fn begin<S: Store>(
    app: &App<S>,
    env: &mut Environment,
    active: &Deployment,
) -> StoreResult<bool> {
    // A batched deployment reaches its members one batch at a time (the cache's targeted
    // desired states); the environment's own desired state changes when it succeeds.
    let raise = active.kind.is_deploy()
        && !deploy::is_batched(active)
        && env.desired_serial < active.serial;
    if raise {
        env.desired_serial = active.serial;
        env.desired_version = active.version_label.clone();
    }
    if raise || env.status != EnvStatus::Updating {
        env.status = EnvStatus::Updating;
        env.updated_ms = now_ms();
        app.store.save_environment_state(env).await?;
    }
    Ok(raise)
}

/// Writes what a step decided: the deployment, its events, and when it ended the
/// environment's status and expected version.
pub async fn apply_step<S: Store>(
    app: &App<S>,
    env: &Environment,
    before: &Deployment,
    outcome: StepOutcome,
) -> StoreResult<()> {
    let mut deployment = outcome.deployment;
    if deployment != *before {
        match app.store.save_deployment(&deployment, before).await {
            // Changed meanwhile (an operator's abort, or another replica's step): this step
            // was computed from what no longer is; its commands and events are dropped, and
            // the next step starts from what is.
            Err(StoreError::Conflict(_)) => return Ok(()),
            saved => saved?,
        }
    }
    // The step's events first: they say why hosts are launched or released.
    if !outcome.events.is_empty() {
        app.store.append_events(&outcome.events).await?;
    }
    if outcome.launch > 0 || !outcome.release.is_empty() {
        match crate::provision::apply(app, deployment.clone(), outcome.launch, &outcome.release)
            .await
        {
            Ok(named) => deployment = named,
            Err(StoreError::Conflict(_)) => return Ok(()),
            Err(error) => return Err(error),
        }
    }
    // Queueing is idempotent by id, so the same command asked for on every step is queued
    // once (a crash before it is made good by the next step).
    for (instance_id, command_id) in &outcome.commands {
        if app.store.command(command_id).await?.is_none() {
            app.store
                .queue_command(&QueuedCommand {
                    id: command_id.clone(),
                    instance_id: instance_id.clone(),
                    kind: hostmanager_protocol::CommandKind::Restart,
                    deployment_id: Some(deployment.id),
                    created_ms: now_ms(),
                    result: None,
                })
                .await?;
        }
    }
    if deployment != *before {
        let desired = app.deployment_desired(env, &deployment).await?;
        let active = (!deployment.status.is_finished()).then(|| deployment.clone());
        app.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .set_active(&env.name, active, desired);
        if let Some(lb) = &app.lb {
            lb.wake.notify_one();
        }
    }
    if deployment.status.is_finished() && !before.status.is_finished() {
        let mut env = app
            .store
            .environment(&env.name)
            .await?
            .unwrap_or_else(|| env.clone());
        env.status = EnvStatus::Ready;
        env.updated_ms = now_ms();
        if deployment.status == DeploymentStatus::Succeeded && deployment.kind.is_deploy() {
            env.expected_version = deployment.version_label.clone();
            env.expected_deployment = Some(deployment.id);
            if env.desired_serial < deployment.serial {
                env.desired_serial = deployment.serial;
                env.desired_version = deployment.version_label.clone();
            }
        }
        app.store.save_environment_state(&env).await?;
        app.refresh().await?;
        crate::rollback::auto_rollback(app, &env, &deployment).await?;
    }
    Ok(())
}

/// The environment's instances as fresh as this replica knows them: the database's rows, or
/// this replica's cache when it saw a newer report (the cache is ahead of coalesced writes).
pub async fn fresh_instances<S: Store>(app: &App<S>, name: &str) -> StoreResult<Vec<Instance>> {
    let rows = app.store.instances(name).await?;
    let cache = app.cache.lock().unwrap_or_else(|p| p.into_inner());
    Ok(rows
        .into_iter()
        .map(|row| match cache.instances.get(&row.id) {
            Some(cached)
                if cached.last_seen_ms > row.last_seen_ms
                    && cached.revoked_ms == row.revoked_ms
                    && cached.environment == row.environment =>
            {
                cached.clone()
            }
            _ => row,
        })
        .collect())
}

/// The environment's health as of now, without publishing it: the roll-up and the health
/// endpoints share it.
pub async fn evaluate<S: Store>(
    app: &App<S>,
    env: &Environment,
    instances: &[Instance],
) -> StoreResult<Evaluation> {
    let active = app.store.active_deployment(&env.name).await?;
    // Enough history to name the deployment behind any release a host still serves.
    let deployments_by_serial: BTreeMap<u64, i64> = app
        .store
        .deployments(&env.name, 100)
        .await?
        .into_iter()
        .filter(|d| d.kind.is_deploy())
        .map(|d| (d.serial, d.id))
        .collect();
    let now = now_ms();
    let interval_ms = app.config.hosts.interval.as_millis() as u64;
    let missed = app.config.hosts.missed_reports;
    Ok(health::evaluate(&RollupInput {
        published: &env.health,
        expected_version: env.expected_version.as_deref(),
        expected_deployment: env.expected_deployment,
        instances,
        active: active.as_ref(),
        budget_ms: settings(app, env).budget_ms(),
        deployments_by_serial: &deployments_by_serial,
        now_ms: now,
        interval_ms,
        missed_reports: missed,
        grace_until_ms: app.started_ms + app.config.hosts.failover_grace.as_millis() as i64,
        // A host that stopped reporting stops counting in the request metrics when it would
        // become NoData.
        metrics_newer_than_ms: now - (u64::from(missed) * interval_ms) as i64,
    }))
}

async fn rollup<S: Store>(
    app: &App<S>,
    mut env: Environment,
    instances: &[Instance],
) -> StoreResult<()> {
    let evaluation = evaluate(app, &env, instances).await?;
    if evaluation.published != env.health {
        env.health = evaluation.published.clone();
        app.store.save_environment_state(&env).await?;
        let mut cache = app.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.environments.insert(env.name.clone(), env.clone());
    }
    if let Some((severity, message)) = evaluation.event {
        app.store
            .append_events(&[crate::fleet::reports::controller_event(
                &env.name, None, severity, message,
            )])
            .await?;
    }
    Ok(())
}
