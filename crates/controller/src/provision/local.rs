//! The local provisioner: a new host is an agent started on this machine in a fresh root
//! (`<dir>/<instance id>`), from a template `agent.toml` given its own instance id, loopback
//! ports, this controller's URL and a single-use enrollment token (0600, never on argv). It
//! stands in for a machine image booting (demos, tests): the agent enrolls, reports, and
//! deploys what its replies carry, as on any host. Terminating it stops its apps and nginx,
//! stops the agent and removes the root.
//!
//! The agents are their own process groups: like HAProxy, they outlive a controller restart,
//! and the roots say which ports are taken.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::ProvisionError;
use crate::config::LocalConfig;
use crate::fleet::App;
use crate::store::Store;

#[derive(Debug)]
pub struct LocalProvisioner {
    config: LocalConfig,
    controller_url: String,
    /// Serialises launches, so two never pick the same ports.
    launching: tokio::sync::Mutex<()>,
}

/// How long a stopping agent gets before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

impl LocalProvisioner {
    pub fn new(config: LocalConfig, controller_url: &str) -> Self {
        Self {
            config,
            controller_url: controller_url.to_string(),
            launching: tokio::sync::Mutex::new(()),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.config.dir
    }

    fn root(&self, id: &str) -> Result<PathBuf, ProvisionError> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(ProvisionError::new(format!(
                "{id:?} is not an instance id of the local provisioner"
            )));
        }
        Ok(self.config.dir.join(id))
    }

    /// Starts `count` agents enrolled in `environment`.
    pub async fn launch<S: Store>(
        &self,
        app: &App<S>,
        environment: &str,
        count: usize,
    ) -> Result<Vec<String>, ProvisionError> {
        let _one_at_a_time = self.launching.lock().await;
        let template = std::fs::read_to_string(&self.config.template).map_err(|e| {
            ProvisionError::new(format!("reading {}: {e}", self.config.template.display()))
        })?;
        let template: toml::Table = template
            .parse()
            .map_err(|e| ProvisionError::new(format!("{}: {e}", self.config.template.display())))?;
        let uses = u32::try_from(count).unwrap_or(u32::MAX).max(1);
        let (_, token) = crate::ops::create_enrollment_token(
            app,
            environment,
            uses,
            app.config.hosts.enrollment_token_ttl,
        )
        .await
        .map_err(|f| {
            ProvisionError::new(format!("an enrollment token for {environment}: {}", f.1))
        })?;
        std::fs::create_dir_all(&self.config.dir).map_err(|e| {
            ProvisionError::new(format!("creating {}: {e}", self.config.dir.display()))
        })?;
        searchable(&self.config.dir)?;
        let mut taken = used_ports(&self.config.dir);
        let mut ids = Vec::new();
        for _ in 0..count {
            let id = format!(
                "local-{}",
                &crate::secrets::new_id("")[..12].to_ascii_lowercase()
            );
            let started = self.start_one(&template, &id, &token, &mut taken);
            ids.push(id);
            if let Err(error) = started {
                // All or nothing: the hosts started so far would belong to no deployment.
                let _ = self.terminate(&ids).await;
                return Err(error);
            }
        }
        tracing::info!(environment, hosts = ?ids, "local hosts started");
        Ok(ids)
    }

    fn start_one(
        &self,
        template: &toml::Table,
        id: &str,
        token: &str,
        taken: &mut BTreeSet<u16>,
    ) -> Result<(), ProvisionError> {
        let ports = free_ports(&self.config, taken)?;
        let root = self.root(id)?;
        let config = host_config(template, id, ports, &self.controller_url, &root);
        write_root(&root, &config, token)
            .map_err(|e| ProvisionError::new(format!("preparing {}: {e}", root.display())))?;
        spawn_agent(&self.config.agent, &root).map_err(|e| {
            ProvisionError::new(format!("starting {}: {e}", self.config.agent.display()))
        })
    }

    /// Stops each host's apps, nginx and agent, and removes its root; hosts already gone
    /// are skipped.
    pub async fn terminate(&self, ids: &[String]) -> Result<(), ProvisionError> {
        for id in ids {
            let root = self.root(id)?;
            if !root.exists() {
                continue;
            }
            // The agent stops its apps and nginx and records the stop, so nothing restarts them.
            let stopped = tokio::process::Command::new(&self.config.agent)
                .arg("--root")
                .arg(&root)
                .arg("stop-apps")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
            match tokio::time::timeout(STOP_TIMEOUT, stopped).await {
                Ok(Ok(status)) if status.success() => {}
                outcome => tracing::warn!(instance = %id, ?outcome, "stop-apps did not succeed"),
            }
            if let Some(pid) = read_pid(&root) {
                stop_process(pid).await;
            }
            std::fs::remove_dir_all(&root)
                .map_err(|e| ProvisionError::new(format!("removing {}: {e}", root.display())))?;
            tracing::info!(instance = %id, "local host terminated");
        }
        Ok(())
    }
}

