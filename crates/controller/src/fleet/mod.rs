//! The controller's shared state: the store, a cache of instances for the report path (so a
//! report costs no database read), the environments' desired state, and the group commit.
//!
//! Replicas (PostgreSQL) each keep their own cache; it is a cache of rows the database owns,
//! refreshed from it (`refresh`), so a stale entry costs at most an extra write, never a lost
//! one: writes always carry the whole row the report produced.

pub mod batcher;
pub mod counters;
pub mod reports;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;

use hostmanager::store::ObjectStore;
use hostmanager_protocol::DesiredState;

use crate::config::Config;
use crate::model::{Deployment, Environment, Instance, Millis};
use crate::store::{Store, StoreResult};

pub use batcher::Batcher;
pub use counters::Counters;

/// Everything a request handler or a background task needs.
pub struct App<S: Store> {
    pub store: Arc<S>,
    pub config: Config,
    pub objects: Arc<dyn ObjectStore>,
    /// Signs bundle download URLs (`secrets::sign`); random per data directory, kept 0600.
    pub signing_key: Vec<u8>,
    /// When this process started: the failover grace runs from here.
    pub started_ms: Millis,
    /// This replica's name in leases.
    pub replica: String,
    pub cache: Mutex<Cache>,
    pub batcher: Batcher,
    pub counters: Counters,
    /// The environments' load balancer, when `[load_balancer]` is configured.
    pub lb: Option<Arc<crate::lb::LoadBalancer>>,
    /// Where new hosts come from, when `[provisioner]` is configured.
    pub provisioner: Option<Arc<crate::provision::Provisioner>>,
}

impl<S: Store> std::fmt::Debug for App<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("replica", &self.replica)
            .field("database", &self.config.database.describe())
            .finish_non_exhaustive()
    }
}

/// What the report path reads without a database round trip.
#[derive(Debug, Default)]
pub struct Cache {
    pub instances: HashMap<String, Instance>,
    /// Credential hash → instance id, to tell "another host's path" (403) from "no such
    /// secret" (401).
    pub by_secret: HashMap<String, String>,
    /// Per environment: its desired state for hosts (None before the first deployment).
    pub desired: HashMap<String, Option<DesiredState>>,
    /// Per instance: the desired state of the batched deployment whose batch reached it, which
    /// its replies carry instead of the environment's.
    pub targeted: HashMap<String, DesiredState>,
    /// Per environment: its unfinished deployment (the load balancer's states follow it).
    pub active: HashMap<String, Deployment>,
    pub environments: HashMap<String, Environment>,
    /// Per environment: its command leader (`command_leader`), kept as instances are put so
    /// a reply does not scan every host.
    pub leaders: HashMap<String, String>,
}

impl Cache {
    pub fn put_instance(&mut self, instance: Instance) {
        self.by_secret
            .insert(instance.credential.current.clone(), instance.id.clone());
        if let Some(previous) = &instance.credential.previous {
            self.by_secret.insert(previous.clone(), instance.id.clone());
        }
        let id = instance.id.clone();
        let environment = instance.environment.clone();
        let moved_from = self
            .instances
            .insert(id.clone(), instance)
            .map(|old| old.environment)
            .filter(|old| *old != environment);
        if let Some(old) = moved_from
            && self.leaders.get(&old) == Some(&id)
        {
            self.elect(&old);
        }
        let candidate = &self.instances[&id];
        let better = match self
            .leaders
            .get(&environment)
            .and_then(|l| self.instances.get(l))
        {
            _ if candidate.revoked_ms.is_some() => false,
            Some(leader) => {
                leader.revoked_ms.is_some()
                    || leader.environment != environment
                    || (candidate.enrolled_ms, &candidate.id) < (leader.enrolled_ms, &leader.id)
            }
            None => true,
        };
        if better {
            self.leaders.insert(environment, id);
        } else if self.leaders.get(&environment) == Some(&id) {
            // The leader was revoked: the next one in enrollment order.
            self.elect(&environment);
        }
    }

    /// Chooses `environment`'s leader again from every host of it.
    fn elect(&mut self, environment: &str) {
        let leader = self
            .instances
            .values()
            .filter(|i| i.environment == environment && i.revoked_ms.is_none())
            .min_by(|a, b| (a.enrolled_ms, &a.id).cmp(&(b.enrolled_ms, &b.id)))
            .map(|i| i.id.clone());
        match leader {
            Some(leader) => self.leaders.insert(environment.to_string(), leader),
            None => self.leaders.remove(environment),
        };
    }

