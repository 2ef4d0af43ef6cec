//! Two controller replicas on one real PostgreSQL, with uploaded bundles in S3 (a real
//! moto_server): the scale-out configuration. A bundle uploaded through one replica is served
//! to hosts by the other; the replica that took the deployment is killed right after, and the
//! other finishes it through the environment's lease, each event once.

mod common;

use std::time::Duration;

use common::bundles::sample;
use common::fleet::{TestController, call, enrolled_host, fast_config, report_body};
use common::moto::Moto;
use common::postgres::PgServer;
use common::{free_ports, wait_for};
use serde_json::Value;

const BUCKET: &str = "hm-controller-bundles";

fn replica(port: u16, database: &str, moto: &Moto) -> TestController {
    replica_with(fast_config(port, Some(database)), port, moto)
}

fn replica_with(base_config: String, port: u16, moto: &Moto) -> TestController {
    let config = format!(
        "{base_config}[objects]\nurl = \"s3://{BUCKET}\"\nregion = \"us-east-1\"\n\
         endpoint_url = \"{}\"\nforce_path_style = true\n",
        moto.endpoint()
    );
    // moto accepts any keys; the SDK's standard chain needs some.
    let env = vec![
        ("AWS_ACCESS_KEY_ID".to_string(), "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY".to_string(), "test".to_string()),
        ("AWS_EC2_METADATA_DISABLED".to_string(), "true".to_string()),
    ];
    TestController::start_with_env(config, port, env)
}

#[test]
fn replicas_on_postgresql_share_hosts_deployments_and_bundles() {
    let postgres = PgServer::start();
    let database = postgres.url("postgres");
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let ports = free_ports(2);
    let serving_replica = replica(ports[0], &database, &moto);
    let mut deploying_replica = replica(ports[1], &database, &moto);

    // Made through one replica, seen by the other: environments, tokens, instances.
    deploying_replica.cli_json(&["env", "create", "web"]);
    let token = deploying_replica.enrollment_token("web", 2);
    let mut hosts: Vec<_> = (0..2)
        .map(|i| enrolled_host(&serving_replica, &format!("i-r{i}"), &token))
        .collect();
    for host in &mut hosts {
        host.start();
    }
    wait_for(
        "both hosts enrolled, as either replica sees it",
        Duration::from_secs(30),
        || {
            let count = |c: &TestController| {
                c.api("/v1/environments/web/instances")["InstanceHealthList"]
                    .as_array()
                    .map_or(0, Vec::len)
            };
            (count(&serving_replica) == 2 && count(&deploying_replica) == 2).then_some(())
        },
    );

    // Uploaded through the replica that is then killed: the hosts fetch the bundle from the
    // other one, which can only serve it from S3.
    let bundles = tempfile::tempdir().expect("tempdir");
    let v1 = sample(bundles.path(), "v1", &[]);
    let deployment =
        deploying_replica.cli_json(&["deploy", "web", v1.to_str().expect("path"), "--label", "v1"]);
    let id = deployment["id"].as_i64().expect("deployment id");
    deploying_replica.kill();

    let finished: Value = wait_for(
        "the other replica finished the deployment",
        Duration::from_secs(90),
        || {
            let deployment = serving_replica.api(&format!("/v1/deployments/{id}"));
            (deployment["status"] != "Pending" && deployment["status"] != "InProgress")
                .then_some(deployment)
        },
    );
    assert_eq!(
        finished["status"],
        "Succeeded",
        "{finished:#}\n{}",
        common::tail(&serving_replica.log(), 40)
    );
    for host in &hosts {
        let body = host.get("/").expect("serves").body;
        assert!(body.contains("v1"), "{body}");
    }
    let versions = serving_replica.api("/v1/applications/web/versions");
    let sha256 = versions["ApplicationVersions"][0]["Sha256"]
        .as_str()
        .expect("the uploaded version's sha256");
    let stored = moto
        .get(BUCKET, &format!("bundles/web/{sha256}.zip"))
        .expect("the uploaded bundle is in S3, content-addressed");
    assert_eq!(stored, std::fs::read(&v1).expect("bundle"), "as uploaded");

    // Whichever replica stepped it, each of the deployment's events is stored once.
    let messages = serving_replica.deployment_messages("web", id);
    for once in [
        "Environment update is starting.",
        "Environment update completed successfully.",
    ] {
        assert_eq!(
            messages.iter().filter(|m| *m == once).count(),
            1,
            "{once:?} in {messages:#?}"
        );
    }
}

#[test]
fn a_host_enrolled_or_rotated_through_one_replica_is_known_at_once_to_the_other() {
    let postgres = PgServer::start();
    let database = postgres.url("postgres");
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let ports = free_ports(2);
    // A 10 s interval: the replicas' caches are refreshed only that often, so what follows
    // happens well before the second replica would have read the first one's writes.
    let slow = |port| {
        fast_config(port, Some(&database)).replace("interval = \"300ms\"", "interval = \"10s\"")
    };
    let first = replica_with(slow(ports[0]), ports[0], &moto);
    let second = replica_with(slow(ports[1]), ports[1], &moto);
    first.cli_json(&["env", "create", "web"]);
    let token = first.enrollment_token("web", 1);
    let enroll = serde_json::json!({"instance_id": "i-x", "machine_fingerprint": "f", "agent_version": "t", "facts": {}});
    let (status, credential) = call(&first, "POST", "/v1/enroll", Some(&token), &enroll);
    assert_eq!(status, 200, "{credential}");
    let secret = credential["secret"].as_str().expect("secret").to_string();
    let (status, reply) = call(
        &second,
        "POST",
        "/v1/hosts/i-x/report",
        Some(&secret),
        &report_body("i-x"),
    );
    assert_eq!(status, 200, "enrolled through the other replica: {reply}");

    let (status, rotated) = call(
        &first,
        "POST",
        "/v1/hosts/i-x/credential",
        Some(&secret),
        &Value::Null,
    );
    assert_eq!(status, 200, "{rotated}");
    let new_secret = rotated["secret"].as_str().expect("secret");
    let (status, reply) = call(
        &second,
        "POST",
        "/v1/hosts/i-x/report",
        Some(new_secret),
        &report_body("i-x"),
    );
    assert_eq!(status, 200, "rotated through the other replica: {reply}");

    // A revocation reaches the other replica with its next cache refresh (one interval):
    // a replica does not read the database on every report.
    first.cli_json(&["revoke", "i-x"]);
    let reply = wait_for(
        "the other replica refuses the revoked host",
        Duration::from_secs(25),
        || {
            let (status, reply) = call(
                &second,
                "POST",
                "/v1/hosts/i-x/report",
                Some(new_secret),
                &report_body("i-x"),
            );
            (status != 200).then_some((status, reply))
        },
    );
    assert_eq!(reply.0, 401, "{}", reply.1);
}
