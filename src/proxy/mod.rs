//! The nginx in front of the app. Each config is rendered into its own generation directory,
//! checked with `nginx -t`, and only then made active. A cutover changes the app's port in
//! nginx's memory through the traffic switch (`switch/`), without a reload; nginx is reloaded
//! only when the config itself changes (or where its Lua module is missing). A config that
//! fails the check is never activated: the previous generation keeps serving.
//!
//! Invariant: `active` always points at a generation that passed `nginx -t`.

mod activation;
mod generations;
mod keeper;
mod nginx;
pub mod overrides;
mod render;
pub mod switch;
mod view;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

pub use generations::StagedConfig;
pub use nginx::NginxRunner;
pub use render::{NginxModel, RenderedFile, UPSTREAM, render};
pub use switch::SwitchMode;
pub use view::{ConfigFile, ConfigView};

use switch::RuntimeSwitch;

use crate::config::ProxyConfig;
use crate::events::EventSink;
use crate::paths::Paths;
use crate::supervise::StopHold;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("nginx rejected the new configuration ({generation}): {message}")]
    Invalid { generation: String, message: String },
    #[error("nginx did not start: {0}")]
    Start(String),
    #[error("nginx did not load the new configuration: {0}")]
    Reload(String),
    #[error("nginx's traffic switch did not take the new port: {0}")]
    Switch(String),
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
    /// How a cutover changes the port (known once the agent has checked nginx's modules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switch: Option<SwitchMode>,
}