    /// The desired state a reply to `instance` of `environment` carries, with whether it is
    /// the environment's command leader (it runs the bundle's leader-only container commands).
    pub fn desired_for_instance(&self, environment: &str, instance: &str) -> Option<DesiredState> {
        let mut desired = match self.targeted.get(instance) {
            Some(targeted) => Some(targeted.clone()),
            None => self.desired.get(environment).cloned().flatten(),
        }?;
        let leader = self.command_leader(environment);
        desired.deployment.command_leader = Some(leader == Some(instance));
        Some(desired)
    }

    /// The environment's command leader: its longest-enrolled host that is not revoked (the
    /// same one on every replica, and the same one while it stays).
    pub fn command_leader(&self, environment: &str) -> Option<&str> {
        self.leaders.get(environment).map(String::as_str)
    }

    /// Who sends `environment`'s periodic tasks (a worker's cron.yaml) now: the command leader
    /// while it reports; once it has been silent for `silent_ms` (and the controller is past
    /// its failover grace, `grace_until_ms`), the longest-enrolled host that still reports, so
    /// a leader that went away without being revoked does not stop the environment's tasks.
    pub fn periodic_leader(
        &self,
        environment: &str,
        now_ms: Millis,
        silent_ms: Millis,
        grace_until_ms: Millis,
    ) -> Option<&str> {
        let leader = self.command_leader(environment)?;
        let reporting = |instance: &Instance| {
            now_ms < grace_until_ms
                || instance
                    .last_seen_ms
                    .is_some_and(|seen| now_ms - seen <= silent_ms)
        };
        if self.instances.get(leader).is_some_and(reporting) {
            return Some(leader);
        }
        self.instances
            .values()
            .filter(|i| i.environment == environment && i.revoked_ms.is_none() && reporting(i))
            .min_by(|a, b| (a.enrolled_ms, &a.id).cmp(&(b.enrolled_ms, &b.id)))
            .map(|i| i.id.as_str())
            .or(Some(leader))
    }

    /// Records `environment`'s unfinished deployment (or none) and who it targets.
    pub fn set_active(
        &mut self,
        environment: &str,
        active: Option<Deployment>,
        desired: Option<DesiredState>,
    ) {
        if let Some(previous) = self.active.remove(environment) {
            for member in &previous.members {
                self.targeted.remove(&member.instance_id);
            }
        }
        let Some(active) = active else {
            return;
        };
        if let Some(desired) = desired {
            for member in crate::deploy::targeted_members(&active) {
                self.targeted
                    .insert(member.instance_id.clone(), desired.clone());
            }
        }
        self.active.insert(environment.to_string(), active);
    }
}

pub fn now_ms() -> Millis {
    jiff::Timestamp::now().as_millisecond()
}

