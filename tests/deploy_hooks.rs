//! Elastic Beanstalk's bundle layout: hooks, Buildfile, confighooks, their order, cwd, env,
//! failures and timeouts, with the old version serving throughout.

mod common;

use std::path::Path;
use std::time::Duration;

use common::bundles::{Entry, sample};
use common::load::Load;
use common::procs::hook_processes;
use common::{TestHost, wait_for};

/// A hook that appends one line naming itself, its cwd and its environment to $OUT.
fn recorder(name: &str) -> String {
    format!(
        "#!/bin/sh\necho \"{name} cwd=$(pwd) port=$PORT greeting=$GREETING leader=$EB_IS_COMMAND_LEADER\" >> \"$OUT\"\n"
    )
}

fn hooked_bundle(dir: &Path, version: &str) -> std::path::PathBuf {
    let prebuild_a = recorder("prebuild/01_first.sh");
    let prebuild_b = recorder("prebuild/02_not_executable.sh");
    let predeploy = recorder("predeploy/01_predeploy.sh");
    let postdeploy = recorder("postdeploy/01_postdeploy.sh");
    let config_prebuild = recorder("confighooks/prebuild");
    let config_predeploy = recorder("confighooks/predeploy");
    let config_postdeploy = recorder("confighooks/postdeploy");
    let buildfile = "make_artifact: echo built > artifact.txt && echo \"buildfile/make_artifact cwd=$(pwd)\" >> \"$OUT\"\n\
                     second: echo \"buildfile/second port=$PORT\" >> \"$OUT\"\n";
    sample(
        dir,
        version,
        &[
            Entry::File(
                ".platform/hooks/prebuild/02_not_executable.sh",
                prebuild_b.as_bytes(),
                0o644,
            ),
            Entry::File(
                ".platform/hooks/prebuild/01_first.sh",
                prebuild_a.as_bytes(),
                0o755,
            ),
            Entry::File(
                ".platform/hooks/predeploy/01_predeploy.sh",
                predeploy.as_bytes(),
                0o755,
            ),
            Entry::File(
                ".platform/hooks/postdeploy/01_postdeploy.sh",
                postdeploy.as_bytes(),
                0o755,
            ),
            Entry::File(
                ".platform/confighooks/prebuild/01.sh",
                config_prebuild.as_bytes(),
                0o755,
            ),
            Entry::File(
                ".platform/confighooks/predeploy/01.sh",
                config_predeploy.as_bytes(),
                0o755,
            ),
            Entry::File(
                ".platform/confighooks/postdeploy/01.sh",
                config_postdeploy.as_bytes(),
                0o755,
            ),
            Entry::File("Buildfile", buildfile.as_bytes(), 0o644),
        ],
    )
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn hooks_and_buildfile_run_in_elastic_beanstalk_order_with_cwd_and_env_and_confighooks_on_config_changes()
 {
    let mut host = TestHost::new();
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("order.log");
    let out_env = format!("OUT={}", out.display());
    let record = host.deploy(
        &hooked_bundle(dir.path(), "v1"),
        &["--env", &out_env, "--env", "GREETING=hello"],
    );
    assert_eq!(record["status"], "succeeded", "{record:#}");
    let release = host.path(&format!("var/app/releases/{}", record["id"]));
    let release = release.display();
    let port = host.app_port;
    assert_eq!(
        lines(&out),
        [
            format!("prebuild/01_first.sh cwd={release} port={port} greeting=hello leader=true"),
            format!(
                "prebuild/02_not_executable.sh cwd={release} port={port} greeting=hello leader=true"
            ),
            format!("buildfile/make_artifact cwd={release}"),
            format!("buildfile/second port={port}"),
            format!(
                "predeploy/01_predeploy.sh cwd={release} port={port} greeting=hello leader=true"
            ),
            format!(
                "postdeploy/01_postdeploy.sh cwd={release} port={port} greeting=hello leader=true"
            ),
        ]
    );
    let steps: Vec<&str> = record["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    let order = [
        "extract",
        "procfile",
        "hooks-prebuild",
        "buildfile",
        "hooks-predeploy",
        "proxy-config",
        "start-web",
        "health-gate",
        "switch-traffic",
        "flip",
        "hooks-postdeploy",
    ];
    let positions: Vec<usize> = order
        .iter()
        .map(|name| {
            steps
                .iter()
                .position(|s| s == name)
                .unwrap_or_else(|| panic!("step {name} in {steps:?}"))
        })
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "steps in order: {steps:?}"
    );
    let warned = host.events().into_iter().any(|e| {
        e["severity"] == "warning"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains("02_not_executable.sh") && m.contains("not executable"))
    });
    assert!(
        warned,
        "a warning event for the hook without its execute bit"
    );
    let hooks_log =
        std::fs::read_to_string(host.path("var/log/hostmanager/hooks.log")).expect("hooks.log");
    assert!(
        hooks_log.contains(".platform/hooks/prebuild/01_first.sh"),
        "{hooks_log}"
    );

    std::fs::remove_file(&out).expect("reset");
    let configured = host.cli(&["configure", "--set", "GREETING=hi", "--wait", "--json"]);
    let configured: serde_json::Value = serde_json::from_slice(&configured.stdout).expect("json");
    assert_eq!(configured["status"], "succeeded", "{configured:#}");
    assert_eq!(configured["kind"], "configure");
    assert!(
        configured["id"].as_u64() > record["id"].as_u64(),
        "a configuration change gets a new deployment id"
    );
    let new_release = host.path(&format!("var/app/releases/{}", configured["id"]));
    let alternate = host.alternate_port;
    assert_eq!(
        lines(&out),
        [
            format!(
                "confighooks/prebuild cwd={} port={alternate} greeting=hi leader=true",
                new_release.display()
            ),
            format!(
                "confighooks/predeploy cwd={} port={alternate} greeting=hi leader=true",
                new_release.display()
            ),
            format!(
                "confighooks/postdeploy cwd={} port={alternate} greeting=hi leader=true",
                new_release.display()
            ),
        ],
        "only the confighooks run on a configuration change"
    );
    assert_eq!(host.body("/env/GREETING"), "hi\n");
    assert_eq!(
        std::fs::read_to_string(new_release.join("artifact.txt"))
            .expect("build artefact carried over"),
        "built\n"
    );

    let again = host.cli(&["configure", "--set", "GREETING=hi", "--wait", "--json"]);
    let again: serde_json::Value = serde_json::from_slice(&again.stdout).expect("json");
    assert_eq!(
        again["status"], "noop",
        "the same desired state twice is a no-op"
    );
    assert_eq!(host.status()["release"]["deployment_id"], configured["id"]);
}

