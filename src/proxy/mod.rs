//! The nginx in front of the app. Each config is rendered into its own generation directory,
//! checked with `nginx -t`, and only then made active (symlink flip + SIGHUP). A config that
//! fails the check is never activated: the previous generation keeps serving.
//!
//! Invariant: `active` always points at a generation that passed `nginx -t`.

mod generations;
mod keeper;
mod nginx;
pub mod overrides;
mod render;
mod view;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

pub use generations::StagedConfig;
pub use nginx::NginxRunner;
pub use render::{NginxModel, RenderedFile, UPSTREAM, render};
pub use view::{ConfigFile, ConfigView};

use crate::config::ProxyConfig;
use crate::events::EventSink;
use crate::paths::Paths;
use crate::supervise::{StopHold, Watched, read_stat};

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("nginx rejected the new configuration ({generation}): {message}")]
    Invalid { generation: String, message: String },
    #[error("nginx did not start: {0}")]
    Start(String),
    #[error("nginx did not load the new configuration: {0}")]
    Reload(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the bundle's nginx overrides cannot be used on this host: {}", shown_refusals(.0))]
    Refused(Vec<overrides::Refusal>),
}

fn shown_refusals(refusals: &[overrides::Refusal]) -> String {
    refusals
        .iter()
        .map(|refusal| format!(".platform/nginx/{refusal}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// What `hostmanager status` shows about nginx.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyStatus {
    pub enabled: bool,
    pub url: String,
    pub running: bool,
    pub pid: Option<i32>,
    pub generation: Option<String>,
    pub upstream_port: Option<u16>,
    /// Stopped by `stop-apps`: nginx stays down until a job starts the apps again.
    #[serde(default)]
    pub held: bool,
    /// How many times the proxy task has checked that nginx runs as it should (after each
    /// master exit, hold change or activation).
    #[serde(default)]
    pub checks: u64,
}

#[derive(Debug, Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ProxyConfig,
    /// `app.port` and `app.alternate_port`: an override that proxies to them means the app.
    app_ports: [u16; 2],
    paths: Paths,
    runner: NginxRunner,
    events: EventSink,
    /// One config change at a time.
    change: tokio::sync::Mutex<()>,
    active: Mutex<Option<StagedConfig>>,
    /// `stop-apps`: keeps nginx down.
    hold: StopHold,
    /// Wakes the proxy task after a change of master (activation, stop); one stored permit.
    wake: tokio::sync::Notify,
    checks: AtomicU64,
}

impl Proxy {
    pub fn new(
        config: ProxyConfig,
        app_ports: [u16; 2],
        paths: Paths,
        events: EventSink,
        hold: StopHold,
    ) -> Self {
        let runner = NginxRunner::new(config.nginx_binary.clone(), paths.nginx_dir());
        let active = generations::read_active(&runner);
        let inner = Inner {
            config,
            app_ports,
            paths,
            runner,
            events,
            change: tokio::sync::Mutex::new(()),
            active: Mutex::new(active),
            hold,
            wake: tokio::sync::Notify::new(),
            checks: AtomicU64::new(0),
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    pub fn enabled(&self) -> bool {
        self.inner.config.enabled
    }

    /// The address clients use: the listen address, with a wildcard shown as loopback.
    pub fn url(&self) -> String {
        let listen = self.inner.config.listen;
        let host = if listen.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            listen.ip().to_string()
        };
        format!("http://{host}:{}/", listen.port())
    }

    pub fn listen(&self) -> std::net::SocketAddr {
        self.inner.config.listen
    }

    pub fn active(&self) -> Option<StagedConfig> {
        self.inner
            .active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn status(&self) -> ProxyStatus {
        let active = self.active();
        let pid = if self.enabled() {
            self.inner.runner.master()
        } else {
            None
        };
        ProxyStatus {
            enabled: self.enabled(),
            url: self.url(),
            running: pid.is_some(),
            pid,
            generation: active.as_ref().map(|a| a.generation.clone()),
            upstream_port: active.map(|a| a.upstream_port),
            held: self.inner.hold.is_held(),
            checks: self.inner.checks.load(Ordering::SeqCst),
        }
    }

    /// The generation nginx serves, file by file (`hostmanager proxy config`).
    pub fn config_view(&self) -> Option<ConfigView> {
        self.active().as_ref().map(view::config_view)
    }

    /// Renders a config for `upstream_port` plus the app's `.platform/nginx` overrides, writes it
    /// to a new generation and runs `nginx -t` on it. Nothing that serves is touched.
    pub async fn stage(
        &self,
        upstream_port: u16,
        overrides: Option<&Path>,
    ) -> Result<StagedConfig, ProxyError> {
        let _change = self.inner.change.lock().await;
        let runner = &self.inner.runner;
        generations::prepare_dirs(&self.inner.paths, runner)?;
        let files = render(&self.model(upstream_port));
        let host = self.host(upstream_port);
        let staged = generations::write(runner, &files, &host, upstream_port, overrides)?;
        if let Err(message) = runner.test(&staged.dir.join("nginx.conf")).await {
            let generation = staged.generation.clone();
            generations::discard(&staged);
            return Err(ProxyError::Invalid {
                generation,
                message,
            });
        }
        Ok(staged)
    }

    /// Makes `staged` the live config: flip `active`, then reload (or start) nginx, then wait up
    /// to `drain` for the old workers to finish their in-flight requests.
    pub async fn activate(&self, staged: &StagedConfig, drain: Duration) -> Result<(), ProxyError> {
        let _change = self.inner.change.lock().await;
        let runner = &self.inner.runner;
        let previous = self.active();
        generations::point_active(runner, staged)?;
        let outcome = match runner.master() {
            None => runner.start().await.map(|_| ()).map_err(ProxyError::Start),
            Some(master) => self.reload(master, drain).await,
        };
        match outcome {
            Ok(()) => {
                *self.inner.active.lock().unwrap_or_else(|p| p.into_inner()) = Some(staged.clone());
                generations::prune(runner, staged, previous.as_ref());
                // The master may be new: the proxy task watches that one now.
                self.inner.wake.notify_one();
                Ok(())
            }
            Err(error) => {
                // Keep the symlink on a config nginx is known to run.
                if let Some(previous) = &previous {
                    let _ = generations::point_active(runner, previous);
                }
                Err(error)
            }
        }
    }

    /// Starts nginx on the active generation if it is not running (agent start, crash), unless
    /// `stop-apps` holds it down.
    pub async fn ensure_running(&self) -> Result<Option<i32>, ProxyError> {
        if !self.enabled() || self.active().is_none() || self.inner.hold.is_held() {
            return Ok(self.inner.runner.master());
        }
        let _change = self.inner.change.lock().await;
        if let Some(pid) = self.inner.runner.master() {
            return Ok(Some(pid));
        }
        generations::prepare_dirs(&self.inner.paths, &self.inner.runner)?;
        self.inner
            .runner
            .start()
            .await
            .map(Some)
            .map_err(ProxyError::Start)
    }

    /// Graceful stop (SIGQUIT), for `hostmanager stop-apps`: waits for the master's exit on its
    /// pidfd, SIGKILL at the deadline.
    pub async fn stop(&self, deadline: Duration) {
        let _change = self.inner.change.lock().await;
        let Some(master) = self.inner.runner.master() else {
            return;
        };
        let watched = read_stat(master)
            .and_then(|stat| Watched::adopt(master, stat.start_time).ok().flatten());
        let _ = self.inner.runner.signal(master, Signal::SIGQUIT);
        let exited = match &watched {
            Some(watched) => tokio::time::timeout(deadline, watched.exited())
                .await
                .is_ok(),
            None => self.inner.runner.master().is_none(),
        };
        if !exited && self.inner.runner.master().is_some() {
            let _ = self.inner.runner.signal(master, Signal::SIGKILL);
        }
        self.inner.wake.notify_one();
    }

    async fn reload(&self, master: i32, drain: Duration) -> Result<(), ProxyError> {
        let old_workers = nginx::workers(master);
        self.inner
            .runner
            .signal(master, Signal::SIGHUP)
            .map_err(ProxyError::Reload)?;
        // New workers prove the new config is live; the old ones leave once drained. Each
        // check reads only the master's children; the pause between checks grows.
        let mut pause = nginx::Pause::new();
        let load_deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let current = nginx::workers(master);
            if current.iter().any(|pid| !old_workers.contains(pid)) {
                break;
            }
            if Instant::now() > load_deadline {
                let tail = crate::fsutil::tail_lines(
                    &self.inner.paths.nginx_log_dir().join("error.log"),
                    3,
                );
                return Err(ProxyError::Reload(format!(
                    "no new workers after SIGHUP; error.log: {tail}"
                )));
            }
            pause.sleep().await;
        }
        let mut pause = nginx::Pause::new();
        let drain_deadline = Instant::now() + drain;
        while nginx::workers(master)
            .iter()
            .any(|pid| old_workers.contains(pid))
        {
            if Instant::now() > drain_deadline {
                self.inner.events.warn(
                    "proxy",
                    format!("old nginx workers still busy after the {drain:?} drain deadline"),
                );
                break;
            }
            pause.sleep().await;
        }
        Ok(())
    }

    /// What the translations of a bundle's overrides map EB's platform to.
    fn host(&self, upstream_port: u16) -> overrides::Host {
        let config = &self.inner.config;
        let mut app_ports: std::collections::BTreeSet<u16> =
            config.platform_ports.iter().copied().collect();
        app_ports.extend(self.inner.app_ports);
        overrides::Host {
            app_ports,
            app_endpoint: format!("127.0.0.1:{upstream_port}"),
            upstream: UPSTREAM.to_string(),
            listen: config.listen,
            pid_file: self.inner.runner.pid_file(),
            log_dir: self.inner.paths.nginx_log_dir(),
            worker_user: generations::WORKER_USER.to_string(),
        }
    }

    fn model(&self, upstream_port: u16) -> NginxModel {
        let config = &self.inner.config;
        let runner = &self.inner.runner;
        let paths = &self.inner.paths;
        let mime = Path::new("/etc/nginx/mime.types");
        NginxModel {
            worker_processes: config.worker_processes.clone(),
            worker_connections: config.worker_connections,
            listen: config.listen,
            client_max_body_size: config.client_max_body_size.clone(),
            upstream_port,
            pid_file: runner.pid_file(),
            temp_dir: runner.temp_dir(),
            html_dir: runner.html_dir(),
            error_log: paths.nginx_log_dir().join("error.log"),
            access_log: paths.nginx_log_dir().join("access.log"),
            healthd_dir: paths.healthd_log_dir(),
            mime_types: mime.exists().then(|| mime.to_path_buf()),
        }
    }
}
