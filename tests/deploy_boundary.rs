//! The app-to-root boundary of deployments: what root runs (hooks, confighooks, postdeploy
//! re-runs) or loads (nginx overrides, parsed by a root `nginx -t`) comes only from root's own
//! copy of `.platform`, never from the release the app user owns; symlinks under `.platform`
//! are refused; hooks run as an existing `deploy.hook_user`; a release the app user cannot
//! reach fails the deployment by name.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::attack::{
    active_nginx_config, lines, logging_conf, marker_dir, nginx_marker, plant, planted, release,
};
use common::bundles::{Entry, sample};
use common::procs::alive;
use common::{TestHost, wait_for};
use nix::sys::signal::Signal;

#[test]
fn a_planted_platform_is_never_run_or_loaded_by_configure_rollback_or_restart() {
    let mut host = TestHost::new();
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mark = marker_dir();
    let m = mark.path().display().to_string();
    // Records who owns the tree it runs in: root's, until the permissions step hands it over.
    let config_prebuild = format!(
        "#!/bin/sh\necho \"$(stat -c %u .) $(find . ! -user 0 | wc -l)\" >> {m}/legit-confighooks-prebuild\n"
    );
    let config_postdeploy = format!("#!/bin/sh\necho ran >> {m}/legit-confighooks-postdeploy\n");
    let legit_conf = logging_conf("legit-nginx");
    let v1 = host.deploy_ok(&sample(
        dir.path(),
        "v1",
        &[
            Entry::File(
                ".platform/confighooks/prebuild/01.sh",
                config_prebuild.as_bytes(),
                0o755,
            ),
            Entry::File(
                ".platform/confighooks/postdeploy/01.sh",
                config_postdeploy.as_bytes(),
                0o755,
            ),
            Entry::File(
                ".platform/nginx/conf.d/legit.conf",
                legit_conf.as_bytes(),
                0o644,
            ),
        ],
    ));
    // v1 serves from its own release directory, which its app user owns.
    plant(&release(&host, &v1["id"]), mark.path());

    let configured = host.cli(&["configure", "--set", "X=1", "--wait", "--json"]);
    let configured: serde_json::Value = serde_json::from_slice(&configured.stdout).expect("json");
    assert_eq!(configured["status"], "succeeded", "{configured:#}");
    assert_eq!(host.body("/env/X"), "1\n");
    assert_eq!(
        planted(&host, mark.path()),
        Vec::<String>::new(),
        "nothing planted ran"
    );
    assert_eq!(
        std::fs::read_to_string(mark.path().join("legit-confighooks-prebuild"))
            .expect("the bundle's confighook ran"),
        "0 0\n",
        "the confighook ran once, in a copy root owns entirely"
    );
    assert_eq!(lines(&mark.path().join("legit-confighooks-postdeploy")), 1);
    let new_release = release(&host, &configured["id"]);
    assert!(
        new_release
            .join(".platform/confighooks/prebuild/01.sh")
            .is_file()
            && !new_release
                .join(".platform/confighooks/prebuild/00.sh")
                .exists()
            && !new_release.join(".platform/nginx/nginx.conf").exists(),
        "the configured release shows root's .platform, not the planted one"
    );
    assert!(!active_nginx_config(&host).contains("planted"));

    // Back to v1's release, the planted one: its overrides come from root's copy.
    std::fs::remove_file(nginx_marker(&host, "legit-nginx")).expect("legit log from v1");
    let rolled = host.cli(&["rollback", "--wait", "--json"]);
    let rolled: serde_json::Value = serde_json::from_slice(&rolled.stdout).expect("json");
    assert_eq!(rolled["status"], "succeeded", "{rolled:#}");
    assert_eq!(host.status()["release"]["deployment_id"], v1["id"]);
    assert_eq!(host.body("/"), "Hello from v1\n");
    assert!(
        nginx_marker(&host, "legit-nginx").exists(),
        "nginx parsed v1's own override again"
    );
    let active = active_nginx_config(&host);
    assert!(
        active.contains("legit-nginx") && !active.contains("planted"),
        "{active}"
    );
    assert_eq!(
        planted(&host, mark.path()),
        Vec::<String>::new(),
        "nothing planted ran"
    );

    // A restart of the planted release stages the same overrides, from root's copy.
    std::fs::remove_file(nginx_marker(&host, "legit-nginx")).expect("legit log");
    let restarted = host.cli(&["restart", "--wait", "--json"]);
    let restarted: serde_json::Value = serde_json::from_slice(&restarted.stdout).expect("json");
    assert_eq!(restarted["status"], "succeeded", "{restarted:#}");
    assert!(nginx_marker(&host, "legit-nginx").exists());
    assert!(!active_nginx_config(&host).contains("planted"));
    assert_eq!(
        planted(&host, mark.path()),
        Vec::<String>::new(),
        "nothing planted ran"
    );
}