#[test]
fn the_same_bundle_and_properties_twice_is_a_noop() {
    let mut host = TestHost::new();
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = sample(dir.path(), "v1", &[]);
    let first = host.deploy(&bundle, &["--env", "A=1"]);
    assert_eq!(first["status"], "succeeded");
    let pid = host.status()["processes"][0]["pid"].clone();
    let second = host.deploy(&bundle, &["--env", "A=1"]);
    assert_eq!(second["status"], "noop", "{second:#}");
    assert_eq!(
        host.status()["processes"][0]["pid"],
        pid,
        "nothing restarted"
    );
    assert_eq!(host.status()["release"]["deployment_id"], first["id"]);
    let third = host.deploy(&bundle, &["--env", "A=2"]);
    assert_eq!(
        third["status"], "succeeded",
        "a property change is a change"
    );
}

/// Each failure case fails the deployment naming the hook or command, its exit status and its
/// output, while v1 serves every request throughout.
#[test]
fn failing_or_hanging_hooks_fail_the_deployment_and_v1_serves_throughout() {
    let mut host = TestHost::new().set("deploy", "hook_timeout", "1s");
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    host.deploy_ok(&sample(dir.path(), "v1", &[]));
    let load = Load::start(host.proxy_port, "/", 2);
    let failing_hook =
        b"#!/bin/sh\necho 'preparing assets'\necho 'assets.tar missing' >&2\nexit 3\n";
    let hanging_hook = b"#!/bin/sh\necho waiting forever\nsleep 60\n";
    let cases: Vec<(&str, std::path::PathBuf, Vec<&str>)> = vec![
        (
            "failing prebuild hook",
            sample(
                dir.path(),
                "v2-prebuild",
                &[Entry::File(
                    ".platform/hooks/prebuild/10_assets.sh",
                    failing_hook,
                    0o755,
                )],
            ),
            vec![
                "hooks-prebuild:",
                ".platform/hooks/prebuild/10_assets.sh",
                "exit status: 3",
            ],
        ),
        (
            "failing Buildfile line",
            sample(
                dir.path(),
                "v2-buildfile",
                &[Entry::File(
                    "Buildfile",
                    b"ok: true\nbroken: false\n",
                    0o644,
                )],
            ),
            vec!["buildfile:", "Buildfile line 2 (broken)", "exit status: 1"],
        ),
        (
            "hanging predeploy hook",
            sample(
                dir.path(),
                "v2-hang",
                &[Entry::File(
                    ".platform/hooks/predeploy/01_wait.sh",
                    hanging_hook,
                    0o755,
                )],
            ),
            vec![
                "hooks-predeploy:",
                ".platform/hooks/predeploy/01_wait.sh hung",
                "process group was killed",
            ],
        ),
    ];
    for (case, bundle, words) in cases {
        let record = host.deploy(&bundle, &[]);
        assert_eq!(record["status"], "failed", "{case}: {record:#}");
        let message = record["message"].as_str().expect("message");
        for word in words {
            assert!(message.contains(word), "{case}: {message:?} lacks {word:?}");
        }
    }
    let events = host.events();
    let output_event = events
        .iter()
        .find(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.contains("10_assets.sh"))
                && e["severity"] == "error"
        })
        .expect("an error event for the failing hook");
    let tail = output_event["details"]["context"]["output_tail"]
        .as_str()
        .expect("output tail");
    assert!(
        tail.contains("preparing assets") && tail.contains("assets.tar missing"),
        "{tail}"
    );
    wait_for(
        "the hung hook's process to be gone",
        Duration::from_secs(5),
        || {
            hook_processes(host.root.path(), "01_wait.sh")
                .is_empty()
                .then_some(())
        },
    );
    let outcomes = load.finish();
    assert!(
        outcomes.len() > 20,
        "the load ran: {} requests",
        outcomes.len()
    );
    let bad: Vec<_> = outcomes
        .iter()
        .filter(|o| !matches!(o, Ok((200, body)) if body == "Hello from v1\n"))
        .collect();
    assert!(
        bad.is_empty(),
        "v1 served every request; {} did not: {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
}
