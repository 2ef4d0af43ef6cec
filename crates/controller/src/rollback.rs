//! `AutoRollback` (ours, not Elastic Beanstalk's): the I/O around
//! [`crate::deploy::rolling::rollback_of`]. Called when a deployment fails, and again on the
//! orchestrator's roll-up ticks, so a controller that stopped between the failure and the
//! rollback's creation creates it when it starts.

use crate::deploy::{self, FleetView, InstanceView};
use crate::fleet::{App, now_ms};
use crate::model::*;
use crate::options::CommandOptions;
use crate::orchestrator::fresh_instances;
use crate::store::{Store, StoreError, StoreResult};

/// `AutoRollback` (ours): after a failed deploy, a new deployment of the last version that
/// deployed successfully to the hosts the failed one reached, newest batch first. Does nothing
/// when the option is off, there is nothing to roll back, or another operation runs.
pub async fn auto_rollback<S: Store>(
    app: &App<S>,
    env: &Environment,
    failed: &Deployment,
) -> StoreResult<()> {
    if failed.kind != DeploymentKind::Deploy
        || failed.status != DeploymentStatus::Failed
        || !CommandOptions::from(&env.options).auto_rollback
    {
        return Ok(());
    }
    let Some(previous) = env
        .expected_version
        .clone()
        .filter(|v| Some(v) != failed.version_label.as_ref())
    else {
        return Ok(());
    };
    let instances = fresh_instances(app, &env.name).await?;
    let view = FleetView {
        desired_serial: env.desired_serial,
        instances: instances
            .iter()
            .map(|i| (i.id.clone(), InstanceView::of(i, None, None)))
            .collect(),
    };
    let Some(mut rollback) = deploy::rolling::rollback_of(failed, &view, &previous, 0, now_ms())
    else {
        return Ok(());
    };
    rollback.serial = crate::ops::next_serial(app, env).await?;
    let mut ids: Vec<&str> = rollback
        .members
        .iter()
        .map(|m| m.instance_id.as_str())
        .collect();
    ids.sort_unstable();
    let ids = ids.join(",");
    match app.store.create_deployment(&rollback).await {
        Ok(created) => {
            app.store
                .append_events(&[crate::fleet::reports::controller_event(
                    &env.name,
                    None,
                    EventSeverity::Warn,
                    format!(
                        "AutoRollback: deployment {} failed; deploying version '{previous}' back to instance(s) [{ids}] as deployment {}, newest batch first.",
                        failed.id, created.id
                    ),
                )])
                .await?;
            app.refresh().await?;
            Ok(())
        }
        // Another operation started first: it decides what the hosts run.
        Err(StoreError::Conflict(_)) => Ok(()),
        Err(e) => Err(e),
    }
}
