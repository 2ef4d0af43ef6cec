//! The load balancer as data ([`Model`], built from the controller's cache), and the pure
//! functions that turn it into HAProxy's config, its host map, and each server's agent-check
//! answer. Nothing here touches a file or a socket.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::config::LoadBalancerConfig;
use crate::model::{Deployment, EnvStatus, Environment, Instance, MemberRole, MemberState};
use crate::options::{CommandOptions, ProcessOptions};

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
/// address, and its answer (see [`answer`]). `pool` is the standby pool's environment, which
/// serves nothing and has no backend.
pub fn model<'a>(
    environments: impl IntoIterator<Item = &'a Environment>,
    instances: impl IntoIterator<Item = &'a Instance>,
    active: &BTreeMap<String, &'a Deployment>,
    domain: &str,
    pool: Option<&str>,
) -> Model {
    let mut model = Model::default();
    let mut weights = BTreeMap::new();
    for env in environments {
        if matches!(env.status, EnvStatus::Terminated | EnvStatus::Terminating)
            || pool == Some(env.name.as_str())
        {
            continue;
        }
        let percent = CommandOptions::from(&env.options).new_version_percent;
        if let Some(split) = active
            .get(&env.name)
            .and_then(|d| crate::deploy::fresh::split_weights(d, percent))
        {
            weights.insert(env.name.clone(), split);
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
            answer(
                instance,
                active.get(&instance.environment).copied(),
                weights.get(&instance.environment).copied(),
            ),
        );
    }
    for backend in model.backends.values_mut() {
        backend.servers.sort();
    }
    model
}

/// What the responder tells HAProxy of one server: `drain` while a batch it belongs to is
/// being drained or deployed, or while it is retired; `maint` until the host serves a
/// release (it enrolled but has nothing to serve yet); `ready` otherwise, HAProxy's own
/// active checks then deciding. A ready server always carries its weight (agent-check
/// weights stay until changed): 100 %, or during a traffic split (`split`: new hosts',
/// original hosts') its side's.
pub fn answer(
    instance: &Instance,
    active: Option<&Deployment>,
    split: Option<(u32, u32)>,
) -> String {
    let member = active
        .filter(|d| crate::deploy::is_batched(d))
        .and_then(|d| d.members.iter().find(|m| m.instance_id == instance.id));
    // A launched host takes traffic once its gate counted a report with its checks passing
    // (they run while it is drained), so it is in rotation before the gate lets it pass.
    let unproven = member.is_some_and(|m| {
        m.role == MemberRole::Launch && m.state == MemberState::Deployed && m.healthy_reports == 0
    });
    let draining = unproven
        || member.is_some_and(|m| {
            matches!(
                m.state,
                MemberState::Draining
                    | MemberState::Dispatched
                    | MemberState::Launching
                    | MemberState::Retiring
                    | MemberState::Releasing
                    | MemberState::Released
            )
        });
    if draining {
        return "drain".into();
    }
    if instance.status.release.is_none() {
        return "maint".into();
    }
    let weight = match split {
        Some((new, _)) if member.is_some_and(|m| m.role == MemberRole::Launch) => new,
        Some((_, old)) => old,
        None => 100,
    };
    format!("ready {weight}%")
}

/// Every server of the model as (backend, server, address).
pub fn servers(model: &Model) -> Vec<(String, String, String)> {
    model
        .backends
        .values()
        .flat_map(|b| {
            b.servers
                .iter()
                .map(|(id, addr)| (backend_name(&b.environment), id.clone(), addr.clone()))
        })
        .collect()
}

/// The server-state file a reload loads: HAProxy's own `show servers state` (what the agent
/// and the runtime API set survives), plus a line for each server it does not have yet,
/// saying it is down. HAProxy would start a new server up and send it traffic before its
/// first check; this way it needs `rise` passing checks first, as an ELB target does.
/// HAProxy matches the lines by backend and server name (the ids are not forced).
pub fn state_with_new_servers_down(state: &str, servers: &[(String, String, String)]) -> String {
    let known: std::collections::BTreeSet<(&str, &str)> = state
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut fields = l.split(' ');
            let (_, backend, _, server) = (
                fields.next()?,
                fields.next()?,
                fields.next()?,
                fields.next()?,
            );
            Some((backend, server))
        })
        .collect();
    let mut out = state.trim_end().to_string();
    if out.is_empty() {
        return String::new();
    }
    out.push('\n');
    for (backend, server, addr) in servers {
        if known.contains(&(backend.as_str(), server.as_str())) {
            continue;
        }
        let (host, port) = addr.rsplit_once(':').unwrap_or((addr.as_str(), "0"));
        let host = host.trim_start_matches('[').trim_end_matches(']');
        // Operational state 0 (stopped), admin state 0, weights 100, then the check state.
        let _ = writeln!(
            out,
            "0 {backend} 0 {server} {host} 0 0 100 100 0 1 0 0 6 0 0 0 - {port} - 0 0 - - 0"
        );
    }
    out
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
