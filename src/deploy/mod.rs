//! Deployments: a request becomes a numbered deployment, queued and executed one at a time by
//! the deploy task (`engine.rs`). Every step is recorded (`steps.rs`); the agent state
//! (`state.json`: current and previous good releases) is written atomically at each commit
//! point so that a restarted agent can finish or roll back (`recovery.rs`).

mod cutover;
mod ebextensions;
mod engine;
mod entry;
mod extract;
mod fetch;
mod gate;
mod hook_output;
mod hook_steps;
mod hooks;
mod host_changes;
mod host_packages;
mod live_settings;
mod model;
mod platform;
mod ports;
mod prepare;
mod procfile;
mod reach;
mod records;
mod recovery;
mod retention;
mod runtime;
mod steps;
mod verify;
mod worker_requests;
mod write_files;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

pub use entry::{EntryProblem, check_symlink, entry_path};
pub use extract::{BundleError, copy_dir, extract_zip, extract_zip_from, hex};
pub use live_settings::ProxyApplied;
pub use model::*;
pub use procfile::{LineError, ProcfileEntry, parse_buildfile, parse_procfile};
pub use records::{env_file, settings_file};
pub use runtime::RuntimeInfo;

use crate::config::Config;
use crate::events::EventSink;
use crate::paths::Paths;
use crate::proxy::Proxy;
use crate::supervise::Supervisor;

const QUEUE_CAPACITY: usize = 16;
const RECORDS_IN_MEMORY: usize = 200;

/// Shared by the control API (submit, read) and the deploy task (execute).
#[derive(Debug)]
pub struct Engine {
    config: Arc<Config>,
    paths: Paths,
    supervisor: Supervisor,
    proxy: Proxy,
    events: EventSink,
    state: Mutex<AgentState>,
    records: Mutex<BTreeMap<u64, DeploymentRecord>>,
    requests: Mutex<HashMap<u64, Job>>,
    publish: watch::Sender<DeployState>,
    queue: mpsc::Sender<u64>,
    /// Only ever set by the crash tests (`HOSTMANAGER_TEST_PAUSE_AT`).
    test_pause: Option<steps::TestPause>,
    /// The worker daemon's intake, held during each cutover.
    intake: crate::worker::Intake,
    /// Held by each job and by recovery: a live proxy reconfiguration waits for them.
    exclusive: tokio::sync::Mutex<()>,
    /// `[health]` in force: a live reconfiguration replaces it (`set_health_settings`).
    health: Mutex<crate::config::HealthConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("invalid deployment request:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<String>),
    #[error("{QUEUE_CAPACITY} deployments are already queued; try again when one has finished")]
    QueueFull,
    #[error("cannot persist the deployment: {0}")]
    Persist(std::io::Error),
    #[error("{0}")]
    Refused(String),
}

pub type Deployer = Arc<Engine>;

impl Engine {
    /// Loads the persisted state; the receiver goes to `run`.
    pub fn load(
        config: Arc<Config>,
        paths: Paths,
        supervisor: Supervisor,
        proxy: Proxy,
        events: EventSink,
    ) -> std::io::Result<(Deployer, mpsc::Receiver<u64>)> {
        let state: AgentState = crate::fsutil::read_json(&paths.state_file())?.unwrap_or_default();
        let records = records::load_records(&paths)?;
        let (publish, _) = watch::channel(DeployState {
            current: state.current.clone(),
            active: None,
        });
        let (queue, rx) = mpsc::channel(QUEUE_CAPACITY);
        let health = Mutex::new(config.health.clone());
        let engine = Engine {
            config,
            paths,
            supervisor,
            proxy,
            events,
            state: Mutex::new(state),
            records: Mutex::new(records),
            requests: Mutex::new(HashMap::new()),
            publish,
            queue,
            test_pause: steps::TestPause::from_env(),
            intake: crate::worker::Intake::default(),
            exclusive: tokio::sync::Mutex::new(()),
            health,
        };
        if let Some(pause) = &engine.test_pause {
            engine.events.warn(
                "deploy",
                format!(
                    "{} is set: deployments stop for good in step {} (a test hook)",
                    steps::TestPause::VAR,
                    pause.step
                ),
            );
        }
        // Before the control API can accept new ones, so accepted deployments keep their order.
        engine.requeue();
        engine.prune_records_at_start();
        Ok((Arc::new(engine), rx))
    }

