//! Making a staged config the one that serves, starting and stopping nginx.
//!
//! A cutover to a generation with the same files as the one nginx loaded (the same digest) is
//! a port change through the traffic switch: no reload, no client connection closed. A new
//! config is a reload (SIGHUP), whose old workers drain their requests and then close their
//! client connections: the least damage nginx allows, paid only when the config changes.
//! Either way the old port's requests in flight are waited for (up to the drain deadline)
//! before the caller stops the old release.

use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::time::Instant;

use super::switch::SwitchClient;
use super::{Proxy, ProxyError, StagedConfig, generations, nginx};
use crate::supervise::{Watched, read_stat};

impl Proxy {
    /// Makes `staged` the live config: flip `active`, then switch the port (same config) or
    /// reload (new config) or start nginx, then wait up to `drain` for the requests still
    /// going to the previous port (and for a reload's old workers) to finish.
    pub async fn activate(&self, staged: &StagedConfig, drain: Duration) -> Result<(), ProxyError> {
        let _change = self.inner.change.lock().await;
        let runner = &self.inner.runner;
        let previous = self.active();
        let old_port = previous
            .as_ref()
            .map(|p| p.upstream_port)
            .filter(|port| *port != staged.upstream_port);
        let outcome = async {
            if staged.runtime_switch {
                // Read by nginx at its start and at each reload: what a restarted nginx serves.
                generations::write_port_file(runner, staged.upstream_port)?;
            }
            generations::point_active(runner, staged)?;
            match runner.master() {
                None => self.start_master(staged).await.map(|_| ()),
                Some(master) if staged.runtime_switch && self.loaded(master, staged) => {
                    self.switch_port(staged.upstream_port, old_port, drain)
                        .await
                }
                Some(master) => {
                    let started = Instant::now();
                    self.reload(master, drain).await?;
                    generations::record_loaded(runner, master, &staged.digest);
                    if let (true, Some(old)) = (staged.runtime_switch, old_port) {
                        let left = drain.saturating_sub(started.elapsed());
                        self.drain_port(&self.switch_client(), old, left).await;
                    }
                    Ok(())
                }
            }
        }
        .await;
        match outcome {
            Ok(()) => {
                *self.inner.active.lock().unwrap_or_else(|p| p.into_inner()) = Some(staged.clone());
                generations::prune(runner, staged, previous.as_ref());
                // The master may be new: the proxy task watches that one now.
                self.inner.wake.notify_one();
                Ok(())
            }
            Err(error) => {
                // Keep the symlink, the port file and the switch on a config nginx is known
                // to run.
                if let Some(previous) = &previous {
                    let _ = generations::point_active(runner, previous);
                    if previous.runtime_switch {
                        let _ = generations::write_port_file(runner, previous.upstream_port);
                        if runner.master().is_some() {
                            let _ = self.switch_client().set(previous.upstream_port).await;
                        }
                    }
                }
                Err(error)
            }
        }
    }

    /// Starts nginx on the active generation if it is not running (agent start, crash), unless
    /// `stop-apps` holds it down. When it runs, checks that its switch sends traffic to the
    /// active generation's port (an agent killed between two steps of a switch).
    pub async fn ensure_running(&self) -> Result<Option<i32>, ProxyError> {
        if !self.enabled() || self.inner.hold.is_held() {
            return Ok(self.inner.runner.master());
        }
        // Checked at the agent's start, so that `status` says how cutovers will switch.
        self.runtime_switch().await;
        let Some(active) = self.active() else {
            return Ok(self.inner.runner.master());
        };
        let _change = self.inner.change.lock().await;
        let runner = &self.inner.runner;
        if let Some(pid) = runner.master() {
            if active.runtime_switch && self.loaded(pid, &active) {
                self.sync_switch(active.upstream_port).await;
            }
            return Ok(Some(pid));
        }
        generations::prepare_dirs(&self.inner.paths, runner)?;
        if active.runtime_switch {
            generations::write_port_file(runner, active.upstream_port)?;
        }
        self.start_master(&active).await.map(Some)
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

    async fn start_master(&self, active: &StagedConfig) -> Result<i32, ProxyError> {
        let runner = &self.inner.runner;
        // A master killed with SIGKILL leaves its socket file, and the next one's bind fails.
        let _ = std::fs::remove_file(runner.switch_socket());
        let pid = runner.start().await.map_err(ProxyError::Start)?;
        generations::record_loaded(runner, pid, &active.digest);
        Ok(pid)
    }

    /// Whether `master` runs the files of `staged` (the same digest as what it loaded).
    fn loaded(&self, master: i32, staged: &StagedConfig) -> bool {
        !staged.digest.is_empty()
            && generations::read_loaded(&self.inner.runner, master).as_deref()
                == Some(staged.digest.as_str())
    }

    fn switch_client(&self) -> SwitchClient {
        SwitchClient::new(&self.inner.runner.switch_socket())
    }

    async fn switch_port(
        &self,
        port: u16,
        old_port: Option<u16>,
        drain: Duration,
    ) -> Result<(), ProxyError> {
        let client = self.switch_client();
        client.set(port).await.map_err(ProxyError::Switch)?;
        if let Some(old) = old_port {
            self.drain_port(&client, old, drain).await;
        }
        Ok(())
    }

    /// Waits until no request is in flight to `port`, up to `drain`; says so when some are.
    async fn drain_port(&self, client: &SwitchClient, port: u16, drain: Duration) {
        let deadline = Instant::now() + drain;
        let mut pause = nginx::Pause::new();
        loop {
            let left = match client.read().await {
                Ok(state) => state.in_flight_on(port),
                Err(error) => {
                    self.inner.events.warn(
                        "proxy",
                        format!("cannot tell whether requests to port {port} are still in flight: {error}"),
                    );
                    return;
                }
            };
            if left == 0 {
                return;
            }
            if Instant::now() > deadline {
                self.inner.events.warn(
                    "proxy",
                    format!("{left} request(s) to the old release (port {port}) still in flight after the {drain:?} drain deadline"),
                );
                return;
            }
            pause.sleep().await;
        }
    }

    /// Puts the switch back on the active generation's port if it is elsewhere.
    async fn sync_switch(&self, port: u16) {
        let client = self.switch_client();
        match client.read().await {
            Ok(state) if state.port == Some(port) => {}
            Ok(state) => {
                let outcome = client.set(port).await;
                let shown = state.port.map_or("none".to_string(), |p| p.to_string());
                match outcome {
                    Ok(_) => self.inner.events.warn(
                        "proxy",
                        format!("nginx sent traffic to port {shown}; the active config's port is {port}: switched it back"),
                    ),
                    Err(error) => self.inner.events.error(
                        "proxy",
                        format!("nginx sends traffic to port {shown}, not the active config's {port}, and the switch failed: {error}"),
                    ),
                }
            }
            Err(error) => self.inner.events.warn(
                "proxy",
                format!("nginx's traffic switch does not answer: {error}"),
            ),
        }
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
}
