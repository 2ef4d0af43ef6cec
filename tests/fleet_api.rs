//! The controller's API without hosts (and with one, for the agent plane): authentication of
//! every plane, one operation at a time per environment (409 with Elastic Beanstalk's text),
//! and the OpenAPI document against the router.

mod common;

use std::time::Duration;

use common::fleet::{TestController, call, enrolled_host, report_body};
use common::wait_for;
use serde_json::{Value, json};

#[test]
fn every_plane_refuses_what_is_not_authenticated() {
    let controller = TestController::start(None);
    let admin = controller.admin_token();
    // Operator plane.
    assert_eq!(
        call(&controller, "GET", "/v1/environments", None, &Value::Null).0,
        401
    );
    assert_eq!(
        call(
            &controller,
            "GET",
            "/v1/environments",
            Some("hma_wrong"),
            &Value::Null
        )
        .0,
        401
    );
    assert_eq!(
        call(
            &controller,
            "GET",
            "/v1/environments",
            Some(&admin),
            &Value::Null
        )
        .0,
        200
    );
    assert_eq!(
        call(&controller, "GET", "/metrics", None, &Value::Null).0,
        401
    );
    controller.cli_json(&["env", "create", "web"]);

    // Enrollment: a token with one use works once; an unknown one never.
    let token = controller.enrollment_token("web", 1);
    let enroll = json!({"instance_id": "i-a", "machine_fingerprint": "f1", "agent_version": "test", "facts": {}});
    assert_eq!(
        call(&controller, "POST", "/v1/enroll", None, &enroll).0,
        401
    );
    assert_eq!(
        call(
            &controller,
            "POST",
            "/v1/enroll",
            Some("hme_unknown"),
            &enroll
        )
        .0,
        401
    );
    let (status, credential) = call(&controller, "POST", "/v1/enroll", Some(&token), &enroll);
    assert_eq!(status, 200, "{credential}");
    let secret_a = credential["secret"].as_str().expect("secret").to_string();
    let other = json!({"instance_id": "i-b", "machine_fingerprint": "f2", "agent_version": "test", "facts": {}});
    let (status, used_up) = call(&controller, "POST", "/v1/enroll", Some(&token), &other);
    assert_eq!(status, 401, "{used_up}");
    assert!(
        used_up["error"]
            .as_str()
            .expect("error")
            .contains("no uses left")
    );

    // An expired token: created valid for one second, refused once that second is past.
    let expiring = controller.cli_json(&[
        "enroll-token",
        "create",
        "web",
        "--uses",
        "5",
        "--expires",
        "1s",
    ]);
    let expires_at = expiring["ExpiresAt"]
        .as_str()
        .expect("ExpiresAt")
        .to_string();
    let expiring = expiring["Token"].as_str().expect("Token").to_string();
    // Enrolling while it is valid would spend its uses, so only the clock is watched.
    let deadline: jiff::Timestamp = expires_at.parse().expect("ExpiresAt is RFC 3339");
    wait_for(
        "the token's expiry to pass",
        Duration::from_secs(10),
        || (jiff::Timestamp::now() > deadline).then_some(()),
    );
    let (status, expired) = call(&controller, "POST", "/v1/enroll", Some(&expiring), &other);
    assert_eq!(status, 401, "{expired} (expires {expires_at})");
    assert!(
        expired["error"]
            .as_str()
            .expect("error")
            .contains("expired"),
        "{expired}"
    );

    // A second host for the path tests.
    let token_b = controller.enrollment_token("web", 1);
    let (status, credential_b) = call(&controller, "POST", "/v1/enroll", Some(&token_b), &other);
    assert_eq!(status, 200, "{credential_b}");
    let secret_b = credential_b["secret"].as_str().expect("secret").to_string();

    // Reports: no secret, a wrong one, another host's path.
    let path_a = "/v1/hosts/i-a/report";
    assert_eq!(
        call(&controller, "POST", path_a, None, &report_body("i-a")).0,
        401
    );
    assert_eq!(
        call(
            &controller,
            "POST",
            path_a,
            Some("hmi_wrong"),
            &report_body("i-a")
        )
        .0,
        401
    );
    assert_eq!(
        call(
            &controller,
            "POST",
            path_a,
            Some(&secret_b),
            &report_body("i-a")
        )
        .0,
        403
    );
    assert_eq!(
        call(
            &controller,
            "POST",
            path_a,
            Some(&secret_a),
            &report_body("i-b")
        )
        .0,
        403
    );
    let (status, reply) = call(
        &controller,
        "POST",
        path_a,
        Some(&secret_a),
        &report_body("i-a"),
    );
    assert_eq!(status, 200, "{reply}");
    // The admin token is not a host secret, and a host secret is not an admin token.
    assert_eq!(
        call(
            &controller,
            "POST",
            path_a,
            Some(&admin),
            &report_body("i-a")
        )
        .0,
        401
    );
    assert_eq!(
        call(
            &controller,
            "GET",
            "/v1/environments",
            Some(&secret_a),
            &Value::Null
        )
        .0,
        401
    );

    // The same instance id from another machine is refused.
    let token_c = controller.enrollment_token("web", 1);
    let clash = json!({"instance_id": "i-a", "machine_fingerprint": "other", "agent_version": "t", "facts": {}});
    assert_eq!(
        call(&controller, "POST", "/v1/enroll", Some(&token_c), &clash).0,
        409
    );

    // Revoked: refused from then on.
    let revoked = controller.cli_json(&["revoke", "i-a"]);
    assert_eq!(revoked["Revoked"], true);
    let (status, body) = call(
        &controller,
        "POST",
        path_a,
        Some(&secret_a),
        &report_body("i-a"),
    );
    assert_eq!(status, 401);
    assert!(
        body["error"].as_str().expect("error").contains("revoked"),
        "{body}"
    );
    // Rotation: the new secret works, and so does the old one during the grace.
    let (status, rotated) = call(
        &controller,
        "POST",
        "/v1/hosts/i-b/credential",
        Some(&secret_b),
        &Value::Null,
    );
    assert_eq!(status, 200, "{rotated}");
    let new_b = rotated["secret"].as_str().expect("secret");
    assert_ne!(new_b, secret_b);
    assert_eq!(
        call(
            &controller,
            "POST",
            "/v1/hosts/i-b/report",
            Some(new_b),
            &report_body("i-b")
        )
        .0,
        200
    );
    assert_eq!(
        call(
            &controller,
            "POST",
            "/v1/hosts/i-b/report",
            Some(&secret_b),
            &report_body("i-b")
        )
        .0,
        200
    );
    // Nothing secret is in the controller's log.
    let log = controller.log();
    for secret in [&secret_a, &secret_b, &token, &admin] {
        assert!(!log.contains(secret.as_str()), "a secret reached the log");
    }
}