    /// What the worker daemon watches: held while traffic moves between releases.
    pub fn intake(&self) -> crate::worker::Intake {
        self.intake.clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<DeployState> {
        self.publish.subscribe()
    }

    pub fn current(&self) -> Option<ReleaseInfo> {
        self.lock_state().current.clone()
    }

    pub fn record(&self, id: u64) -> Option<DeploymentRecord> {
        self.lock_records().get(&id).cloned()
    }

    /// The newest deployments, newest first.
    pub fn records(&self, limit: usize) -> Vec<DeploymentRecord> {
        self.lock_records()
            .values()
            .rev()
            .take(limit)
            .cloned()
            .collect()
    }

    /// Accepts a bundle deployment: validates it, numbers it, persists it and queues it.
    pub fn submit(&self, request: DeploymentRequest) -> Result<DeploymentRecord, SubmitError> {
        self.submit_desired(request, None)
    }

    /// `submit` for a controller's desired state: the record and the release carry `serial`.
    pub fn submit_desired(
        &self,
        request: DeploymentRequest,
        serial: Option<u64>,
    ) -> Result<DeploymentRecord, SubmitError> {
        let problems = request.problems();
        if !problems.is_empty() {
            return Err(SubmitError::Invalid(problems));
        }
        let label = request.version_label.clone();
        // Records show the source without a presigned URL's signature; the job keeps the
        // full one to fetch it.
        let shown = crate::secret::shown_source(&request.source);
        let (sha256, env) = (request.sha256.clone(), request.env.clone());
        self.enqueue(
            Job::Deploy(request),
            label,
            shown,
            sha256,
            Some(env),
            serial,
        )
    }

    /// The source a queued deployment fetches: the full URL kept apart when the record shows
    /// it without its signature.
    fn queued_source(&self, record: &DeploymentRecord) -> String {
        crate::fsutil::read_json(&self.source_file(record.id))
            .ok()
            .flatten()
            .unwrap_or_else(|| record.source.clone())
    }

    /// New environment properties for the serving release (a configuration deployment).
    pub fn submit_configure(
        &self,
        request: ConfigureRequest,
    ) -> Result<DeploymentRecord, SubmitError> {
        let current = self.current().ok_or_else(|| {
            SubmitError::Refused("no release serves yet: deploy a bundle first".into())
        })?;
        // Checked now against today's properties; applied to those serving when it runs.
        let serving_env = self.release_env(current.deployment_id).map_err(|failure| {
            self.events.error("deploy", failure.message.clone());
            SubmitError::Refused(failure.message)
        })?;
        let env = request.apply(serving_env);
        let check = DeploymentRequest {
            source: current.source.clone(),
            env: env.clone(),
            ..Default::default()
        };
        let problems = check.problems();
        if !problems.is_empty() {
            return Err(SubmitError::Invalid(problems));
        }
        let label = Some(current.version_label.clone());
        self.enqueue(
            Job::Configure(request),
            label,
            current.source,
            Some(current.sha256),
            Some(env),
            None,
        )
    }

    /// Restarts the serving release with zero downtime.
    pub fn submit_restart(&self) -> Result<DeploymentRecord, SubmitError> {
        let current = self.current().ok_or_else(|| {
            SubmitError::Refused("no release serves yet: nothing to restart".into())
        })?;
        // Unreadable properties fail the job when it runs, recorded and with an event.
        let env = self.release_env(current.deployment_id).ok();
        self.enqueue(
            Job::Restart,
            Some(current.version_label),
            current.source,
            Some(current.sha256),
            env,
            current.serial,
        )
    }

    /// Goes back to the previous good release.
    pub fn submit_rollback(&self) -> Result<DeploymentRecord, SubmitError> {
        let target = self.lock_state().previous.first().cloned();
        let target = target.ok_or_else(|| {
            SubmitError::Refused("there is no previous release to roll back to".into())
        })?;
        let env = self.release_env(target.deployment_id).ok();
        self.enqueue(
            Job::Rollback,
            Some(target.version_label),
            target.source,
            Some(target.sha256),
            env,
            target.serial,
        )
    }

    fn enqueue(
        &self,
        job: Job,
        label: Option<String>,
        source: String,
        sha256: Option<String>,
        env: Option<crate::secret::Properties>,
        serial: Option<u64>,
    ) -> Result<DeploymentRecord, SubmitError> {
        let id = {
            let mut state = self.lock_state();
            state.last_deployment_id += 1;
            crate::fsutil::write_json_atomic(&self.paths.state_file(), &*state, 0o600)
                .map_err(SubmitError::Persist)?;
            state.last_deployment_id
        };
        let record = DeploymentRecord {
            id,
            kind: job.kind(),
            version_label: label.unwrap_or_else(|| default_label(&source, id)),
            source,
            sha256,
            env_keys: env.iter().flat_map(|env| env.keys().cloned()).collect(),
            status: DeploymentStatus::Queued,
            steps: Vec::new(),
            created_ms: steps::now_ms(),
            finished_ms: None,
            web_port: None,
            web_listening: None,
            message: None,
            proxy_translations: Vec::new(),
            serial,
            platform_options: match &job {
                Job::Deploy(request) => request.platform_options.clone(),
                _ => BTreeMap::new(),
            },
            command_leader: match &job {
                Job::Deploy(request) => request.command_leader,
                _ => None,
            },
            host_changes: Vec::new(),
        };
        // A change is applied when the job runs; kept on disk so a restarted agent can run it.
        if let Job::Configure(change) = &job {
            crate::fsutil::write_json_atomic(&self.change_file(id), change, 0o600)
                .map_err(SubmitError::Persist)?;
        }
        // A restarted agent fetches a queued bundle from the full source, not the shown one.
        if let Job::Deploy(request) = &job
            && request.source != record.source
        {
            crate::fsutil::write_json_atomic(&self.source_file(id), &request.source, 0o600)
                .map_err(SubmitError::Persist)?;
        }
        // Property values may be secrets: they live in their own 0600 file, never in records.
        if let Some(env) = &env {
            crate::fsutil::write_json_atomic(&self.env_file(id), env, 0o600)
                .map_err(SubmitError::Persist)?;
        }
        self.save_record(&record);
        self.lock_requests().insert(id, job);
        if self.queue.try_send(id).is_err() {
            self.lock_requests().remove(&id);
            self.update_record(id, |r| {
                r.status = DeploymentStatus::Failed;
                r.message = Some("deployment queue full".into());
            });
            return Err(SubmitError::QueueFull);
        }
        Ok(record)
    }

    /// The deploy task: executes queued deployments one at a time.
    /// Recovery runs first, inside this task, so the control API answers meanwhile (a
    /// postdeploy hook re-run after a crash may take a while).
    pub async fn run(self: Arc<Self>, mut queue: mpsc::Receiver<u64>, cancel: CancellationToken) {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = async {
                let _alone = self.exclusive.lock().await;
                self.recover().await;
            } => {}
        }
        loop {
            let id = tokio::select! {
                () = cancel.cancelled() => return,
                next = queue.recv() => match next { Some(id) => id, None => return },
            };
            let Some(job) = self.lock_requests().remove(&id) else {
                continue;
            };
            // An agent shutdown mid-deployment is finished by recovery on the next start.
            tokio::select! {
                () = cancel.cancelled() => return,
                () = async {
                    let _alone = self.exclusive.lock().await;
                    self.execute(id, job).await;
                } => {}
            }
        }
    }

