//! The provisioner seam: where the new hosts come from that `RollingWithAdditionalBatch`,
//! `Immutable` and `TrafficSplitting` need, and where they go when a deployment is done with
//! them. Three kinds ([`ProvisionerConfig`]):
//! - [`standby`]: enrolled idle hosts of a pool environment, moved into the environment that
//!   needs them and back into the pool when released;
//! - [`local`]: agents started on this machine, each in a fresh root (demos and tests);
//! - [`ec2`]: the environment's EC2 Auto Scaling group, grown and shrunk through the AWS SDK
//!   (the instances' user data enrolls them).
//!
//! The deployment machine (pure) asks for hosts by count and releases them by id; the
//! orchestrator calls the provisioner and records the ids it got as the deployment's members
//! before anything else happens to them.

pub mod ec2;
pub mod local;
pub mod standby;

use crate::config::ProvisionerConfig;
use crate::fleet::App;
use crate::model::{Deployment, EventSeverity, MemberState};
use crate::store::{Store, StoreResult};

/// What went wrong, in words an operator can act on (shown in the deployment's events).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProvisionError(pub String);

impl ProvisionError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

#[derive(Debug)]
pub enum Provisioner {
    Standby(standby::StandbyPool),
    Local(local::LocalProvisioner),
    Ec2(ec2::Ec2Provisioner),
}

impl Provisioner {
    /// The provisioner `config` describes; `controller_url` is what local agents report to.
    pub async fn new(config: &ProvisionerConfig, controller_url: &str) -> Self {
        match config {
            ProvisionerConfig::Standby { pool } => Self::Standby(standby::StandbyPool::new(pool)),
            ProvisionerConfig::Local(local) => {
                Self::Local(local::LocalProvisioner::new(local.clone(), controller_url))
            }
            ProvisionerConfig::Ec2(ec2) => Self::Ec2(ec2::Ec2Provisioner::new(ec2).await),
        }
    }

    /// `standby pool "standby"`, `local agents in /var/lib/…`, `EC2 Auto Scaling group …`.
    pub fn describe(&self, environment: &str) -> String {
        match self {
            Self::Standby(pool) => format!("the standby pool {:?}", pool.pool()),
            Self::Local(local) => format!("local agents in {}", local.dir().display()),
            Self::Ec2(ec2) => format!("EC2 Auto Scaling group {:?}", ec2.group_name(environment)),
        }
    }

    /// The environment hosts are taken from, which is no application's environment (the load
    /// balancer has no backend for it and no deployment runs there).
    pub fn pool(&self) -> Option<&str> {
        match self {
            Self::Standby(pool) => Some(pool.pool()),
            _ => None,
        }
    }

    /// Asks for `count` new hosts for `environment`; returns their instance ids (the ids
    /// they enroll or report with). They join the environment once they enroll (local,
    /// EC2) or at once (standby).
    pub async fn launch<S: Store>(
        &self,
        app: &App<S>,
        environment: &str,
        count: usize,
    ) -> Result<Vec<String>, ProvisionError> {
        match self {
            Self::Standby(pool) => pool.take(app, environment, count).await,
            Self::Local(local) => local.launch(app, environment, count).await,
            Self::Ec2(ec2) => ec2.launch(environment, count).await,
        }
    }

    /// Gives hosts back: into the pool (standby), or terminated and their enrollment revoked
    /// (local, EC2). Hosts already gone are not an error.
    pub async fn release<S: Store>(
        &self,
        app: &App<S>,
        environment: &str,
        ids: &[String],
    ) -> Result<(), ProvisionError> {
        if ids.is_empty() {
            return Ok(());
        }
        match self {
            Self::Standby(pool) => return pool.give_back(app, ids).await,
            Self::Local(local) => local.terminate(ids).await?,
            Self::Ec2(ec2) => ec2.terminate(environment, ids).await?,
        }
        let now = crate::fleet::now_ms();
        for id in ids {
            match app.store.revoke_instance(id, now).await {
                // Launched but never enrolled: nothing to revoke.
                Ok(()) | Err(crate::store::StoreError::NotFound(_)) => {}
                Err(e) => return Err(ProvisionError::new(format!("revoking {id}: {e}"))),
            }
        }
        Ok(())
    }
}

/// What a deployment step asked of the provisioner, done after the step is stored: the hosts
/// to release (asked again on every step until they are gone), and the current batch's
/// unnamed members, named with the hosts launched for them and stored before anything else
/// happens to those hosts. A launch that fails marks those members Failed with the
/// provisioner's words, which fails the deployment on its next step. Returns the deployment
/// as stored.
pub async fn apply<S: Store>(
    app: &App<S>,
    deployment: Deployment,
    launch: usize,
    release: &[String],
) -> StoreResult<Deployment> {
    let environment = deployment.environment.clone();
    if !release.is_empty() {
        match &app.provisioner {
            Some(provisioner) => match provisioner.release(app, &environment, release).await {
                Ok(()) => app.refresh().await?,
                Err(error) => {
                    tracing::warn!(%environment, hosts = ?release, %error, "releasing hosts (asked again on the next step)");
                }
            },
            None => {
                tracing::warn!(%environment, hosts = ?release, "no [provisioner] configured: these hosts cannot be released")
            }
        }
    }
    if launch == 0 {
        return Ok(deployment);
    }
    let launched = match &app.provisioner {
        Some(provisioner) => provisioner
            .launch(app, &environment, launch)
            .await
            .map_err(|e| format!("{} ({})", e.0, provisioner.describe(&environment))),
        None => Err("this controller has no [provisioner] configured".to_string()),
    };
    let mut named = deployment.clone();
    let batch = crate::deploy::rolling::current_batch(&named).unwrap_or(0);
    let slots = named.members.iter_mut().filter(|m| {
        m.batch == batch && crate::deploy::fresh::is_slot(m) && m.state == MemberState::Pending
    });
    let event = match &launched {
        Ok(ids) => {
            for (member, id) in slots.zip(ids) {
                member.instance_id = id.clone();
                member.state = MemberState::Launching;
            }
            let mut sorted = ids.clone();
            sorted.sort_unstable();
            (
                EventSeverity::Info,
                format!(
                    "Added instance(s) [{}] to your environment.",
                    sorted.join(",")
                ),
            )
        }
        Err(error) => {
            for member in slots {
                member.state = MemberState::Failed;
                member.message = Some(error.clone());
                member.done_ms = Some(crate::fleet::now_ms());
            }
            (
                EventSeverity::Error,
                format!("Launching {launch} instance(s) failed: {error}"),
            )
        }
    };
    if let Err(error) = app.store.save_deployment(&named, &deployment).await {
        // Changed meanwhile (an abort): the hosts just launched belong to no deployment.
        if let (Ok(ids), Some(provisioner)) = (&launched, &app.provisioner) {
            let _ = provisioner.release(app, &environment, ids).await;
        }
        return Err(error);
    }
    let mut record = crate::fleet::reports::controller_event(&environment, None, event.0, event.1);
    record.deployment_id = Some(named.id);
    app.store.append_events(&[record]).await?;
    Ok(named)
}
