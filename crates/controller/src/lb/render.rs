//! The load balancer as data ([`Model`], built from the controller's cache), and the pure
//! functions that turn it into HAProxy's config, its host map, and each server's agent-check
//! answer. Nothing here touches a file or a socket.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::config::LoadBalancerConfig;
use crate::model::{Deployment, EnvStatus, Environment, Instance, MemberState};
use crate::options::ProcessOptions;

/// One environment behind the load balancer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub environment: String,
    pub cname: String,
    pub process: ProcessOptions,
    /// (instance id, `host:port` of its nginx), by id.
    pub servers: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Model {
    /// By environment name.
    pub backends: BTreeMap<String, Backend>,
    /// By `environment/instance` (what HAProxy's `agent-send` says): the agent-check answer.
    pub answers: BTreeMap<String, String>,
    /// Instances left out because their advertised address cannot go into HAProxy's config
    /// as it is (id, address).
    pub unusable: Vec<(String, String)>,
}

/// HAProxy's name for an environment's backend.
pub fn backend_name(environment: &str) -> String {
    format!("env_{environment}")
}

/// The default CNAME of `environment` under `domain`.
pub fn default_cname(environment: &str, domain: &str) -> String {
    format!("{}.{domain}", environment.to_ascii_lowercase())
}

/// The environment's CNAME: its own (after a swap) or the default one.
pub fn cname(env: &Environment, domain: &str) -> String {
    env.cname
        .clone()
        .unwrap_or_else(|| default_cname(&env.name, domain))
}

/// The model of every live environment: a server per enrolled instance that advertises an
/// address, and its answer (see [`answer`]).
pub fn model<'a>(
    environments: impl IntoIterator<Item = &'a Environment>,
    instances: impl IntoIterator<Item = &'a Instance>,
    active: &BTreeMap<String, &'a Deployment>,
    domain: &str,
) -> Model {
    let mut model = Model::default();
    for env in environments {
        if matches!(env.status, EnvStatus::Terminated | EnvStatus::Terminating) {
            continue;
        }
        model.backends.insert(
            env.name.clone(),
            Backend {
                environment: env.name.clone(),
                cname: cname(env, domain),
                process: ProcessOptions::from(&env.options),
                servers: Vec::new(),
            },
        );
    }
    for instance in instances {
        let (Some(backend), Some(addr), None) = (
            model.backends.get_mut(&instance.environment),
            instance.facts.advertised_addr.as_deref(),
            instance.revoked_ms,
        ) else {
            continue;
        };
        if !safe_token(addr) || !safe_token(&instance.id) {
            model.unusable.push((instance.id.clone(), addr.to_string()));
            continue;
        }
        backend
            .servers
            .push((instance.id.clone(), addr.to_string()));
        model.answers.insert(
            format!("{}/{}", instance.environment, instance.id),
            answer(instance, active.get(&instance.environment).copied()).to_string(),
        );
    }
    for backend in model.backends.values_mut() {
        backend.servers.sort();
    }
    model
}

/// What the responder tells HAProxy of one server: `drain` while a batch it belongs to is
/// being drained or deployed, `maint` until the host serves a release (it enrolled but has
/// nothing to serve yet), `ready` otherwise — HAProxy's own active checks then decide.
pub fn answer(instance: &Instance, active: Option<&Deployment>) -> &'static str {
    let in_batch = active
        .filter(|d| crate::deploy::is_batched(d))
        .and_then(|d| d.members.iter().find(|m| m.instance_id == instance.id))
        .is_some_and(|m| matches!(m.state, MemberState::Draining | MemberState::Dispatched));
    if in_batch {
        "drain"
    } else if instance.status.release.is_none() {
        "maint"
    } else {
        "ready"
    }
}

/// Names and addresses go into the config file as they are: only these characters.
fn safe_token(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 200
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:[]".contains(&b))
}

/// The host map: `cname backend` per line, sorted.
pub fn host_map(model: &Model) -> String {
    let mut lines: Vec<String> = model
        .backends
        .values()
        .map(|b| format!("{} {}\n", b.cname, backend_name(&b.environment)))
        .collect();
    lines.sort();
    lines.concat()
}

/// Where HAProxy's files live under `dir`.
#[derive(Debug)]
pub struct Paths<'a> {
    pub dir: &'a Path,
}

impl Paths<'_> {
    pub fn map(&self) -> std::path::PathBuf {
        self.dir.join("hosts.map")
    }
    pub fn admin_socket(&self) -> std::path::PathBuf {
        self.dir.join("admin.sock")
    }
    pub fn server_state(&self) -> std::path::PathBuf {
        self.dir.join("servers.state")
    }
}

/// HAProxy's whole config.
pub fn config(model: &Model, lb: &LoadBalancerConfig) -> String {
    let paths = Paths { dir: &lb.dir };
    let map = paths.map();
    let mut out = String::new();
    let agent = lb.agent_listen;
    let agent_inter = lb.agent_interval.as_millis().max(100);
    // Runtime changes (drain, weights from the agent) survive a reload through the state file,
    // which the controller writes just before it reloads.
    let _ = write!(
        out,
        "# Written by hostmanager-controller on every change: edits here are lost.\n\
         global\n\
         \x20   stats socket {admin} mode 600 level admin\n\
         \x20   server-state-file {state}\n\
         \n\
         defaults\n\
         \x20   mode http\n\
         \x20   option redispatch\n\
         \x20   retries 3\n\
         \x20   load-server-state-from-file global\n\
         \x20   timeout connect 5s\n\
         \x20   timeout client 60s\n\
         \x20   timeout server 60s\n\
         \x20   timeout http-keep-alive 10s\n\
         \n\
         frontend environments\n\
         \x20   bind {listen}\n\
         \x20   http-request return status 404 content-type text/plain string \"no environment has this host name\\n\" unless {{ req.hdr(host),lower,word(1,:),map({map}) -m found }}\n\
         \x20   use_backend %[req.hdr(host),lower,word(1,:),map({map})]\n",
        admin = paths.admin_socket().display(),
        state = paths.server_state().display(),
        listen = lb.listen,
        map = map.display(),
    );
    for backend in model.backends.values() {
        let p = &backend.process;
        let inter = lb
            .check_interval
            .map_or(u128::from(p.interval_s) * 1000, |d| d.as_millis().max(100));
        let _ = write!(
            out,
            "\nbackend {name}\n\
             \x20   balance roundrobin\n\
             \x20   option httpchk\n\
             \x20   http-check send meth GET uri {path}\n\
             \x20   http-check expect status 200\n\
             \x20   default-server weight 100 check inter {inter} rise {rise} fall {fall} agent-check agent-addr {agent_ip} agent-port {agent_port} agent-inter {agent_inter}\n",
            name = backend_name(&backend.environment),
            path = p.health_check_path,
            rise = p.rise,
            fall = p.fall,
            agent_ip = agent.ip(),
            agent_port = agent.port(),
        );
        for (id, addr) in &backend.servers {
            let _ = writeln!(
                out,
                "    server {id} {addr} agent-send \"{env}/{id}\\n\"",
                env = backend.environment
            );
        }
    }
    out
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
