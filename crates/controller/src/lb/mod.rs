//! The environments' load balancer: a real HAProxy the controller configures and runs
//! ([`haproxy`]), one backend per environment with a server per enrolled instance (its
//! nginx), chosen by host name through a map (so a CNAME swap is a map change, no reload).
//! Each server's state comes from the controller through HAProxy's agent-check
//! ([`agent_check`]), computed from the running deployment ([`render::answer`]); HAProxy's
//! active health checks judge the rest.
//!
//! Every tick the model is rebuilt from the cache; a changed config is checked and reloaded,
//! a changed map is set at runtime, and the servers' states (`show stat`) are read back for
//! the deployments' drain and gate.

pub mod agent_check;
pub mod haproxy;
pub mod render;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::config::LoadBalancerConfig;
use crate::deploy::LbServer;
use crate::fleet::App;
use crate::model::Deployment;
use crate::store::Store;

pub struct LoadBalancer {
    pub config: LoadBalancerConfig,
    pub haproxy: haproxy::Haproxy,
    /// `None` until the first model is built: the responder then answers nothing, which
    /// leaves HAProxy's states as they are (a restarting controller must not mark every
    /// server `maint` before it knows them).
    answers: Mutex<Option<BTreeMap<String, String>>>,
    stats: Mutex<Option<BTreeMap<(String, String), LbServer>>>,
    /// Wakes the loop before its tick (a swap, a deployment step).
    pub wake: tokio::sync::Notify,
}

impl std::fmt::Debug for LoadBalancer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadBalancer")
            .field("listen", &self.config.listen)
            .finish_non_exhaustive()
    }
}

impl LoadBalancer {
    pub fn new(config: LoadBalancerConfig) -> Self {
        Self {
            haproxy: haproxy::Haproxy {
                bin: config.haproxy.clone(),
                dir: config.dir.clone(),
            },
            config,
            answers: Mutex::new(None),
            stats: Mutex::new(None),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// The agent-check answer for `environment/instance`: `maint` for a server the
    /// controller does not know; `None` before the controller knows any.
    pub fn answer(&self, key: &str) -> Option<String> {
        let answers = lock(&self.answers);
        let answers = answers.as_ref()?;
        Some(
            answers
                .get(key)
                .cloned()
                .unwrap_or_else(|| "maint".to_string()),
        )
    }

    /// The server's state as HAProxy last reported it; `None` when HAProxy has no such server
    /// or could not be asked.
    pub fn server(&self, environment: &str, instance: &str) -> Option<LbServer> {
        lock(&self.stats)
            .as_ref()?
            .get(&(render::backend_name(environment), instance.to_string()))
            .cloned()
    }

    /// Whether HAProxy answered the last `show stat`.
    pub fn reachable(&self) -> bool {
        lock(&self.stats).is_some()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

pub async fn run<S: Store>(app: Arc<App<S>>, lb: Arc<LoadBalancer>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(app.config.deploy.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut applied_config, mut applied_map) = (None::<String>, None::<String>);
    let mut last_problem = None::<String>;
    let mut last_unusable = Vec::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
            _ = lb.wake.notified() => {}
        }
        let model = {
            let cache = app.cache.lock().unwrap_or_else(|p| p.into_inner());
            let active: BTreeMap<String, &Deployment> =
                cache.active.iter().map(|(k, v)| (k.clone(), v)).collect();
            render::model(
                cache.environments.values(),
                cache.instances.values(),
                &active,
                &lb.config.domain,
                app.provisioner.as_ref().and_then(|p| p.pool()),
            )
        };
        *lock(&lb.answers) = Some(model.answers.clone());
        if model.unusable != last_unusable {
            for (id, addr) in &model.unusable {
                tracing::warn!(instance = %id, address = %addr, "left out of the load balancer: its advertised address is not host:port");
            }
            last_unusable = model.unusable.clone();
        }
        let config = render::config(&model, &lb.config);
        let map = render::host_map(&model);
        if applied_config.is_none() && lb.haproxy.serves(&config, &map) {
            // A restarted controller finds HAProxy running what it would write: no reload.
            applied_config = Some(config.clone());
            applied_map = Some(map.clone());
        }
        let stopped = lb.haproxy.running().is_none() && !lb.haproxy.answers().await;
        let problem = if applied_config.as_ref() != Some(&config) || stopped {
            let applied = match lb
                .haproxy
                .apply(&config, &map, &render::servers(&model))
                .await
            {
                Ok(()) => took_config(&lb, &model).await,
                Err(problem) => Err(problem),
            };
            match applied {
                Ok(()) => {
                    tracing::info!(
                        backends = model.backends.len(),
                        servers = model
                            .backends
                            .values()
                            .map(|b| b.servers.len())
                            .sum::<usize>(),
                        "load balancer configured"
                    );
                    applied_config = Some(config);
                    applied_map = Some(map);
                    None
                }
                Err(problem) => Some(problem),
            }
        } else if applied_map.as_ref() != Some(&map) {
            swap_map(&lb, &model, &map).await.map_or_else(Some, |()| {
                applied_map = Some(map);
                None
            })
        } else {
            None
        };
        let stats = lb.haproxy.stats().await;
        let problem = problem.or_else(|| stats.as_ref().err().cloned());
        *lock(&lb.stats) = stats.ok();
        // Said once per change, not once per tick.
        if problem != last_problem {
            match &problem {
                Some(problem) => tracing::error!(%problem, "load balancer"),
                None if last_problem.is_some() => tracing::info!("load balancer healthy again"),
                None => {}
            }
            last_problem = problem;
        }
    }
}

/// Waits until HAProxy runs exactly the model's servers: a reload signalled while the
/// previous one is still under way can be lost, and is then tried again on the next tick.
async fn took_config(lb: &LoadBalancer, model: &render::Model) -> Result<(), String> {
    let wanted: std::collections::BTreeSet<(String, String)> = model
        .backends
        .values()
        .flat_map(|b| {
            b.servers
                .iter()
                .map(|(id, _)| (render::backend_name(&b.environment), id.clone()))
        })
        .collect();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Ok(stats) = lb.haproxy.stats().await
            && stats
                .keys()
                .cloned()
                .collect::<std::collections::BTreeSet<_>>()
                == wanted
        {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(
                "HAProxy did not take the new config within 10 s (it is tried again)".into(),
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Points every host name at its backend in the running HAProxy, then writes the file so a
/// later reload reads the same.
async fn swap_map(lb: &LoadBalancer, model: &render::Model, map: &str) -> Result<(), String> {
    for backend in model.backends.values() {
        lb.haproxy
            .set_map(&backend.cname, &render::backend_name(&backend.environment))
            .await?;
    }
    lb.haproxy.write_map(map)
}