#[test]
fn a_second_operation_on_an_environment_is_refused_with_elastic_beanstalks_message() {
    let controller = TestController::start(None);
    let admin = controller.admin_token();
    controller.cli_json(&["env", "create", "web"]);
    // A host that enrolls but never deploys keeps the deployment running.
    let token = controller.enrollment_token("web", 1);
    let enroll = json!({"instance_id": "i-slow", "machine_fingerprint": "f", "agent_version": "t", "facts": {}});
    assert_eq!(
        call(&controller, "POST", "/v1/enroll", Some(&token), &enroll).0,
        200
    );
    let version = json!({"VersionLabel": "v1", "SourceBundle": "https://example.invalid/v1.zip"});
    assert_eq!(
        call(
            &controller,
            "POST",
            "/v1/applications/web/versions",
            Some(&admin),
            &version
        )
        .0,
        200
    );
    let update = json!({"VersionLabel": "v1"});
    let (status, first) = call(
        &controller,
        "PUT",
        "/v1/environments/web",
        Some(&admin),
        &update,
    );
    assert_eq!(status, 200, "{first}");
    let (status, second) = call(
        &controller,
        "PUT",
        "/v1/environments/web",
        Some(&admin),
        &update,
    );
    assert_eq!(status, 409, "{second}");
    assert_eq!(
        second["error"],
        "Environment named web is in an invalid state for this operation. Must be Ready."
    );
    let restart = controller.cli(&["restart", "web"]);
    assert!(!restart.status.success());
    assert!(String::from_utf8_lossy(&restart.stderr).contains("Must be Ready."));
    // Abort is always possible, and makes the environment Ready again.
    let aborted = controller.cli_json(&["abort", "web"]);
    assert_eq!(aborted["status"], "Aborted", "{aborted}");
    let (status, third) = call(
        &controller,
        "PUT",
        "/v1/environments/web",
        Some(&admin),
        &update,
    );
    assert_eq!(status, 200, "{third}");
}

