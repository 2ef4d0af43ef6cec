//! The operator's operations, as the API and the CLI name them after Elastic Beanstalk's
//! actions. Each writes its intent (a deployment row) before anything acts on it, so the
//! orchestrator can resume it after a crash or on another replica.

use crate::fleet::reports::controller_event;
use crate::fleet::{App, now_ms};
use crate::http::response::Failure;
use crate::model::*;
use crate::options::{CommandOptions, DeploymentPolicy};
use crate::store::{Store, StoreError};

pub fn valid_name(what: &str, name: &str) -> Result<(), Failure> {
    // Elastic Beanstalk: 4 to 40 characters for environments; letters, digits, hyphens.
    let ok = (1..=100).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with(['-', '.']);
    if ok {
        Ok(())
    } else {
        Err(Failure::bad_request(format!(
            "{what}: {name:?} must be 1 to 100 letters, digits, '-', '_' or '.'"
        )))
    }
}

pub async fn ensure_application<S: Store>(
    app: &App<S>,
    name: &str,
    description: &str,
) -> Result<Application, Failure> {
    valid_name("ApplicationName", name)?;
    if let Some(existing) = app
        .store
        .applications()
        .await?
        .into_iter()
        .find(|a| a.name == name)
    {
        return Ok(existing);
    }
    let application = Application {
        name: name.to_string(),
        description: description.to_string(),
        created_ms: now_ms(),
    };
    match app.store.create_application(&application).await {
        Ok(()) | Err(crate::store::StoreError::Conflict(_)) => Ok(application),
        Err(e) => Err(e.into()),
    }
}

pub async fn create_version<S: Store>(
    app: &App<S>,
    version: AppVersion,
) -> Result<AppVersion, Failure> {
    valid_name("VersionLabel", &version.label)?;
    ensure_application(app, &version.application, "").await?;
    if let Some(sha) = &version.sha256
        && (sha.len() != 64 || !sha.chars().all(|c| c.is_ascii_hexdigit()))
    {
        return Err(Failure::bad_request(format!(
            "Sha256: {sha:?} is not 64 hexadecimal digits"
        )));
    }
    match app.store.create_version(&version).await {
        Ok(()) => Ok(version),
        Err(crate::store::StoreError::Conflict(_)) => Err(Failure::bad_request(format!(
            "Application Version {} already exists.",
            version.label
        ))),
        Err(e) => Err(e.into()),
    }
}

pub async fn create_environment<S: Store>(
    app: &App<S>,
    name: &str,
    application: &str,
    tier: Tier,
    options: OptionSettings,
) -> Result<Environment, Failure> {
    valid_name("EnvironmentName", name)?;
    let problems = crate::options::validate(&options, app.provisioner.is_some());
    if !problems.is_empty() {
        return Err(Failure::bad_request(problems.join("; ")));
    }
    ensure_application(app, application, "").await?;
    let now = now_ms();
    let env = Environment {
        id: 0,
        name: name.to_string(),
        application: application.to_string(),
        tier,
        options,
        status: EnvStatus::Ready,
        desired_version: None,
        expected_version: None,
        expected_deployment: None,
        desired_serial: 0,
        health: PublishedHealth {
            since_ms: now,
            ..Default::default()
        },
        created_ms: now,
        updated_ms: now,
        cname: None,
    };
    let created = match app.store.create_environment(&env).await {
        Ok(created) => created,
        Err(crate::store::StoreError::Conflict(_)) => {
            return Err(Failure::bad_request(format!(
                "Environment {name} already exists."
            )));
        }
        Err(e) => return Err(e.into()),
    };
    app.store
        .append_events(&[controller_event(
            name,
            None,
            EventSeverity::Info,
            format!(
                "createEnvironment is starting. Environment {name} created with tier {tier:?}."
            ),
        )])
        .await?;
    app.refresh().await?;
    Ok(created)
}

pub async fn environment<S: Store>(app: &App<S>, name: &str) -> Result<Environment, Failure> {
    match app.store.environment(name).await? {
        Some(env) if env.status != EnvStatus::Terminated => Ok(env),
        _ => Err(Failure::not_found(format!(
            "No Environment found for EnvironmentName = '{name}'."
        ))),
    }
}