#[test]
fn retention_deletes_root_copies_with_their_releases() {
    let mut host = TestHost::new().set("deploy", "releases_to_keep", 2);
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = b"#!/bin/sh\ntrue\n";
    let ids: Vec<serde_json::Value> = ["v1", "v2", "v3"]
        .iter()
        .map(|version| {
            let bundle = sample(
                dir.path(),
                version,
                &[Entry::File(".platform/hooks/predeploy/01.sh", hook, 0o755)],
            );
            host.deploy_ok(&bundle)["id"].clone()
        })
        .collect();
    let copy = |id: &serde_json::Value| host.path(&format!("var/lib/hostmanager/platform/{id}"));
    assert!(!release(&host, &ids[0]).exists() && !copy(&ids[0]).exists());
    for kept in &ids[1..] {
        assert!(
            copy(kept).join(".platform/hooks/predeploy/01.sh").is_file(),
            "release {kept} is kept with its copy"
        );
    }
}

/// A hook that records its pid in `mark/<name>.pid`, then waits until `mark/go` exists.
fn pausing_hook(mark: &Path, name: &str) -> String {
    let m = mark.display();
    format!("#!/bin/sh\necho $$ >> {m}/{name}.pid\nwhile [ ! -e {m}/go ]; do sleep 0.05; done\n")
}

fn pids(path: &Path) -> Vec<i32> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn concluded(host: &TestHost, id: &serde_json::Value) -> serde_json::Value {
    wait_for(
        "the interrupted deployment to conclude",
        Duration::from_secs(30),
        || {
            let records: serde_json::Value =
                serde_json::from_str(&host.cli_ok(&["deployments", "--json"])).ok()?;
            let record = records.as_array()?.iter().find(|r| r["id"] == *id)?.clone();
            (record["status"] != "running" && record["status"] != "queued").then_some(record)
        },
    )
}

#[test]
fn crash_recovery_reruns_postdeploy_hooks_from_roots_copy() {
    let mut host = TestHost::new();
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mark = marker_dir();
    host.deploy_ok(&sample(dir.path(), "v1", &[]));
    let hook = pausing_hook(mark.path(), "postdeploy");
    let v2 = sample(
        dir.path(),
        "v2",
        &[Entry::File(
            ".platform/hooks/postdeploy/01_pause.sh",
            hook.as_bytes(),
            0o755,
        )],
    );
    let queued = host.cli_ok(&["deploy", v2.to_str().expect("utf-8"), "--json"]);
    let id = serde_json::from_str::<serde_json::Value>(&queued).expect("json")["id"].clone();
    let pid_file = mark.path().join("postdeploy.pid");
    let first = wait_for(
        "the postdeploy hook to start",
        Duration::from_secs(30),
        || pids(&pid_file).first().copied(),
    );
    // v2 took traffic; its app user replaces `.platform` (00.sh sorts before the real hook).
    plant(&release(&host, &id), mark.path());
    host.stop_agent(Signal::SIGKILL, Duration::from_secs(5));
    host.start();
    wait_for(
        "the postdeploy hook to run again",
        Duration::from_secs(30),
        || (pids(&pid_file).len() >= 2).then_some(()),
    );
    std::fs::write(mark.path().join("go"), "").expect("go");
    let record = concluded(&host, &id);
    assert_eq!(record["status"], "succeeded", "{record:#}");
    wait_for(
        "the interrupted hook to be killed",
        Duration::from_secs(10),
        || (!alive(first)).then_some(()),
    );
    assert_eq!(host.body("/"), "Hello from v2\n");
    assert_eq!(
        planted(&host, mark.path()),
        Vec::<String>::new(),
        "nothing planted ran"
    );
}