#[test]
fn every_operation_of_the_openapi_document_is_routed() {
    let controller = TestController::start(None);
    let admin = controller.admin_token();
    let (status, document) = call(
        &controller,
        "GET",
        "/v1/openapi.json",
        Some(&admin),
        &Value::Null,
    );
    assert_eq!(status, 200);
    let paths = document["paths"].as_object().expect("paths");
    for (path, operations) in paths {
        let concrete = path
            .replace("{instance_id}", "i-none")
            .replace("{application}", "none")
            .replace("{label}", "none")
            .replace("{name}", "none")
            .replace("{id}", "1")
            .replace("{command_id}", "info-none")
            .replace("{key}", "bundles/none.zip");
        for method in operations.as_object().expect("operations").keys() {
            let (status, body) = call(
                &controller,
                &method.to_uppercase(),
                &concrete,
                Some(&admin),
                &Value::Null,
            );
            let unrouted = body["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("no such endpoint"));
            assert!(
                !unrouted,
                "{method} {path} is documented but not routed ({status})"
            );
        }
    }
    // And an undocumented path is not routed.
    let (status, body) = call(
        &controller,
        "GET",
        "/v1/nothing",
        Some(&admin),
        &Value::Null,
    );
    assert_eq!(status, 404);
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .starts_with("no such endpoint")
    );
}

#[test]
fn validate_lists_every_problem_and_exits_78() {
    let data = tempfile::tempdir().expect("tempdir");
    let config = data.path().join("controller.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"0.0.0.0:7600\"\n[hosts]\ninterval = \"often\"\n[database]\nurl = \"mysql://x\"\n",
    )
    .expect("write");
    let output = std::process::Command::new(common::fleet::controller_bin())
        .args(["validate", "--config"])
        .arg(&config)
        .output()
        .expect("validate");
    assert_eq!(output.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for key in ["server.listen", "hosts.interval", "database.url"] {
        assert!(stderr.contains(key), "{key} in:\n{stderr}");
    }
}

#[test]
fn an_agent_enrolls_with_its_token_file_and_keeps_its_secret_private() {
    let controller = TestController::start(None);
    controller.cli_json(&["env", "create", "web"]);
    let token = controller.enrollment_token("web", 1);
    let mut host = enrolled_host(&controller, "i-agent", &token);
    host.start();
    let credential = host.path("var/lib/hostmanager/controller-credential.json");
    // The controller lists the instance as it answers the enrollment; the agent writes its
    // credential once it has read that answer.
    wait_for(
        "the agent enrolled and stored its credential",
        Duration::from_secs(30),
        || {
            let instances = controller.api("/v1/environments/web/instances");
            instances["InstanceHealthList"]
                .as_array()
                .filter(|l| l.len() == 1 && credential.exists())
                .map(|_| ())
        },
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&credential)
            .expect("credential")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        !std::fs::read_to_string(&credential)
            .expect("read")
            .contains(&token)
    );
}