/// `UpdateEnvironment`: a new version and/or option settings → a deployment to every
/// instance (AllAtOnce). 409 while another operation runs.
pub async fn update_environment<S: Store>(
    app: &App<S>,
    name: &str,
    version_label: Option<&str>,
    options: Option<OptionSettings>,
) -> Result<Deployment, Failure> {
    let mut env = environment(app, name).await?;
    let mut merged = env.options.clone();
    if let Some(options) = &options {
        for (key, value) in options {
            if value.is_empty() {
                merged.remove(key);
            } else {
                merged.insert(key.clone(), value.clone());
            }
        }
        let problems = crate::options::validate(&merged, app.provisioner.is_some());
        if !problems.is_empty() {
            return Err(Failure::bad_request(problems.join("; ")));
        }
    }
    let label = match version_label {
        Some(label) => {
            if app.store.version(&env.application, label).await?.is_none() {
                return Err(Failure::bad_request(format!(
                    "No Application Version named '{label}' found."
                )));
            }
            label.to_string()
        }
        None => env.desired_version.clone().ok_or_else(|| {
            Failure::bad_request("VersionLabel: the environment runs no version yet; name one")
        })?,
    };
    let members = member_ids(app, &env).await?;
    let deployment = crate::deploy::new_deployment(
        0,
        &env.name,
        DeploymentKind::Deploy,
        Some(&label),
        next_serial(app, &env).await?,
        members.iter().map(String::as_str),
        now_ms(),
    );
    let deployment = batched(deployment, &CommandOptions::from(&merged));
    if options.is_none() {
        return Ok(app.store.create_deployment(&deployment).await?);
    }
    // The options are stored first: whoever sees the deployment sees them (its members'
    // desired state is built from them, once, under its serial). Refused before anything is
    // written while another operation runs; put back if one started meanwhile.
    if app.store.active_deployment(&env.name).await?.is_some() {
        return Err(crate::store::codec::busy_environment(&env.name).into());
    }
    let previous = std::mem::replace(&mut env.options, merged);
    env.updated_ms = now_ms();
    app.store.save_environment(&env).await?;
    match app.store.create_deployment(&deployment).await {
        Ok(created) => {
            app.refresh().await?;
            Ok(created)
        }
        Err(error) => {
            env.options = previous;
            app.store.save_environment(&env).await?;
            Err(error.into())
        }
    }
}

/// The serial a new deployment dispatches: above the environment's and the newest
/// deployment's (a batched deployment that failed raised its members' serial, not the
/// environment's; every deployment, restarts included, carries the highest serial so far),
/// and above every serial any host applied: a host the standby pool moves between
/// environments ignores a serial at or below the last one it applied.
pub async fn next_serial<S: Store>(app: &App<S>, env: &Environment) -> Result<u64, StoreError> {
    let newest = app.store.deployments(&env.name, 1).await?;
    let highest = newest.iter().map(|d| d.serial).max().unwrap_or(0);
    // From the cache, which every report updates: no read of every instance per deployment.
    let applied = {
        let cache = app.cache.lock().unwrap_or_else(|p| p.into_inner());
        let hosts = cache.instances.values().map(|i| i.applied_serial);
        let environments = cache.environments.values().map(|e| e.desired_serial);
        hosts.chain(environments).max().unwrap_or(0)
    };
    Ok(env.desired_serial.max(highest).max(applied) + 1)
}

/// The deployment in batches when the environment's policy is batched (EB: Rolling), with
/// the hosts to launch when it needs new ones.
fn batched(deployment: Deployment, options: &CommandOptions) -> Deployment {
    if deployment.kind != DeploymentKind::Restart
        && let Some(laid_out) = crate::deploy::fresh::layout(deployment.clone(), options)
    {
        return laid_out;
    }
    match options.policy {
        // A restart launches nothing: under every batched policy it rolls with the batch size.
        DeploymentPolicy::Rolling
        | DeploymentPolicy::RollingWithAdditionalBatch
        | DeploymentPolicy::Immutable
        | DeploymentPolicy::TrafficSplitting => {
            let size = crate::deploy::batches::batch_size(options, deployment.members.len());
            let policy = match options.policy.needs_new_hosts() {
                true => DeploymentPolicy::Rolling,
                false => options.policy,
            };
            crate::deploy::with_batches(deployment, policy.as_str(), size)
        }
        _ => deployment,
    }
}

/// `RestartAppServer`: every instance restarts its app (zero downtime on each host); in
/// batches with the deployment's batch size under a rolling policy (EB: "Elastic Beanstalk
/// also uses that value for rolling application restarts").
pub async fn restart<S: Store>(app: &App<S>, name: &str) -> Result<Deployment, Failure> {
    let env = environment(app, name).await?;
    let members = member_ids(app, &env).await?;
    // A restart changes no desired state: it carries the highest serial used so far, so that
    // the newest deployment always holds it (`next_serial` reads only that one).
    let serial = next_serial(app, &env).await? - 1;
    let deployment = crate::deploy::new_deployment(
        0,
        &env.name,
        DeploymentKind::Restart,
        env.desired_version.as_deref(),
        serial,
        members.iter().map(String::as_str),
        now_ms(),
    );
    let deployment = batched(deployment, &CommandOptions::from(&env.options));
    Ok(app.store.create_deployment(&deployment).await?)
}