/// Every directory from `/` to `dir` lets others through (o+x): each host's app user must
/// reach its releases in `<dir>/<id>/var/app`, and the agent would refuse them at deploy.
fn searchable(dir: &Path) -> Result<(), ProvisionError> {
    use std::os::unix::fs::PermissionsExt;
    let dir = dir
        .canonicalize()
        .map_err(|e| ProvisionError::new(format!("provisioner.dir {}: {e}", dir.display())))?;
    for ancestor in dir.ancestors() {
        let mode = std::fs::metadata(ancestor)
            .map_err(|e| ProvisionError::new(format!("{}: {e}", ancestor.display())))?
            .permissions()
            .mode();
        if mode & 0o001 == 0 {
            return Err(ProvisionError::new(format!(
                "provisioner.dir {}: directory {} is mode {:04o}, so the hosts' app users cannot reach their releases; choose a directory every user can search",
                dir.display(),
                ancestor.display(),
                mode & 0o7777
            )));
        }
    }
    Ok(())
}

/// The host's `agent.toml`: the template with this host's identity, ports and controller.
fn host_config(
    template: &toml::Table,
    id: &str,
    [proxy, app, alternate]: [u16; 3],
    controller_url: &str,
    root: &Path,
) -> toml::Table {
    let mut config = template.clone();
    let mut set = |section: &str, key: &str, value: toml::Value| {
        config
            .entry(section)
            .or_insert_with(|| toml::Value::Table(Default::default()))
            .as_table_mut()
            .map(|table| table.insert(key.to_string(), value));
    };
    let address = format!("127.0.0.1:{proxy}");
    set("environment", "instance_id", id.into());
    set("app", "port", i64::from(app).into());
    set("app", "alternate_port", i64::from(alternate).into());
    set("proxy", "listen", address.clone().into());
    set("controller", "url", controller_url.into());
    set("controller", "advertise_addr", address.into());
    set(
        "controller",
        "enrollment_token_file",
        token_path(root).to_string_lossy().into_owned().into(),
    );
    config
}

fn token_path(root: &Path) -> PathBuf {
    root.join("etc/hostmanager/enrollment.token")
}

fn write_root(root: &Path, config: &toml::Table, token: &str) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let etc = root.join("etc/hostmanager");
    std::fs::create_dir_all(&etc)?;
    // The app user and nginx's workers reach into the root, as on a real host's `/`.
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755))?;
    let text = toml::to_string(config).map_err(std::io::Error::other)?;
    std::fs::write(etc.join("agent.toml"), text)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(token_path(root))?;
    std::io::Write::write_all(&mut file, token.as_bytes())
}

/// Starts the agent in its own process group, its log in the root; the pid goes to
/// `<root>/agent.pid`. A task reaps it if it exits while this controller runs.
fn spawn_agent(agent: &Path, root: &Path) -> std::io::Result<()> {
    let log = std::fs::File::create(root.join("agent.log"))?;
    let mut child = tokio::process::Command::new(agent)
        .arg("--root")
        .arg(root)
        .arg("run")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .process_group(0)
        .spawn()?;
    let pid = child.id().unwrap_or_default();
    std::fs::write(root.join("agent.pid"), format!("{pid}\n"))?;
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
    Ok(())
}

fn read_pid(root: &Path) -> Option<i32> {
    std::fs::read_to_string(root.join("agent.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|pid| *pid > 1)
}

/// SIGTERM, then SIGKILL after [`STOP_TIMEOUT`].
async fn stop_process(pid: i32) {
    use nix::sys::signal::{Signal, kill};
    let pid = nix::unistd::Pid::from_raw(pid);
    if kill(pid, Signal::SIGTERM).is_err() {
        return;
    }
    let deadline = tokio::time::Instant::now() + STOP_TIMEOUT;
    while kill(pid, None).is_ok() {
        if tokio::time::Instant::now() >= deadline {
            let _ = kill(pid, Signal::SIGKILL);
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The ports the roots under `dir` are configured with.
fn used_ports(dir: &Path) -> BTreeSet<u16> {
    let mut used = BTreeSet::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path().join("etc/hostmanager/agent.toml"))
        else {
            continue;
        };
        let Ok(config) = text.parse::<toml::Table>() else {
            continue;
        };
        let port = |section: &str, key: &str| config.get(section)?.get(key)?.as_integer();
        used.extend(
            [port("app", "port"), port("app", "alternate_port")]
                .into_iter()
                .flatten()
                .filter_map(|p| u16::try_from(p).ok()),
        );
        if let Some(listen) = config
            .get("proxy")
            .and_then(|p| p.get("listen"))
            .and_then(|l| l.as_str())
            .and_then(|l| l.rsplit_once(':'))
            .and_then(|(_, port)| port.parse().ok())
        {
            used.insert(listen);
        }
    }
    used
}

/// Three ports of the range that no root uses and that nothing listens on now.
fn free_ports(config: &LocalConfig, taken: &mut BTreeSet<u16>) -> Result<[u16; 3], ProvisionError> {
    let mut found = Vec::new();
    for port in config.ports.clone() {
        if taken.contains(&port) || std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        found.push(port);
        if found.len() == 3 {
            taken.extend(&found);
            return Ok([found[0], found[1], found[2]]);
        }
    }
    Err(ProvisionError::new(format!(
        "no three free ports left in provisioner.ports ({}-{})",
        config.ports.start(),
        config.ports.end()
    )))
}