    /// Changes the state on disk first and in memory only once the write succeeded, so memory
    /// never claims a commit the disk does not hold.
    fn persist_state(&self, change: impl FnOnce(&mut AgentState)) -> std::io::Result<()> {
        let mut state = self.lock_state();
        let mut next = state.clone();
        change(&mut next);
        crate::fsutil::write_json_atomic(&self.paths.state_file(), &next, 0o600)?;
        *state = next;
        let current = state.current.clone();
        drop(state);
        self.publish
            .send_modify(|published| published.current = current);
        Ok(())
    }

    /// A desired state that is already serving (a no-op) makes the serving release that
    /// state: its serial moves to the newer one, so the controller sees what it asked for.
    fn adopt_serial(&self, id: u64) {
        let Some(serial) = self.record(id).and_then(|r| r.serial) else {
            return;
        };
        let adopted = self.persist_state(|state| {
            if let Some(current) = &mut state.current {
                current.serial = Some(serial);
            }
        });
        if let Err(error) = adopted {
            tracing::error!(%error, "cannot persist state");
        }
    }

    fn publish_step(&self, id: u64, step: &str) {
        let Some(record) = self.record(id) else {
            return;
        };
        self.publish
            .send_modify(|published| match &mut published.active {
                Some(active) if active.id == id => active.step = step.to_string(),
                _ => {
                    published.active = Some(ActiveDeployment {
                        id,
                        kind: record.kind,
                        version_label: record.version_label.clone(),
                        started_ms: steps::now_ms(),
                        step: step.to_string(),
                    })
                }
            });
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, AgentState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_records(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, DeploymentRecord>> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_requests(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Job>> {
        self.requests.lock().unwrap_or_else(|p| p.into_inner())
    }
}
