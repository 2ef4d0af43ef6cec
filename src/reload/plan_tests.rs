use super::*;

fn read(text: &str) -> (Config, toml::Table) {
    let config = crate::config::parse_config(text).expect("a valid config");
    (config, text.parse().expect("toml"))
}

fn plan_of(before: &str, after: &str) -> Plan {
    let (running, running_table) = read(before);
    let (next, next_table) = read(after);
    plan(&running, &running_table, &next, &next_table)
}

#[test]
fn changed_keys_walk_tables_and_name_added_and_removed_keys() {
    let before: toml::Table =
        "[health]\npath = '/a'\n[health.thresholds]\ncpu = { warning = 90 }\n[app]\nport = 1\n"
            .parse()
            .expect("toml");
    let after: toml::Table = "[health]\npath = '/b'\n[health.thresholds]\ncpu = { warning = 80 }\n[logs]\ntail_lines = 5\n"
        .parse()
        .expect("toml");
    assert_eq!(
        changed_keys(&before, &after),
        [
            "app.port",
            "health.path",
            "health.thresholds.cpu.warning",
            "logs.tail_lines"
        ]
    );
    assert!(changed_keys(&after, &after).is_empty());
}

#[test]
fn live_sections_apply_and_the_rest_keeps_its_running_value() {
    let plan = plan_of(
        "[app]\nport = 8080\n[health]\ninterval = '10s'\n",
        "[app]\nport = 9090\n[health]\ninterval = '20s'\n[proxy]\nclient_max_body_size = '50m'\n",
    );
    assert_eq!(
        plan.applied,
        ["health.interval", "proxy.client_max_body_size"]
    );
    assert_eq!(plan.need_restart, ["app.port"]);
    assert_eq!(plan.parts, BTreeSet::from([Part::Health, Part::Proxy]));
    assert_eq!(
        plan.effective.app.port, 8080,
        "app.port waits for a restart"
    );
    assert_eq!(plan.effective.health.interval.as_secs(), 20);
    assert_eq!(plan.effective.proxy.client_max_body_size, "50m");
}

#[test]
fn the_keys_nginx_runs_with_need_a_restart() {
    let plan = plan_of(
        "",
        "[proxy]\nenabled = false\nnginx_binary = '/opt/nginx'\n[cloudwatch]\nenabled = true\nnamespace = 'Mine'\n",
    );
    assert_eq!(plan.applied, ["cloudwatch.namespace"]);
    assert_eq!(
        plan.need_restart,
        ["cloudwatch.enabled", "proxy.enabled", "proxy.nginx_binary"]
    );
    assert!(plan.effective.proxy.enabled);
    assert!(!plan.effective.cloudwatch.enabled);
    assert_eq!(plan.effective.cloudwatch.namespace, "Mine");
    assert_eq!(plan.parts, BTreeSet::from([Part::CloudWatch]));
}

#[test]
fn a_controller_added_needs_a_restart_but_a_new_address_applies() {
    let added = plan_of("", "[controller]\nurl = 'http://127.0.0.1:1'\n");
    assert_eq!(added.need_restart, ["controller.url"]);
    assert!(added.parts.is_empty());
    assert_eq!(added.effective.controller.url, None);

    let moved = plan_of(
        "[controller]\nurl = 'http://127.0.0.1:1'\n",
        "[controller]\nurl = 'http://127.0.0.1:2'\ninterval = '3s'\n",
    );
    assert_eq!(moved.applied, ["controller.interval", "controller.url"]);
    assert_eq!(moved.parts, BTreeSet::from([Part::Controller]));
    assert_eq!(
        moved.effective.controller.url.as_deref(),
        Some("http://127.0.0.1:2")
    );
}

#[test]
fn the_severe_error_window_is_handed_to_health_too() {
    let plan = plan_of("", "[logs.watch]\nhealth_window = '10m'\n");
    assert_eq!(plan.parts, BTreeSet::from([Part::Health, Part::Logs]));
}

#[test]
fn the_same_file_changes_nothing() {
    let text = "[health]\npath = '/status'\n";
    assert!(plan_of(text, text).is_empty());
}
