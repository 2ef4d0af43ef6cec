//! Credential rotation under load: a real agent whose secret the controller rotates every two
//! seconds (through the reply) while it deploys and reports events every 300 ms. No report is
//! refused, and every event of the agent's journal reaches the controller exactly once.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::bundles::sample;
use common::fleet::{TestController, enrolled_host, fast_config};
use common::{free_ports, wait_for};

#[test]
fn a_real_agent_rotates_its_secret_under_load_and_loses_no_report() {
    let port = free_ports(1)[0];
    // Rotation at two thirds of the lifetime: every 2 s; the old secret works 2 s more.
    let config = fast_config(port, None).replace(
        "[hosts]\n",
        "[hosts]\ncredential_lifetime = \"3s\"\nrotation_grace = \"2s\"\n",
    );
    let controller = TestController::start_with(config, port);
    controller.cli_json(&["env", "create", "web"]);
    let token = controller.enrollment_token("web", 1);
    let mut host = enrolled_host(&controller, "i-rot", &token);
    host.start();

    let credential_file = host.path("var/lib/hostmanager/controller-credential.json");
    let mut credentials = BTreeSet::new();
    let bundles = tempfile::tempdir().expect("tempdir");
    let mut label = 0;
    wait_for(
        "three rotations while deploying",
        Duration::from_secs(60),
        || {
            if let Ok(text) = std::fs::read_to_string(&credential_file) {
                credentials.insert(text);
            }
            // Load: a deployment after another, each a dozen journal events.
            let deployments = controller.api("/v1/environments/web/deployments");
            let running = deployments["Deployments"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|d| d["status"] == "Pending" || d["status"] == "InProgress");
            if !running {
                label += 1;
                let bundle = sample(bundles.path(), &format!("v{label}"), &[]);
                controller.cli_json(&[
                    "deploy",
                    "web",
                    bundle.to_str().expect("path"),
                    "--label",
                    &format!("v{label}"),
                ]);
            }
            (credentials.len() >= 4).then_some(())
        },
    );

    // Everything the journal holds now reaches the controller, each event once.
    let journal: BTreeMap<u64, String> = host
        .events()
        .iter()
        .map(|e| {
            (
                e["id"].as_u64().expect("event id"),
                e["message"].as_str().expect("message").to_string(),
            )
        })
        .collect();
    let last = *journal.keys().last().expect("the agent recorded events");
    let stored = wait_for(
        "the journal's events stored by the controller",
        Duration::from_secs(30),
        || {
            let stored: Vec<(u64, String)> = controller
                .events("web")
                .iter()
                .filter(|e| e["InstanceId"] == "i-rot" && e["SourceId"].is_u64())
                .map(|e| {
                    (
                        e["SourceId"].as_u64().expect("source id"),
                        e["Message"].as_str().expect("message").to_string(),
                    )
                })
                .collect();
            stored.iter().any(|(id, _)| *id >= last).then_some(stored)
        },
    );
    let mut seen = BTreeMap::new();
    for (id, message) in &stored {
        assert!(
            seen.insert(*id, message.clone()).is_none(),
            "event {id} stored twice"
        );
    }
    for (id, message) in journal.range(..=last) {
        assert_eq!(
            seen.get(id),
            Some(message),
            "journal event {id} at the controller"
        );
    }
    let metrics = controller_metrics(&controller);
    assert!(
        metrics
            .lines()
            .any(|l| l == "hostmanager_controller_reports_rejected_total 0"),
        "no report refused during the rotations:\n{metrics}\n{}",
        common::tail(&host.agent_log(), 30)
    );
}

fn controller_metrics(controller: &TestController) -> String {
    let bearer = format!("Bearer {}", controller.admin_token());
    common::http::request(
        controller.port,
        "GET",
        "/metrics",
        &[("Authorization", bearer.as_str())],
        &[],
    )
    .expect("metrics")
    .body
}