#[test]
fn crash_recovery_restages_nginx_from_roots_copy() {
    let (mut host, dir, mark, v1) = serving_v1_with_a_legit_override();
    plant(&release(&host, &v1["id"]), mark.path());
    // A slow request keeps v1's nginx workers draining: the agent dies in switch-traffic,
    // with nginx on v2's config and v1 still the serving release it must restage.
    let port = host.proxy_port;
    let slow = std::thread::spawn(move || common::http::get(port, "/sleep/8000"));
    wait_for(
        "the slow request to be in flight",
        Duration::from_secs(10),
        || {
            let out = std::process::Command::new("ss")
                .args([
                    "-Htn",
                    "state",
                    "established",
                    &format!("( dport = :{port} )"),
                ])
                .output()
                .ok()?;
            (!out.stdout.is_empty()).then_some(())
        },
    );
    let v2 = sample(dir.path(), "v2", &[]);
    let queued = host.cli_ok(&["deploy", v2.to_str().expect("utf-8"), "--json"]);
    let id = serde_json::from_str::<serde_json::Value>(&queued).expect("json")["id"].clone();
    // The step is recorded before nginx is pointed at v2's generation: wait for the pointer
    // too, or the agent may die with v1's config still active and nothing to restage.
    wait_for(
        "the deployment to point nginx at v2's config",
        Duration::from_secs(30),
        || {
            (host.status()["deployment"]["step"] == "switch-traffic"
                && !active_nginx_config(&host).contains("legit-nginx"))
            .then_some(())
        },
    );
    host.stop_agent(Signal::SIGKILL, Duration::from_secs(5));
    std::fs::remove_file(nginx_marker(&host, "legit-nginx")).expect("legit log from v1");
    host.start();
    let record = concluded(&host, &id);
    assert_eq!(record["status"], "failed", "{record:#}");
    assert_eq!(host.status()["release"]["deployment_id"], v1["id"]);
    wait_for("v1 to serve through nginx", Duration::from_secs(20), || {
        (host.get("/").ok()?.body == "Hello from v1\n").then_some(())
    });
    assert!(
        nginx_marker(&host, "legit-nginx").exists(),
        "recovery staged v1's own override"
    );
    let active = active_nginx_config(&host);
    assert!(
        active.contains("legit-nginx") && !active.contains("planted"),
        "{active}"
    );
    assert_eq!(
        planted(&host, mark.path()),
        Vec::<String>::new(),
        "nginx loaded nothing planted"
    );
    let _ = slow.join();
}

#[test]
fn a_symlink_under_platform_fails_the_deployment_and_is_never_followed() {
    let mut host = TestHost::new();
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mark = marker_dir();
    let v1 = host.deploy_ok(&sample(dir.path(), "v1", &[]));
    let hook = format!(
        "#!/bin/sh\ntouch {}/planted-through-link\n",
        mark.path().display()
    );
    let conf = logging_conf("planted-through-link-conf");
    let cases = [
        (".platform/hooks/prebuild/01.sh", "../../../hook.sh"),
        (".platform/nginx/conf.d/x.conf", "../../../x.conf"),
        ("Buildfile", "build/Buildfile"),
    ];
    for (link, target) in cases {
        let buildfile = "run: sh ./hook.sh\n";
        let record = host.deploy(
            &sample(
                dir.path(),
                "v2",
                &[
                    Entry::File("hook.sh", hook.as_bytes(), 0o755),
                    Entry::File("x.conf", conf.as_bytes(), 0o644),
                    Entry::File("build/Buildfile", buildfile.as_bytes(), 0o644),
                    Entry::Symlink(link, target),
                ],
            ),
            &[],
        );
        assert_eq!(record["status"], "failed", "{link}: {record:#}");
        let message = record["message"].as_str().expect("message");
        assert!(
            message.starts_with(&format!(
                "extract: bundle rejected: {link} is a symbolic link"
            )),
            "{link}: {message}"
        );
        assert!(
            !host
                .path(&format!("var/lib/hostmanager/platform/{}", record["id"]))
                .exists(),
            "{link}: the half-made copy is removed"
        );
    }
    assert_eq!(
        planted(&host, mark.path()),
        Vec::<String>::new(),
        "no link was followed"
    );
    assert_eq!(host.status()["release"]["deployment_id"], v1["id"]);
    assert_eq!(host.body("/"), "Hello from v1\n");
}

#[test]
fn hooks_and_buildfile_run_as_an_existing_hook_user() {
    let hooks_user = common::ensure_system_user("hm-hooks");
    let mut host = TestHost::new().set("deploy", "hook_user", "hm-hooks");
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = marker_dir();
    let o = out.path().display();
    let hook = |phase: &str| format!("#!/bin/sh\nid -u > {o}/{phase}\nid -g >> {o}/{phase}\n");
    let (prebuild, predeploy, postdeploy, confighook) = (
        hook("prebuild"),
        hook("predeploy"),
        hook("postdeploy"),
        hook("confighooks-prebuild"),
    );
    let buildfile = format!("who: id -u > {o}/buildfile && id -g >> {o}/buildfile\n");
    let record = host.deploy_ok(&sample(
        dir.path(),
        "v1",
        &[
            Entry::File(".platform/hooks/prebuild/01.sh", prebuild.as_bytes(), 0o755),
            Entry::File(
                ".platform/hooks/predeploy/01.sh",
                predeploy.as_bytes(),
                0o755,
            ),
            Entry::File(
                ".platform/hooks/postdeploy/01.sh",
                postdeploy.as_bytes(),
                0o755,
            ),
            Entry::File(
                ".platform/confighooks/prebuild/01.sh",
                confighook.as_bytes(),
                0o755,
            ),
            Entry::File("Buildfile", buildfile.as_bytes(), 0o644),
        ],
    ));
    let configured = host.cli(&["configure", "--set", "X=1", "--wait", "--json"]);
    let configured: serde_json::Value = serde_json::from_slice(&configured.stdout).expect("json");
    assert_eq!(configured["status"], "succeeded", "{configured:#}");
    let expected = format!("{}\n{}\n", hooks_user.uid, hooks_user.gid);
    assert_ne!(hooks_user.uid.as_raw(), 0);
    for phase in [
        "prebuild",
        "buildfile",
        "predeploy",
        "postdeploy",
        "confighooks-prebuild",
    ] {
        let written = std::fs::read_to_string(out.path().join(phase))
            .unwrap_or_else(|e| panic!("{phase} ran ({e}); record: {record:#}"));
        assert_eq!(written, expected, "{phase} ran as hm-hooks");
    }
}

