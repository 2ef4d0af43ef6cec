//! Edges of the deployment engine: all-at-once rollbacks, changes queued behind a running
//! deployment, ownership of the release and of root's copy of `.platform`, a missing hook user, and a host without nginx.

mod common;

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use common::bundles::{Entry, sample};
use common::{TestHost, wait_for};

#[test]
fn all_at_once_rollback_reuses_the_one_port_without_a_clash() {
    let mut host = TestHost::new().set("deploy", "strategy", "all-at-once");
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    host.deploy_ok(&sample(dir.path(), "v1", &[]));
    host.deploy_ok(&sample(dir.path(), "v2", &[]));
    let rolled = host.cli(&["rollback", "--wait", "--json"]);
    let rolled: serde_json::Value = serde_json::from_slice(&rolled.stdout).expect("json");
    assert_eq!(rolled["status"], "succeeded", "{rolled:#}");
    assert_eq!(host.body("/"), "Hello from v1\n");
    let processes = host.status()["processes"].clone();
    assert_eq!(processes.as_array().map(Vec::len), Some(1), "{processes}");
    assert_eq!(processes[0]["port"], host.app_port);

    let hook = b"#!/bin/sh\nexit 5\n";
    let v3 = sample(
        dir.path(),
        "v3",
        &[Entry::File(".platform/hooks/postdeploy/01.sh", hook, 0o755)],
    );
    let record = host.deploy(&v3, &[]);
    assert_eq!(record["status"], "rolled_back", "{record:#}");
    assert_eq!(host.body("/"), "Hello from v1\n");
}

#[test]
fn a_configuration_queued_behind_a_deployment_applies_to_what_that_deployment_left() {
    let mut host = TestHost::new();
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mark = tempfile::tempdir().expect("mark");
    host.deploy_ok(&sample(dir.path(), "v1", &[]));
    let pause = format!(
        "#!/bin/sh\nwhile [ ! -e {}/go ]; do sleep 0.05; done\n",
        mark.path().display()
    );
    let v2 = sample(
        dir.path(),
        "v2",
        &[Entry::File(
            ".platform/hooks/prebuild/01_pause.sh",
            pause.as_bytes(),
            0o755,
        )],
    );
    host.cli_ok(&[
        "deploy",
        v2.to_str().expect("utf-8"),
        "--env",
        "A=from-deploy",
    ]);
    wait_for(
        "the deployment to be running",
        Duration::from_secs(20),
        || (host.status()["deployment"]["step"] == "hooks-prebuild").then_some(()),
    );
    let queued = host.cli_ok(&["configure", "--set", "B=from-configure", "--json"]);
    let queued: serde_json::Value = serde_json::from_str(&queued).expect("json");
    std::fs::write(mark.path().join("go"), "").expect("go");
    wait_for("both to finish", Duration::from_secs(60), || {
        let records: serde_json::Value =
            serde_json::from_str(&host.cli_ok(&["deployments", "--json"])).ok()?;
        let done = records
            .as_array()?
            .iter()
            .find(|r| r["id"] == queued["id"])?["status"]
            == "succeeded";
        done.then_some(())
    });
    assert_eq!(
        host.body("/env/A"),
        "from-deploy\n",
        "the configuration kept the deployment's property"
    );
    assert_eq!(host.body("/env/B"), "from-configure\n");
    assert_eq!(host.body("/"), "Hello from v2\n");
}

#[test]
fn the_app_user_owns_its_release_and_root_keeps_its_own_copy_of_platform() {
    assert!(
        common::is_root(),
        "this test checks ownership, which only changes when the agent is root: run the suite as root"
    );
    let mut host = TestHost::new();
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = b"#!/bin/sh\ntrue\n";
    let record = host.deploy_ok(&sample(
        dir.path(),
        "v1",
        &[
            Entry::File(".platform/confighooks/predeploy/01.sh", hook, 0o777),
            Entry::File("Buildfile", b"noop: true\n", 0o666),
        ],
    ));
    let release = host.path(&format!("var/app/releases/{}", record["id"]));
    let app_uid = nix::unistd::User::from_name("webapp")
        .expect("lookup")
        .expect("webapp")
        .uid
        .as_raw();
    for owned in [
        "",
        "application.py",
        ".platform",
        ".platform/confighooks/predeploy/01.sh",
    ] {
        assert_eq!(
            std::fs::symlink_metadata(release.join(owned))
                .expect("release entry")
                .uid(),
            app_uid,
            "the app user owns {owned:?} of its release"
        );
    }
    let copy = host.path(&format!("var/lib/hostmanager/platform/{}", record["id"]));
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(host.path("var/lib/hostmanager/state.json")).expect("state.json"),
    )
    .expect("state json");
    assert_eq!(
        state["current"]["platform"],
        copy.display().to_string(),
        "the serving release names root's copy"
    );
    for owned in [
        "",
        ".platform",
        ".platform/confighooks/predeploy",
        ".platform/confighooks/predeploy/01.sh",
        "Buildfile",
    ] {
        let meta = std::fs::symlink_metadata(copy.join(owned)).expect("copy entry");
        assert_eq!(meta.uid(), 0, "root owns {owned:?} of its copy");
        assert_eq!(
            meta.mode() & 0o022,
            0,
            "{owned:?} of the copy is writable by root only, whatever the zip said"
        );
    }
}

#[test]
fn a_hook_user_that_does_not_exist_fails_the_deployment_instead_of_running_as_root() {
    let mut host = TestHost::new().set("deploy", "hook_user", "no-such-user-hm");
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = b"#!/bin/sh\ntouch ran-as-someone\n";
    let record = host.deploy(
        &sample(
            dir.path(),
            "v1",
            &[Entry::File(".platform/hooks/prebuild/01.sh", hook, 0o755)],
        ),
        &[],
    );
    assert_eq!(record["status"], "failed", "{record:#}");
    assert!(
        record["message"]
            .as_str()
            .is_some_and(|m| m.contains("deploy.hook_user \"no-such-user-hm\" does not exist")),
        "{record:#}"
    );
}

#[test]
fn without_nginx_the_app_is_deployed_and_gated_on_its_own_port() {
    let mut host = TestHost::new().set("proxy", "enabled", false);
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    let record = host.deploy_ok(&sample(dir.path(), "v1", &[]));
    let steps: Vec<&str> = record["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert!(
        !steps.contains(&"proxy-config") && !steps.contains(&"switch-traffic"),
        "{steps:?}"
    );
    assert!(steps.contains(&"health-gate"), "{steps:?}");
    let answer = common::http::get(host.app_port, "/").expect("the app answers directly");
    assert_eq!(answer.body, "Hello from v1\n");
    assert!(host.get("/").is_err(), "no nginx listens");
}
