//! `[load_balancer]`: the HAProxy the controller runs in front of its environments (the ELB's
//! stand-in). Absent: no load balancer; deployments then skip draining.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadBalancerConfig {
    /// HAProxy's frontend: every environment's URL, told apart by host name.
    pub listen: SocketAddr,
    /// The controller's agent-check responder, which HAProxy asks for each server's state.
    pub agent_listen: SocketAddr,
    /// An environment's CNAME is `<name>.<domain>` until a swap.
    pub domain: String,
    pub haproxy: PathBuf,
    /// HAProxy's config, map, sockets and pid file.
    pub dir: PathBuf,
    /// How often HAProxy asks the responder.
    pub agent_interval: Duration,
    /// Overrides every environment's `HealthCheckInterval` (tests, small fleets).
    pub check_interval: Option<Duration>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLoadBalancer {
    listen: Option<String>,
    agent_listen: Option<String>,
    domain: Option<String>,
    haproxy: Option<PathBuf>,
    agent_interval: Option<String>,
    check_interval: Option<String>,
}

pub(super) fn parse(
    raw: Option<RawLoadBalancer>,
    data_dir: &Path,
    problems: &mut Vec<String>,
) -> Option<LoadBalancerConfig> {
    let raw = raw?;
    let mut address = |key: &str, text: Option<String>, default: &str| {
        let text = text.unwrap_or_else(|| default.to_string());
        text.parse::<SocketAddr>()
            .map_err(|_| {
                problems.push(format!(
                    "load_balancer.{key}: {text:?} is not an address:port (e.g. {default})"
                ))
            })
            .ok()
    };
    let listen = address("listen", raw.listen, "0.0.0.0:80");
    let agent_listen = address("agent_listen", raw.agent_listen, "127.0.0.1:9777");
    let mut duration = |key: &str, text: Option<String>| {
        text.and_then(|text| match humantime::parse_duration(&text) {
            Ok(value) if !value.is_zero() => Some(value),
            _ => {
                problems.push(format!(
                    "load_balancer.{key}: {text:?} is not a duration like 1s or 15s"
                ));
                None
            }
        })
    };
    let agent_interval = duration("agent_interval", raw.agent_interval);
    let check_interval = duration("check_interval", raw.check_interval);
    let domain = raw.domain.unwrap_or_else(|| "elb.local".to_string());
    if !is_domain(&domain) {
        problems.push(format!(
            "load_balancer.domain: {domain:?} is not a host name (letters, digits, '-' and '.')"
        ));
    }
    if let Some(agent) = agent_listen
        && !agent.ip().is_loopback()
    {
        // The agent-check protocol has no authentication: it only tells HAProxy the servers'
        // states, and stays on the machine HAProxy runs on.
        problems.push(format!(
            "load_balancer.agent_listen: {agent} is not a loopback address; run HAProxy beside the controller"
        ));
    }
    Some(LoadBalancerConfig {
        listen: listen?,
        agent_listen: agent_listen?,
        domain: domain.to_ascii_lowercase(),
        haproxy: raw
            .haproxy
            .unwrap_or_else(|| PathBuf::from("/usr/sbin/haproxy")),
        dir: data_dir.join("haproxy"),
        agent_interval: agent_interval.unwrap_or(Duration::from_secs(1)),
        check_interval,
    })
}

fn is_domain(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 200
        && text.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}
