//! Tests of the load balancer's model, config and agent-check answers.

use std::time::Duration;

use super::*;
use crate::health::fixtures::{instance, serving};
use crate::model::{DeploymentKind, PublishedHealth, Tier};

fn env(name: &str, cname: Option<&str>) -> Environment {
    Environment {
        id: 1,
        name: name.into(),
        application: name.into(),
        tier: Tier::Web,
        options: [(
            "aws:elasticbeanstalk:environment:process:default:HealthCheckPath".to_string(),
            "/health".to_string(),
        )]
        .into(),
        status: EnvStatus::Ready,
        desired_version: None,
        expected_version: None,
        expected_deployment: None,
        desired_serial: 0,
        health: PublishedHealth::default(),
        created_ms: 0,
        updated_ms: 0,
        cname: cname.map(str::to_string),
    }
}

fn host(id: &str, addr: Option<&str>) -> Instance {
    let mut host = serving(instance(id, Some(1), "Ok"), "v1", 1);
    host.environment = "web".into();
    host.facts.advertised_addr = addr.map(str::to_string);
    host
}

fn lb() -> LoadBalancerConfig {
    LoadBalancerConfig {
        listen: "127.0.0.1:8080".parse().expect("address"),
        agent_listen: "127.0.0.1:9777".parse().expect("address"),
        domain: "elb.local".into(),
        haproxy: "/usr/sbin/haproxy".into(),
        dir: "/var/lib/hm/haproxy".into(),
        agent_interval: Duration::from_millis(500),
        check_interval: None,
    }
}

#[test]
fn every_enrolled_host_with_an_address_is_a_server_asked_by_name() {
    let mut revoked = host("i-3", Some("10.0.0.3:80"));
    revoked.revoked_ms = Some(5);
    let mut fresh = instance("i-4", Some(1), "Pending");
    fresh.environment = "web".into();
    fresh.facts.advertised_addr = Some("10.0.0.4:80".into());
    let hosts = [
        host("i-2", Some("10.0.0.2:80")),
        host("i-1", Some("10.0.0.1:80")),
        host("i-9", None),
        revoked,
        fresh,
        host("i-5; rm -rf /", Some("10.0.0.5:80")),
    ];
    let envs = [env("web", None), env("blue", Some("web.elb.local"))];
    let model = model(&envs, &hosts, &BTreeMap::new(), "elb.local", None);
    let servers: Vec<&str> = model.backends["web"]
        .servers
        .iter()
        .map(|(id, _)| id.as_str())
        .collect();
    assert_eq!(
        servers,
        ["i-1", "i-2", "i-4"],
        "sorted; no revoked, unaddressed or unsafe name"
    );
    assert_eq!(model.answers["web/i-1"], "ready 100%");
    assert_eq!(model.answers["web/i-4"], "maint", "nothing to serve yet");
    let config = config(&model, &lb());
    assert!(config.contains("bind 127.0.0.1:8080"), "{config}");
    assert!(config.contains("backend env_web\n"), "{config}");
    assert!(
        config.contains("http-check send meth GET uri /health\n"),
        "{config}"
    );
    assert!(config.contains(
        "default-server weight 100 check inter 15000 rise 3 fall 5 agent-check agent-addr 127.0.0.1 agent-port 9777 agent-inter 500\n"
    ), "{config}");
    assert!(
        config.contains("    server i-1 10.0.0.1:80 agent-send \"web/i-1\\n\"\n"),
        "{config}"
    );
    assert!(
        config.contains("map(/var/lib/hm/haproxy/hosts.map)"),
        "{config}"
    );
    assert_eq!(
        host_map(&model),
        "web.elb.local env_blue\nweb.elb.local env_web\n",
        "a swapped CNAME is the environment's own"
    );
}

#[test]
fn a_batch_being_drained_or_deployed_is_drained_and_nothing_else() {
    let hosts = [host("i-1", Some("a:1")), host("i-2", Some("a:2"))];
    let mut d = crate::deploy::with_batches(
        crate::deploy::new_deployment(
            1,
            "web",
            DeploymentKind::Deploy,
            Some("v2"),
            2,
            ["i-1", "i-2"],
            0,
        ),
        "Rolling",
        1,
    );
    d.members[0].state = MemberState::Draining;
    assert_eq!(answer(&hosts[0], Some(&d), None), "drain");
    assert_eq!(answer(&hosts[1], Some(&d), None), "ready 100%");
    d.members[0].state = MemberState::Dispatched;
    assert_eq!(answer(&hosts[0], Some(&d), None), "drain");
    d.members[0].state = MemberState::Deployed;
    assert_eq!(
        answer(&hosts[0], Some(&d), None),
        "ready 100%",
        "back in rotation for its gate"
    );
    // AllAtOnce drains nothing: each host's own cutover keeps it serving.
    let mut all =
        crate::deploy::new_deployment(1, "web", DeploymentKind::Deploy, Some("v2"), 2, ["i-1"], 0);
    all.members[0].state = MemberState::Dispatched;
    assert_eq!(answer(&hosts[0], Some(&all), None), "ready 100%");
}

#[test]
fn a_configured_check_interval_overrides_the_environments() {
    let hosts = [host("i-1", Some("a:1"))];
    let model = model(
        &[env("web", None)],
        &hosts,
        &BTreeMap::new(),
        "elb.local",
        None,
    );
    let fast = LoadBalancerConfig {
        check_interval: Some(Duration::from_millis(300)),
        ..lb()
    };
    assert!(config(&model, &fast).contains("check inter 300 rise 3"));
}

#[test]
fn servers_haproxy_does_not_run_yet_start_down_after_a_reload() {
    let state = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state\n\
                 3 env_web 1 i-1 127.0.0.1 2 0 100 100 9 6 3 4 6 0 0 0 - 8081 - 0 0 - - 0\n";
    let servers = [
        (
            "env_web".to_string(),
            "i-1".to_string(),
            "127.0.0.1:8081".to_string(),
        ),
        (
            "env_web".to_string(),
            "i-2".to_string(),
            "[::1]:8082".to_string(),
        ),
    ];
    let written = state_with_new_servers_down(state, &servers);
    let lines: Vec<&str> = written.lines().collect();
    assert_eq!(lines.len(), 4, "{written}");
    assert_eq!(
        lines[2],
        state.lines().nth(2).expect("i-1"),
        "what HAProxy had is kept"
    );
    assert_eq!(
        lines[3], "0 env_web 0 i-2 ::1 0 0 100 100 0 1 0 0 6 0 0 0 - 8082 - 0 0 - - 0",
        "the new server starts stopped"
    );
    assert_eq!(
        state_with_new_servers_down("", &servers),
        "",
        "nothing to carry over: HAProxy starts"
    );
}
