//! `RequestEnvironmentInfo` / `RetrieveEnvironmentInfo` through the controller with real
//! agents: `hostmanager-controller logs` prints every instance's tail, `--bundle` saves every
//! instance's zip, and the upload and download routes refuse what they must.

mod common;

use serde_json::{Value, json};

use common::bundles::sample;
use common::fleet::{TestController, call, fleet};

#[test]
fn logs_prints_every_instance_tail_and_saves_every_bundle() {
    let controller = TestController::start(None);
    let hosts = fleet(&controller, 2);
    let bundles = tempfile::tempdir().expect("tempdir");
    controller.deploy_wait("web", &sample(bundles.path(), "v1", &[]), "v1");
    for host in &hosts {
        assert_eq!(host.body("/"), "Hello from v1\n");
    }

    let output = controller.cli(&["logs", "web", "--timeout", "60s"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for id in ["i-0000", "i-0001"] {
        assert!(
            stdout.contains(&format!("============= {id} ==============\n")),
            "{id}'s section in:\n{stdout}"
        );
    }
    // Each tail is the host's own: nginx's access log with the request just served.
    let sections: Vec<&str> = stdout.split("============= i-").skip(1).collect();
    assert_eq!(sections.len(), 2, "{stdout}");
    for section in sections {
        assert!(section.contains("/var/log/nginx/access.log"), "{section}");
        assert!(section.contains("GET / HTTP"), "{section}");
    }
    let events = controller.events("web");
    assert!(
        events
            .iter()
            .any(|e| e["Message"] == "requestEnvironmentInfo is starting."),
        "{events:#?}"
    );

    let out = tempfile::tempdir().expect("tempdir");
    let saved = controller.cli_json(&[
        "logs",
        "web",
        "--bundle",
        "--out",
        out.path().to_str().expect("path"),
    ]);
    assert_eq!(saved["Missing"], json!([]), "{saved}");
    for id in ["i-0000", "i-0001"] {
        let zip = std::fs::read(out.path().join(format!("{id}-bundle.zip"))).expect("bundle");
        let mut archive =
            zip::ZipArchive::new(std::io::Cursor::new(zip)).expect("the bundle is a zip");
        let names: Vec<String> = (0..archive.len())
            .map(|i| {
                archive
                    .by_index(i)
                    .expect("entry")
                    .name()
                    .expect("name")
                    .to_string()
            })
            .collect();
        assert!(
            names.iter().any(|n| n.ends_with("nginx/access.log")),
            "{id}: {names:?}"
        );
    }

    // The download is the signature's: another key under the same signature is refused,
    // without an admin token as with one.
    let url = saved["EnvironmentInfo"][0]["Message"]
        .as_str()
        .expect("URL")
        .to_string();
    let path = &url[url.find("/v1/").expect("path")..];
    let forged = path.replacen("/bundle/", "/tail/", 1);
    assert_ne!(forged, path);
    let (status, body) = call(&controller, "GET", &forged, None, &Value::Null);
    assert_eq!(status, 403, "{body}");
}

#[test]
fn a_host_uploads_only_for_its_own_info_commands() {
    let controller = TestController::start(None);
    let hosts = fleet(&controller, 2);
    let credential: Value = serde_json::from_str(
        &std::fs::read_to_string(hosts[0].path("var/lib/hostmanager/controller-credential.json"))
            .expect("credential"),
    )
    .expect("json");
    let secret = credential["secret"].as_str().expect("secret");
    let upload = |path: &str, token: Option<&str>| {
        call(&controller, "POST", path, token, &json!("a tail")).0
    };
    assert_eq!(upload("/v1/hosts/i-0000/logs/info-none", None), 401);
    assert_eq!(upload("/v1/hosts/i-0001/logs/info-none", Some(secret)), 403);
    assert_eq!(upload("/v1/hosts/i-0000/logs/info-none", Some(secret)), 404);
    let admin = controller.admin_token();
    let (status, body) = call(
        &controller,
        "POST",
        "/v1/environments/web/info",
        Some(&admin),
        &json!({"InfoType": "zip"}),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("InfoType")),
        "{body}"
    );
}