#[derive(Debug, Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Replaced by a live reconfiguration (`reconfigure`); `enabled`, `nginx_binary`,
    /// `modules_dir` and `platform_ports` never change while the agent runs.
    config: Mutex<ProxyConfig>,
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
    /// Whether nginx runs the traffic switch, checked once (`switch::detect`).
    switch: tokio::sync::OnceCell<Result<RuntimeSwitch, String>>,
    /// A worker host's read timeout (seconds) for the daemon's long requests.
    worker_timeout: Mutex<Option<u64>>,
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
            config: Mutex::new(config),
            app_ports,
            paths,
            runner,
            events,
            change: tokio::sync::Mutex::new(()),
            active: Mutex::new(active),
            hold,
            wake: tokio::sync::Notify::new(),
            checks: AtomicU64::new(0),
            switch: tokio::sync::OnceCell::new(),
            worker_timeout: Mutex::new(None),
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The next configs staged give nginx this read timeout (a worker's), or its default.
    pub fn set_worker_timeout(&self, seconds: Option<u64>) {
        *self
            .inner
            .worker_timeout
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = seconds;
    }

    /// The proxy settings in force (the next config staged is rendered from them).
    pub fn settings(&self) -> ProxyConfig {
        self.inner
            .config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Takes new settings for the configs staged from now on, and returns the previous ones
    /// (to put back when nginx refuses the new config). The keys nginx cannot change while it
    /// runs keep their values (`reload::plan` names them as needing a restart).
    pub fn reconfigure(&self, next: ProxyConfig) -> ProxyConfig {
        let mut config = self.inner.config.lock().unwrap_or_else(|p| p.into_inner());
        let kept = ProxyConfig {
            enabled: config.enabled,
            nginx_binary: config.nginx_binary.clone(),
            modules_dir: config.modules_dir.clone(),
            // The runtime switch's accepted ports are fixed when it is detected.
            platform_ports: config.platform_ports.clone(),
            ..next
        };
        std::mem::replace(&mut *config, kept)
    }

    pub fn enabled(&self) -> bool {
        self.settings().enabled
    }

    /// The address clients use: the listen address, with a wildcard shown as loopback.
    pub fn url(&self) -> String {
        let listen = self.settings().listen;
        let host = if listen.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            listen.ip().to_string()
        };
        format!("http://{host}:{}/", listen.port())
    }

    pub fn listen(&self) -> std::net::SocketAddr {
        self.settings().listen
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
            switch: self.inner.switch.get().map(|found| match found {
                Ok(_) => SwitchMode::Runtime,
                Err(reason) => SwitchMode::Reload {
                    reason: reason.clone(),
                },
            }),
        }
    }

    /// The runtime switch when this host's nginx can run it; checked once, and said once in
    /// an event when it cannot.
    async fn runtime_switch(&self) -> Option<RuntimeSwitch> {
        let inner = &self.inner;
        let settings = self.settings();
        let found = inner
            .switch
            .get_or_init(|| async {
                let runner = &inner.runner;
                let probe = runner.dir().join("probe");
                let detected = switch::detect(runner, &settings.modules_dir, &probe).await;
                let _ = std::fs::remove_dir_all(&probe);
                match detected {
                    Ok(modules) => Ok(RuntimeSwitch {
                        modules,
                        lua_dir: runner.lua_dir(),
                        socket: runner.switch_socket(),
                        port_file: runner.port_file(),
                        ports: switch_ports(&settings, inner.app_ports),
                    }),
                    Err(reason) => {
                        inner.events.warn(
                            "proxy",
                            format!(
                                "{reason}: each cutover reloads nginx instead, which closes every client keep-alive connection (each fails one request); see docs/nginx.md"
                            ),
                        );
                        Err(reason)
                    }
                }
            })
            .await;
        found.as_ref().ok().cloned()
    }

    /// The generation nginx serves, file by file (`hostmanager proxy config`).
    pub fn config_view(&self) -> Option<ConfigView> {
        self.active().as_ref().map(view::config_view)
    }

    /// Renders a config for `upstream_port` plus the app's `.platform/nginx` overrides, writes it
    /// to a new generation and runs `nginx -t` on it. Nothing that serves is touched. With the
    /// runtime switch the port is not in the config: staging the same bundle again for the
    /// other port gives the same files (the same digest), which activate without a reload.
    /// `static_files` are (URL path, directory of the release) pairs nginx serves itself.
    pub async fn stage(
        &self,
        upstream_port: u16,
        overrides: Option<&Path>,
        static_files: &[(String, String)],
    ) -> Result<StagedConfig, ProxyError> {
        let switch = self.runtime_switch().await;
        let _change = self.inner.change.lock().await;
        let runner = &self.inner.runner;
        generations::prepare_dirs(&self.inner.paths, runner)?;
        if let Some(switch) = &switch {
            generations::write_switch_module(switch)?;
        }
        let mut model = self.model(upstream_port, switch.clone());
        // Through the `current` link: the same files for every release, so a cutover between
        // two releases of one bundle stays a switch in memory rather than a reload.
        let current = self.inner.paths.current_link();
        model.static_files = static_files
            .iter()
            .map(|(url, dir)| (url.clone(), current.join(dir)))
            .collect();
        let files = render(&model);
        let host = self.host(upstream_port, switch.as_ref());
        let staged = generations::write(
            runner,
            &files,
            &host,
            upstream_port,
            switch.is_some(),
            overrides,
        )?;
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

    /// What the translations of a bundle's overrides map EB's platform to.
    fn host(&self, upstream_port: u16, switch: Option<&RuntimeSwitch>) -> overrides::Host {
        let config = &self.settings();
        let mut app_ports: std::collections::BTreeSet<u16> =
            config.platform_ports.iter().copied().collect();
        app_ports.extend(self.inner.app_ports);
        overrides::Host {
            app_ports,
            app_endpoint: format!("127.0.0.1:{upstream_port}"),
            balancer: switch.map(|_| switch::conf::BALANCER.to_string()),
            modules: switch.map(|s| s.modules.clone()).unwrap_or_default(),
            upstream: UPSTREAM.to_string(),
            listen: config.listen,
            pid_file: self.inner.runner.pid_file(),
            log_dir: self.inner.paths.nginx_log_dir(),
            worker_user: generations::WORKER_USER.to_string(),
        }
    }

    fn model(&self, upstream_port: u16, switch: Option<RuntimeSwitch>) -> NginxModel {
        let config = &self.settings();
        let runner = &self.inner.runner;
        let paths = &self.inner.paths;
        let mime = Path::new("/etc/nginx/mime.types");
        NginxModel {
            worker_processes: config.worker_processes.clone(),
            worker_connections: config.worker_connections,
            listen: config.listen,
            client_max_body_size: config.client_max_body_size.clone(),
            upstream_port,
            switch,
            pid_file: runner.pid_file(),
            temp_dir: runner.temp_dir(),
            html_dir: runner.html_dir(),
            error_log: paths.nginx_log_dir().join("error.log"),
            access_log: paths.nginx_log_dir().join("access.log"),
            healthd_dir: paths.healthd_log_dir(),
            mime_types: mime.exists().then(|| mime.to_path_buf()),
            static_files: Vec::new(),
            worker_timeout: *self
                .inner
                .worker_timeout
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        }
    }
}

/// The ports the runtime switch accepts: the app's two, and every fixed port a web process may
/// be found listening on instead of `$PORT` (`deploy/ports.rs`). Sorted.
fn switch_ports(config: &ProxyConfig, app_ports: [u16; 2]) -> Vec<u16> {
    let platforms = [
        crate::config::PlatformName::Python,
        crate::config::PlatformName::Nodejs,
        crate::config::PlatformName::Go,
        crate::config::PlatformName::Java,
    ];
    let mut ports: std::collections::BTreeSet<u16> = app_ports.into_iter().collect();
    ports.extend(config.platform_ports.iter().copied());
    ports.extend(platforms.iter().filter_map(|p| p.default_port()));
    ports.into_iter().collect()
}
