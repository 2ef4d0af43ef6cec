//! What a changed `agent.toml` does to a running agent (SIGHUP): which keys take effect now,
//! which need an agent restart, and the config the agent runs with afterwards. Pure.
//!
//! Live: `[health]`, `[metrics]`, `[logs]` (publication included), `[cloudwatch]` but
//! `enabled`, `[controller]` while it stays set (a controller added or removed needs a restart),
//! and `[proxy]` but the four keys nginx's runtime depends on. Everything else shapes what
//! runs (the app user, ports, supervision, deployments in progress, the worker daemon, the
//! journal) and waits for the next start; until then the agent keeps its running values.

use std::collections::BTreeSet;

use crate::config::Config;

/// A part of the agent a reconfiguration hands its new settings to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Part {
    Health,
    Metrics,
    Logs,
    CloudWatch,
    Controller,
    Proxy,
}

/// Keys of a live section that only a restart applies.
const RESTART_ONLY: &[&str] = &[
    "proxy.enabled",
    "proxy.nginx_binary",
    "proxy.modules_dir",
    "proxy.platform_ports",
    "cloudwatch.enabled",
];

const LIVE_SECTIONS: &[&str] = &[
    "health",
    "metrics",
    "logs",
    "cloudwatch",
    "controller",
    "proxy",
];

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Dotted keys that changed and take effect now.
    pub applied: Vec<String>,
    /// Dotted keys that changed but keep their running value until the agent restarts.
    pub need_restart: Vec<String>,
    /// The parts to hand the new settings to (their section differs from the running one).
    pub parts: BTreeSet<Part>,
    /// The config the agent runs with from now on: the new one, with the running values of
    /// every key that needs a restart.
    pub effective: Config,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.applied.is_empty() && self.need_restart.is_empty() && self.parts.is_empty()
    }
}

/// `running` and `running_table` are what the agent runs with (the table as read from the
/// file), `next` and `next_table` the file now.
pub fn plan(
    running: &Config,
    running_table: &toml::Table,
    next: &Config,
    next_table: &toml::Table,
) -> Plan {
    // A controller added or removed changes what the agent is (linked or standalone).
    let controller_live = running.controller.url.is_some() == next.controller.url.is_some();
    let live = |key: &str| {
        let section = key.split('.').next().unwrap_or_default();
        LIVE_SECTIONS.contains(&section)
            && !RESTART_ONLY.contains(&key)
            && (section != "controller" || controller_live)
    };
    let (mut applied, mut need_restart) = (Vec::new(), Vec::new());
    for key in changed_keys(running_table, next_table) {
        if live(&key) {
            applied.push(key);
        } else {
            need_restart.push(key);
        }
    }
    let mut effective = running.clone();
    effective.health = next.health.clone();
    effective.metrics = next.metrics.clone();
    effective.logs = next.logs.clone();
    effective.cloudwatch = crate::config::CloudWatchConfig {
        enabled: running.cloudwatch.enabled,
        ..next.cloudwatch.clone()
    };
    if controller_live {
        effective.controller = next.controller.clone();
    }
    effective.proxy = crate::config::ProxyConfig {
        enabled: running.proxy.enabled,
        nginx_binary: running.proxy.nginx_binary.clone(),
        modules_dir: running.proxy.modules_dir.clone(),
        platform_ports: running.proxy.platform_ports.clone(),
        ..next.proxy.clone()
    };
    let mut parts = BTreeSet::new();
    let changes = [
        (Part::Health, running.health != effective.health),
        (Part::Metrics, running.metrics != effective.metrics),
        (Part::Logs, running.logs != effective.logs),
        (Part::CloudWatch, running.cloudwatch != effective.cloudwatch),
        (Part::Controller, running.controller != effective.controller),
        (Part::Proxy, running.proxy != effective.proxy),
    ];
    parts.extend(
        changes
            .into_iter()
            .filter(|(_, changed)| *changed)
            .map(|(part, _)| part),
    );
    // The severe-error window is a logs key health also judges with.
    if running.logs.watch.health_window != effective.logs.watch.health_window {
        parts.insert(Part::Health);
    }
    Plan {
        applied,
        need_restart,
        parts,
        effective,
    }
}

/// Every dotted key whose value differs between two tables (added and removed keys too);
/// tables are compared key by key, anything else (arrays included) as a whole.
pub fn changed_keys(before: &toml::Table, after: &toml::Table) -> Vec<String> {
    let mut keys = Vec::new();
    walk("", before, after, &mut keys);
    keys
}

fn walk(prefix: &str, before: &toml::Table, after: &toml::Table, keys: &mut Vec<String>) {
    let names: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for name in names {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        match (before.get(name), after.get(name)) {
            (Some(toml::Value::Table(a)), Some(toml::Value::Table(b))) => walk(&key, a, b, keys),
            (Some(toml::Value::Table(a)), None) => walk(&key, a, &toml::Table::new(), keys),
            (None, Some(toml::Value::Table(b))) => walk(&key, &toml::Table::new(), b, keys),
            (a, b) if a != b => keys.push(key),
            _ => {}
        }
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
