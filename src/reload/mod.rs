//! Live reconfiguration: SIGHUP (`systemctl reload hostmanager`) reads `agent.toml` again and
//! hands each changed part its new settings without restarting the apps (`plan.rs` says
//! which keys are live). An invalid file changes nothing. One event says what changed, what
//! took effect and which keys wait for an agent restart.

mod plan;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use plan::{Part, Plan, changed_keys, plan};

use crate::config::{self, Config, ConfigError};
use crate::controller_link::{ControllerLink, LinkStatus};
use crate::deploy::{Deployer, ProxyApplied};
use crate::events::EventSink;
use crate::local_api::ApiState;
use crate::logs::LogService;
use crate::paths::Paths;
use crate::tasks::Spawner;

/// Reads the config file: the config and the table it was read from (to name changed keys).
pub fn read(path: &Path, required: bool) -> Result<(Config, toml::Table), ConfigError> {
    let config = config::load(path, required)?;
    let table = std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or_default();
    Ok((config, table))
}

/// The `agent.toml` section a part reads.
fn section_of(part: Part) -> &'static str {
    match part {
        Part::Health => "health",
        Part::Metrics => "metrics",
        Part::Logs => "logs",
        Part::CloudWatch => "cloudwatch",
        Part::Controller => "controller",
        Part::Proxy => "proxy",
    }
}

/// The controller link, restarted with new `[controller]` settings.
#[derive(Debug)]
pub struct LinkRunner {
    pub api: Arc<ApiState>,
    pub paths: Paths,
    pub instance_id: String,
    pub status: Arc<std::sync::Mutex<LinkStatus>>,
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
}

impl LinkRunner {
    /// Builds the new link first (a token file that cannot be read leaves the old one running),
    /// then stops the old one and starts the new.
    async fn restart(
        &mut self,
        config: &Config,
        spawner: &Spawner,
        root: &CancellationToken,
    ) -> Result<(), String> {
        let url = config.controller.url.clone().unwrap_or_default();
        let link = ControllerLink::new(
            self.api.clone(),
            config,
            url.clone(),
            self.instance_id.clone(),
            &self.paths,
            self.status.clone(),
        )
        .map_err(|e| e.to_string())?;
        self.stop.cancel();
        let _ = (&mut self.task).await;
        self.status.lock().unwrap_or_else(|p| p.into_inner()).url = url;
        self.stop = root.child_token();
        self.task = spawner.spawn("controller link", &self.stop, link.run(self.stop.clone()));
        Ok(())
    }
}

/// What a reconfiguration reaches.
#[derive(Debug)]
pub struct Reloader {
    pub path: PathBuf,
    pub required: bool,
    pub running: Arc<Config>,
    pub running_table: toml::Table,
    /// Health, metrics and CloudWatch take each new config from here.
    pub publish: watch::Sender<Arc<Config>>,
    pub deployer: Deployer,
    pub logs: LogService,
    pub link: Option<LinkRunner>,
    pub events: EventSink,
    pub spawner: Spawner,
    pub root: CancellationToken,
}

impl Reloader {
    /// Reads the file again and applies what changed; every outcome is an event.
    pub async fn reload(&mut self) {
        let file = self.path.display().to_string();
        let (next, next_table) = match read(&self.path, self.required) {
            Ok(read) => read,
            Err(error) => {
                self.events.error(
                    "agent",
                    format!("SIGHUP: nothing changed, the agent keeps its running config: {error}"),
                );
                return;
            }
        };
        let plan = plan(&self.running, &self.running_table, &next, &next_table);
        if plan.is_empty() {
            self.events
                .info("agent", format!("SIGHUP: {file} is unchanged"));
            return;
        }
        let effective = Arc::new(plan.effective.clone());
        let failures = self.apply(&plan, &effective).await;
        // A part that refused its settings runs on with its previous ones: so says the config.
        let mut kept = plan.effective.clone();
        for (part, _) in &failures {
            match part {
                Part::Proxy => kept.proxy = self.running.proxy.clone(),
                Part::Logs => kept.logs = self.running.logs.clone(),
                Part::Controller => kept.controller = self.running.controller.clone(),
                Part::Health | Part::Metrics | Part::CloudWatch => {}
            }
        }
        self.running = Arc::new(kept);
        if !failures.is_empty() {
            self.publish.send_replace(self.running.clone());
        }
        // The file's sections of the parts that refused stay as they ran: the next SIGHUP
        // names their keys again.
        let mut table = next_table;
        let refused: Vec<&'static str> =
            failures.iter().map(|(part, _)| section_of(*part)).collect();
        for section in &refused {
            match self.running_table.get(*section) {
                Some(value) => table.insert((*section).to_string(), value.clone()),
                None => table.remove(*section),
            };
        }
        self.running_table = table;
        let applied: Vec<String> = plan
            .applied
            .iter()
            .filter(|key| !refused.iter().any(|s| key.split('.').next() == Some(*s)))
            .cloned()
            .collect();
        let failures: Vec<String> = failures.into_iter().map(|(_, message)| message).collect();
        self.report(&file, &applied, &plan.need_restart, &failures);
    }

    /// Hands each changed part its settings; the parts that refused them, and why.
    async fn apply(&mut self, plan: &Plan, effective: &Arc<Config>) -> Vec<(Part, String)> {
        let mut failures = Vec::new();
        // Health, metrics and CloudWatch read their sections from the published config.
        self.publish.send_replace(effective.clone());
        self.deployer.set_health_settings(effective.health.clone());
        if plan.parts.contains(&Part::Proxy) {
            match self
                .deployer
                .apply_proxy_settings(effective.proxy.clone())
                .await
            {
                Ok(ProxyApplied::Reloaded(generation)) => self.events.info(
                    "proxy",
                    format!("nginx reloaded with the new [proxy] settings ({generation})"),
                ),
                Ok(ProxyApplied::NextStart) => {}
                Err(error) => failures.push((
                    Part::Proxy,
                    format!("[proxy] kept its running settings: {error}"),
                )),
            }
        }
        if plan.parts.contains(&Part::Logs)
            && let Err(error) = self
                .logs
                .reconfigure(effective.clone(), &self.spawner, &self.root)
                .await
        {
            failures.push((
                Part::Logs,
                format!("[logs] kept its running settings: {error}"),
            ));
        }
        if plan.parts.contains(&Part::Controller)
            && let Some(link) = self.link.as_mut()
            && let Err(error) = link.restart(effective, &self.spawner, &self.root).await
        {
            failures.push((
                Part::Controller,
                format!("[controller] kept its running settings: {error}"),
            ));
        }
        failures
    }

    fn report(&self, file: &str, applied: &[String], need_restart: &[String], failures: &[String]) {
        let list = |keys: &[String]| keys.join(", ");
        if !applied.is_empty() {
            self.events.info(
                "agent",
                format!("SIGHUP: {file} applied: {}", list(applied)),
            );
        }
        if !need_restart.is_empty() {
            self.events.warn(
                "agent",
                format!(
                    "SIGHUP: {file} changed keys that need an agent restart (systemctl restart \
                     hostmanager; the apps keep running); until then the running values stay: {}",
                    list(need_restart)
                ),
            );
        }
        for failure in failures {
            self.events.error("agent", format!("SIGHUP: {failure}"));
        }
    }
}