/// `AbortEnvironmentUpdate`: stops the running deployment. Hosts already deploying finish on
/// their own (each host rolls back by itself if its deployment fails).
pub async fn abort<S: Store>(app: &App<S>, name: &str) -> Result<Deployment, Failure> {
    let env = environment(app, name).await?;
    let mut first = true;
    // A step of the orchestrator may land between our read and our write: the write is then
    // refused (compare-and-set) and the abort is computed again from what is stored.
    for _ in 0..ABORT_ATTEMPTS {
        let Some(active) = app.store.active_deployment(&env.name).await? else {
            if first {
                return Err(Failure::bad_request(format!(
                    "Environment named {name} is not being updated: nothing to abort."
                )));
            }
            // It finished (or was aborted by another request) meanwhile.
            break;
        };
        first = false;
        let outcome = crate::deploy::abort(&active, now_ms(), "Aborted by the operator.");
        crate::orchestrator::apply_step(app, &env, &active, outcome).await?;
        let stored = app.store.deployment(active.id).await?;
        // Aborting: no further batch; it releases the hosts it launched, then is Aborted.
        if let Some(stored) =
            stored.filter(|d| d.status.is_finished() || d.status == DeploymentStatus::Aborting)
        {
            return Ok(stored);
        }
    }
    match app
        .store
        .deployments(&env.name, 1)
        .await?
        .into_iter()
        .next()
    {
        Some(last) if last.status.is_finished() => Ok(last),
        _ => Err(Failure::conflict(format!(
            "Environment named {name}: the deployment kept changing; try the abort again."
        ))),
    }
}

/// How often an abort is computed again when a deployment step keeps landing first.
const ABORT_ATTEMPTS: usize = 5;

/// `TerminateEnvironment`: the environment stops; its instances' credentials are revoked
/// (their hosts keep serving what they run until they are shut down).
pub async fn terminate<S: Store>(app: &App<S>, name: &str) -> Result<Environment, Failure> {
    let mut env = environment(app, name).await?;
    if app.store.active_deployment(&env.name).await?.is_some() {
        return Err(Failure::conflict(format!(
            "Environment named {name} is in an invalid state for this operation. Must be Ready."
        )));
    }
    let now = now_ms();
    for instance in app.store.instances(&env.name).await? {
        if instance.revoked_ms.is_none() {
            app.store.revoke_instance(&instance.id, now).await?;
        }
    }
    env.status = EnvStatus::Terminated;
    env.updated_ms = now;
    app.store.save_environment(&env).await?;
    app.store
        .append_events(&[controller_event(
            name,
            None,
            EventSeverity::Info,
            "terminateEnvironment completed successfully.".into(),
        )])
        .await?;
    app.refresh().await?;
    Ok(env)
}

pub async fn revoke_instance<S: Store>(app: &App<S>, id: &str) -> Result<Instance, Failure> {
    let Some(instance) = app.store.instance(id).await? else {
        return Err(Failure::not_found(format!("instance {id}")));
    };
    app.store.revoke_instance(id, now_ms()).await?;
    app.store
        .append_events(&[controller_event(
            &instance.environment,
            Some(id),
            EventSeverity::Warn,
            format!("Removed instance [{id}] from your environment: its credential was revoked."),
        )])
        .await?;
    if let Some(cached) = app
        .cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .instances
        .get_mut(id)
    {
        cached.revoked_ms = Some(now_ms());
    }
    Ok(app.store.instance(id).await?.unwrap_or(instance))
}

/// The instances a deployment covers: enrolled, not revoked, in enrollment order.
async fn member_ids<S: Store>(app: &App<S>, env: &Environment) -> Result<Vec<String>, Failure> {
    Ok(app
        .store
        .instances(&env.name)
        .await?
        .into_iter()
        .filter(|i| i.revoked_ms.is_none())
        .map(|i| i.id)
        .collect())
}

pub async fn create_enrollment_token<S: Store>(
    app: &App<S>,
    environment_name: &str,
    uses: u32,
    ttl: std::time::Duration,
) -> Result<(EnrollmentToken, String), Failure> {
    let env = environment(app, environment_name).await?;
    if uses == 0 {
        return Err(Failure::bad_request("Uses: at least 1"));
    }
    if ttl > std::time::Duration::from_secs(30 * 86_400) {
        return Err(Failure::bad_request("Expires: at most 30 days (720h)"));
    }
    let token = crate::secrets::new_secret("hme_");
    let now = now_ms();
    let record = EnrollmentToken {
        id: crate::secrets::new_id("et-"),
        hash: crate::secrets::hash(&token),
        environment: env.name,
        uses_left: uses,
        expires_ms: now + ttl.as_millis() as i64,
        created_ms: now,
        revoked: false,
    };
    app.store.create_enrollment_token(&record).await?;
    Ok((record, token))
}