#[test]
fn a_release_the_app_user_cannot_reach_fails_the_deployment_naming_the_directory() {
    let mut host = TestHost::new();
    let app_dir = host.path("var/app");
    std::fs::create_dir_all(&app_dir).expect("mkdir var/app");
    std::fs::set_permissions(&app_dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    let record = host.deploy(&sample(dir.path(), "v1", &[]), &[]);
    assert_eq!(record["status"], "failed", "{record:#}");
    let message = record["message"].as_str().expect("message");
    let expected = format!(
        "permissions: the app user webapp (uid {}) cannot reach its release {}: directory {} is mode 0700, owner root",
        common::ensure_system_user("webapp").uid,
        std::fs::canonicalize(release(&host, &record["id"]).parent().expect("releases"))
            .expect("real path")
            .join(record["id"].to_string())
            .display(),
        std::fs::canonicalize(&app_dir)
            .expect("real path")
            .display()
    );
    assert!(
        message.starts_with(&expected),
        "{message}\nexpected: {expected}"
    );
    let steps: Vec<&str> = record["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert!(
        !steps.contains(&"start-web"),
        "no process was started: {steps:?}"
    );
    assert_eq!(host.status()["processes"], serde_json::json!([]));
}

#[test]
fn a_release_from_an_earlier_agent_without_a_root_copy_loses_its_overrides_with_a_warning() {
    let (mut host, dir, _mark, v1) = serving_v1_with_a_legit_override();
    host.deploy_ok(&sample(dir.path(), "v2", &[]));
    host.stop_agent(Signal::SIGTERM, Duration::from_secs(10));
    // What an earlier agent version wrote: no `platform` for the releases it deployed.
    let state_file = host.path("var/lib/hostmanager/state.json");
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_file).expect("state")).expect("json");
    assert_eq!(state["previous"][0]["deployment_id"], v1["id"]);
    state["previous"][0]
        .as_object_mut()
        .expect("previous release")
        .remove("platform")
        .expect("this agent recorded v1's copy");
    std::fs::write(&state_file, serde_json::to_vec(&state).expect("json")).expect("write");
    host.start();
    let rolled = host.cli(&["rollback", "--wait", "--json"]);
    let rolled: serde_json::Value = serde_json::from_slice(&rolled.stdout).expect("json");
    assert_eq!(rolled["status"], "succeeded", "{rolled:#}");
    assert_eq!(host.body("/"), "Hello from v1\n");
    assert!(
        !active_nginx_config(&host).contains("legit-nginx"),
        "overrides nobody can vouch for are not loaded"
    );
    let warned = host.events().into_iter().any(|e| {
        e["severity"] == "warning"
            && e["message"].as_str().is_some_and(|m| {
                m.contains(&format!("(deployment {}) has no root-owned copy", v1["id"]))
            })
    });
    assert!(warned, "a warning event says why v1's overrides are gone");
}

/// A running agent serving v1, whose bundle carries a conf.d override that leaves a marker
/// when nginx loads it: (host, bundle dir, marker dir, v1's record).
fn serving_v1_with_a_legit_override() -> (
    TestHost,
    tempfile::TempDir,
    tempfile::TempDir,
    serde_json::Value,
) {
    let mut host = TestHost::new();
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mark = marker_dir();
    let legit_conf = logging_conf("legit-nginx");
    let v1 = host.deploy_ok(&sample(
        dir.path(),
        "v1",
        &[Entry::File(
            ".platform/nginx/conf.d/legit.conf",
            legit_conf.as_bytes(),
            0o644,
        )],
    ));
    (host, dir, mark, v1)
}