impl<S: Store> App<S> {
    /// Loads the instances and environments into the cache (at start, and on every tick of a
    /// replica so that it sees what the others wrote).
    pub async fn refresh(&self) -> StoreResult<()> {
        let instances = self.store.all_instances().await?;
        let environments = self.store.environments().await?;
        let mut desired = HashMap::new();
        let mut active = Vec::new();
        for env in &environments {
            desired.insert(env.name.clone(), self.desired_for(env).await?);
            if env.status == crate::model::EnvStatus::Terminated {
                continue;
            }
            if let Some(deployment) = self.store.active_deployment(&env.name).await? {
                let targeted = self.deployment_desired(env, &deployment).await?;
                active.push((env.name.clone(), deployment, targeted));
            }
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        for instance in instances {
            // A row older than what this replica has seen in a report keeps the newer fields:
            // the cache is ahead of the coalesced `last_seen_ms` flush.
            match cache.instances.get(&instance.id) {
                Some(cached)
                    if cached.last_seen_ms >= instance.last_seen_ms
                        && cached.credential == instance.credential
                        && cached.revoked_ms == instance.revoked_ms
                        && cached.environment == instance.environment => {}
                _ => cache.put_instance(instance),
            }
        }
        cache.environments = environments
            .into_iter()
            .map(|e| (e.name.clone(), e))
            .collect();
        cache.desired = desired;
        cache.targeted.clear();
        cache.active.clear();
        for (name, deployment, targeted) in active {
            cache.set_active(&name, Some(deployment), targeted);
        }
        Ok(())
    }

    /// The desired state a batched deploy sends its members (`None` for a restart).
    pub async fn deployment_desired(
        &self,
        env: &Environment,
        deployment: &Deployment,
    ) -> StoreResult<Option<DesiredState>> {
        match (&deployment.version_label, deployment.kind.is_deploy()) {
            (Some(label), true) => self.desired_state(env, label, deployment.serial).await,
            _ => Ok(None),
        }
    }

    /// The environment's desired state, as every host of it gets it in its reply.
    pub async fn desired_for(&self, env: &Environment) -> StoreResult<Option<DesiredState>> {
        let Some(label) = &env.desired_version else {
            return Ok(None);
        };
        self.desired_state(env, label, env.desired_serial).await
    }

    /// Version `label` of the environment's application with its properties, as `serial`.
    async fn desired_state(
        &self,
        env: &Environment,
        label: &str,
        serial: u64,
    ) -> StoreResult<Option<DesiredState>> {
        let Some(version) = self.store.version(&env.application, label).await? else {
            return Ok(None);
        };
        Ok(Some(DesiredState {
            serial,
            deployment: hostmanager_protocol::DeploymentRequest {
                source: crate::versions::fetch_url(self, &version),
                sha256: version.sha256.clone(),
                version_label: Some(version.label.clone()),
                env: crate::options::properties(&env.options).into(),
                platform_options: crate::options::platform_options(&env.options),
                command_leader: None,
            },
        }))
    }
}

#[cfg(test)]
mod leader_tests {
    use super::Cache;
    use crate::health::fixtures::instance;

    fn host(id: &str, environment: &str, enrolled_ms: i64) -> crate::model::Instance {
        let mut host = instance(id, None, "Ok");
        host.environment = environment.to_string();
        host.enrolled_ms = enrolled_ms;
        host.credential.current = format!("secret-{id}");
        host
    }

    #[test]
    fn the_leader_is_the_longest_enrolled_host_and_the_next_one_when_it_is_revoked() {
        let mut cache = Cache::default();
        cache.put_instance(host("i-b", "web", 20));
        cache.put_instance(host("i-a", "web", 10));
        cache.put_instance(host("i-c", "web", 30));
        cache.put_instance(host("w-1", "worker", 5));
        assert_eq!(cache.command_leader("web"), Some("i-a"));
        assert_eq!(cache.command_leader("worker"), Some("w-1"));
        // A report of the leader keeps it; of another host changes nothing.
        cache.put_instance(host("i-c", "web", 30));
        cache.put_instance(host("i-a", "web", 10));
        assert_eq!(cache.command_leader("web"), Some("i-a"));
        let mut revoked = host("i-a", "web", 10);
        revoked.revoked_ms = Some(99);
        cache.put_instance(revoked);
        assert_eq!(cache.command_leader("web"), Some("i-b"));
        // A host that moves to another environment leaves its leadership behind.
        cache.put_instance(host("w-1", "web", 5));
        assert_eq!(cache.command_leader("web"), Some("w-1"));
        assert_eq!(cache.command_leader("worker"), None);
    }

    #[test]
    fn periodic_tasks_move_from_a_silent_leader_to_the_next_host_that_reports() {
        let mut cache = Cache::default();
        for (id, enrolled, seen) in [("i-a", 10, 1_000), ("i-b", 20, 9_000), ("i-c", 30, 9_500)] {
            let mut h = host(id, "web", enrolled);
            h.last_seen_ms = Some(seen);
            cache.put_instance(h);
        }
        // Within the silence allowed, or during the controller's failover grace: the leader.
        assert_eq!(cache.periodic_leader("web", 5_000, 4_000, 0), Some("i-a"));
        assert_eq!(
            cache.periodic_leader("web", 10_000, 4_000, 20_000),
            Some("i-a")
        );
        // Silent past it: the next one in enrollment order that reports.
        assert_eq!(cache.periodic_leader("web", 10_000, 4_000, 0), Some("i-b"));
        // Nobody reports: the command leader still.
        assert_eq!(cache.periodic_leader("web", 100_000, 4_000, 0), Some("i-a"));
        assert_eq!(cache.periodic_leader("worker", 10_000, 4_000, 0), None);
    }
}
