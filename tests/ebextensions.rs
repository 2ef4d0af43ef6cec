//! `.ebextensions` with a real agent, real nginx, real apt, real users and groups
//! (docs/ebextensions.md): every key applied in Elastic Beanstalk's order, the settings kept
//! with the release and brought back by a rollback, and each refusal in EB's words while the
//! serving release keeps serving.

mod common;

use std::os::unix::fs::MetadataExt;
use std::process::Command;

use common::TestHost;
use common::bundles::{Entry, sample};
use serde_json::Value;

/// A tiny Debian package this suite installs for real (and removes first, so the install runs).
const PACKAGE: &str = "figlet";

fn run(program: &str, args: &[&str]) -> std::process::Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

fn message(record: &Value) -> String {
    record["message"].as_str().unwrap_or_default().to_string()
}

fn events_of(host: &TestHost, record: &Value, severity: &str) -> Vec<String> {
    host.events()
        .into_iter()
        .filter(|e| e["severity"] == severity && e["deployment_id"] == record["id"])
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Where `needle` first appears in `text`, panicking with the text when it does not.
fn at(text: &str, needle: &str) -> usize {
    text.find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in hooks.log:\n{text}"))
}

/// Accounts made by the test, removed however it ends.
struct Accounts {
    user: String,
    group: String,
}

impl Drop for Accounts {
    fn drop(&mut self) {
        let _ = run("userdel", &[&self.user]);
        let _ = run("groupdel", &[&self.group]);
    }
}

fn app_config(group: &str, user: &str) -> String {
    format!(
        r#"
option_settings:
  - option_name: FROM_BUNDLE
    value: bundle
  - option_name: OVERRIDE
    value: bundle
  # Only the bundle's own health path passes: /health answers 500 with this property.
  - option_name: HEALTH_STATUS
    value: "500"
  - namespace: aws:elasticbeanstalk:application
    option_name: Application Healthcheck URL
    value: /
  - namespace: aws:elasticbeanstalk:environment:proxy:staticfiles
    option_name: /assets
    value: public
packages:
  apt:
    {PACKAGE}: []
groups:
  {group}: {{}}
users:
  {user}:
    groups: [{group}]
files:
  "/etc/hmtest/app.conf":
    content: |
      setting = new
    mode: "000640"
    owner: root
    group: {group}
  "/etc/hmtest/data.json":
    content:
      port: 8080
  "/etc/hmtest/current":
    content: /etc/hmtest/app.conf
    mode: "120777"
  "/etc/systemd/system/hmtest.service":
    content: |
      [Unit]
      Description=hostmanager test unit
      [Service]
      ExecStart=/bin/true
      [Install]
      WantedBy=multi-user.target
commands:
  01_first:
    command: echo first
  02_skipped:
    command: touch "$HOSTMANAGER_ROOT/never"
    test: "false"
  03_env:
    command: echo "$GREETING:$HOME:$FROM_BUNDLE" > "$HOSTMANAGER_ROOT/env-out"
    env:
      GREETING: hi
  04_fails:
    command: exit 3
    ignoreErrors: true
services:
  systemd:
    hmtest:
      enabled: true
"#
    )
}

const CONTAINER_CONFIG: &str = r#"
container_commands:
  02_all:
    command: test -d .ebextensions && echo "$EB_IS_COMMAND_LEADER" > all-ran
  01_leader:
    command: [sh, -c, "echo leader > leader-ran"]
    leader_only: true
"#;

const PREDEPLOY: &[u8] =
    b"#!/bin/sh\ntest ! -e .ebextensions && echo \"predeploy $EB_IS_COMMAND_LEADER\"\n";

#[test]
fn every_key_applies_in_ebs_order_and_a_rollback_brings_back_the_releases_settings() {
    let tag = std::process::id() % 100_000;
    let accounts = Accounts {
        user: format!("hmt{tag}u"),
        group: format!("hmt{tag}g"),
    };
    drop(Accounts {
        user: accounts.user.clone(),
        group: accounts.group.clone(),
    });
    let _ = run("apt-get", &["purge", "-y", "-q", PACKAGE]);
    // apt needs its package lists to install anything; a machine may not have fetched them.
    let policy = run("apt-cache", &["policy", PACKAGE]);
    let policy = String::from_utf8_lossy(&policy.stdout);
    if !policy.contains("Candidate:") || policy.contains("Candidate: (none)") {
        let _ = run("apt-get", &["update", "-q"]);
    }
    let mut host = TestHost::new();
    host.start();
    std::fs::create_dir_all(host.path("etc/hmtest")).expect("mkdir");
    std::fs::write(host.path("etc/hmtest/app.conf"), "setting = old\n").expect("old file");

    let config = app_config(&accounts.group, &accounts.user);
    let bundle = sample(
        host.root.path(),
        "v1",
        &[
            Entry::File(".ebextensions/01-app.config", config.as_bytes(), 0o644),
            Entry::File(
                ".ebextensions/02-container.config",
                CONTAINER_CONFIG.as_bytes(),
                0o644,
            ),
            Entry::File(".platform/hooks/predeploy/01-check.sh", PREDEPLOY, 0o755),
            Entry::File("public/hi.txt", b"static hi\n", 0o644),
        ],
    );
    let v1 = host.deploy(&bundle, &["--env", "OVERRIDE=cli"]);
    assert_eq!(v1["status"], "succeeded", "{v1:#}");

    // Elastic Beanstalk's order, from hooks.log: per file packages … services, the build,
    // container commands (leader-only first), .ebextensions cleaned, then predeploy hooks.
    let log =
        std::fs::read_to_string(host.path("var/log/hostmanager/hooks.log")).expect("hooks.log");
    let order = [
        "01-app.config packages.apt",
        "01-app.config groups.",
        "01-app.config users.",
        "01-app.config files./etc/hmtest/app.conf",
        "01-app.config commands.01_first",
        "01-app.config services.hmtest",
        "02-container.config container_commands.01_leader",
        "02-container.config container_commands.02_all",
        "Cleaned ebextensions subdirectories from app staging directory.",
        "predeploy true",
    ];
    let positions: Vec<usize> = order.iter().map(|n| at(&log, n)).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "out of order: {order:?} at {positions:?}\n{log}"
    );
    assert!(
        log.contains("commands.02_skipped: test `false` did not pass: not run"),
        "{log}"
    );
    assert!(
        log.contains("commands.04_fails: failed, ignored (ignoreErrors)"),
        "{log}"
    );
    assert!(
        !host.path("never").exists(),
        "a command whose test failed ran"
    );
    // `env` replaces the environment: no HOME, no properties.
    assert_eq!(
        std::fs::read_to_string(host.path("env-out")).expect("env-out"),
        "hi::\n"
    );

    // The host changes, real ones.
    let status = run("dpkg-query", &["-W", "-f", "${db:Status-Status}", PACKAGE]);
    assert_eq!(String::from_utf8_lossy(&status.stdout), "installed");
    let changes = v1["host_changes"]
        .as_array()
        .expect("host changes recorded")
        .clone();
    let changes: Vec<&str> = changes.iter().filter_map(Value::as_str).collect();
    assert!(
        changes
            .iter()
            .any(|c| c.starts_with(&format!("package {PACKAGE} "))),
        "{changes:?}"
    );
    assert!(
        changes
            .iter()
            .any(|c| c.contains("(the previous one kept as")),
        "{changes:?}"
    );
    let group = nix::unistd::Group::from_name(&accounts.group)
        .ok()
        .flatten()
        .expect("group created");
    let user = nix::unistd::User::from_name(&accounts.user)
        .ok()
        .flatten()
        .expect("user created");
    assert_eq!(user.shell, std::path::PathBuf::from("/usr/sbin/nologin"));
    assert!(group.mem.contains(&accounts.user), "{:?}", group.mem);
    let conf = host.path("etc/hmtest/app.conf");
    assert_eq!(
        std::fs::read_to_string(&conf).expect("conf"),
        "setting = new\n"
    );
    let meta = std::fs::metadata(&conf).expect("meta");
    assert_eq!(
        (meta.mode() & 0o7777, meta.gid()),
        (0o640, group.gid.as_raw())
    );
    assert_eq!(
        std::fs::read_to_string(host.path("etc/hmtest/app.conf.bak")).expect(".bak"),
        "setting = old\n"
    );
    assert_eq!(
        std::fs::read_to_string(host.path("etc/hmtest/data.json")).expect("json"),
        r#"{"port":8080}"#
    );
    assert_eq!(
        std::fs::read_link(host.path("etc/hmtest/current")).expect("link"),
        std::path::Path::new("/etc/hmtest/app.conf")
    );
    assert!(
        host.path("etc/systemd/system/multi-user.target.wants/hmtest.service")
            .is_symlink(),
        "unit enabled"
    );

    // The release: container commands ran in it, .ebextensions is gone.
    let release = host.path("var/app/current");
    assert_eq!(
        std::fs::read_to_string(release.join("leader-ran")).expect("leader"),
        "leader\n"
    );
    assert_eq!(
        std::fs::read_to_string(release.join("all-ran")).expect("all"),
        "true\n"
    );
    assert!(
        !release.join(".ebextensions").exists(),
        ".ebextensions left in the release"
    );

    // The settings: properties (the request's over the bundle's), health URL, static files.
    assert_eq!(host.body("/env/FROM_BUNDLE"), "bundle\n");
    assert_eq!(host.body("/env/OVERRIDE"), "cli\n");
    assert_eq!(host.body("/assets/hi.txt"), "static hi\n");
    let effective = host.cli_ok(&["config", "--effective"]);
    assert!(effective.contains("aws:elasticbeanstalk:application:Application Healthcheck URL = /  (.ebextensions/01-app.config)"), "{effective}");
    assert!(
        effective.contains(
            "aws:elasticbeanstalk:application:environment:OVERRIDE = (hidden)  (deployment request)"
        ),
        "{effective}"
    );
    let settings = host.status()["release"]["settings"].clone();
    assert_eq!(
        settings["properties"]["FROM_BUNDLE"],
        ".ebextensions/01-app.config"
    );
    assert!(
        !settings.to_string().contains("\"bundle\""),
        "a property value in status: {settings}"
    );
    let get_config = host.path("opt/elasticbeanstalk/bin/get-config");
    let value = run(
        get_config.to_str().expect("utf-8"),
        &["environment", "-k", "FROM_BUNDLE"],
    );
    assert_eq!(
        String::from_utf8_lossy(&value.stdout),
        "bundle\n",
        "{}",
        String::from_utf8_lossy(&value.stderr)
    );

    // v2 has no .ebextensions: the host's settings; a rollback brings v1's back.
    let v2 = host.deploy_ok(&sample(host.root.path(), "v2", &[]));
    assert_eq!(host.body("/"), "Hello from v2\n");
    let path_of = |host: &TestHost| {
        host.status()["release"]["settings"]["options"]["aws:elasticbeanstalk:application:Application Healthcheck URL"]["value"].clone()
    };
    assert_eq!(path_of(&host), "/health", "{v2:#}");
    let rolled = host.cli(&["rollback", "--wait", "--json"]);
    let rolled: Value = serde_json::from_slice(&rolled.stdout).expect("json");
    assert_eq!(rolled["status"], "succeeded", "{rolled:#}");
    assert_eq!(host.body("/"), "Hello from v1\n");
    assert_eq!(path_of(&host), "/");
    assert_eq!(host.body("/env/OVERRIDE"), "cli\n");
    assert_eq!(host.body("/assets/hi.txt"), "static hi\n");
    let _ = run("apt-get", &["purge", "-y", "-q", PACKAGE]);
}

#[test]
fn refusals_and_skips_are_said_in_ebs_words_and_the_serving_release_keeps_serving() {
    let mut host = TestHost::new();
    host.start();
    host.deploy_ok(&sample(host.root.path(), "v1", &[]));
    let dir = host.root.path().to_path_buf();
    let failing = |version: &str, config: &str| -> Value {
        let bundle = sample(
            &dir,
            version,
            &[Entry::File(
                ".ebextensions/01.config",
                config.as_bytes(),
                0o644,
            )],
        );
        let record = host.deploy(&bundle, &[]);
        assert_eq!(record["status"], "failed", "{record:#}");
        assert_eq!(
            host.body("/"),
            "Hello from v1\n",
            "the serving release changed"
        );
        record
    };

    let broken = failing("yaml", "files:\n  \"/a\":\n    content: x\n   mode: y\n{");
    let text = message(&broken);
    assert!(text.contains("The configuration file .ebextensions/01.config in application version sample-yaml contains invalid YAML or JSON. YAML exception: Invalid Yaml: "), "{text}");
    assert!(
        text.contains(", JSON exception: Invalid JSON: ")
            && text.contains("Update the configuration file."),
        "{text}"
    );

    let octal = failing(
        "octal",
        "files:\n  \"/etc/x.conf\":\n    content: x\n    mode: 000755\n",
    );
    assert!(
        message(&octal).contains(
            "files./etc/x.conf.mode: written without quotes, YAML reads it as the number"
        ),
        "{octal:#}"
    );

    let refused = failing(
        "refused",
        "packages:\n  yum:\n    git: []\nfiles:\n  \"/etc/nginx/conf.d/proxy.conf\":\n    content: x\noption_settings:\n  aws:elasticbeanstalk:container:nodejs:\n    NodeCommand: npm start\n  aws:elasticbeanstalk:environment:proxy:\n    ProxyServer: apache\n",
    );
    let text = message(&refused);
    for expected in [
        "packages.yum: git: yum packages cannot be installed on Debian",
        "files./etc/nginx/conf.d/proxy.conf: hostmanager renders nginx's configuration itself",
        "Invalid option specification (Namespace: 'aws:elasticbeanstalk:container:nodejs', OptionName: 'NodeCommand'): Unknown configuration setting.",
        "Apache httpd is not supported",
    ] {
        assert!(text.contains(expected), "{expected:?} not in {text}");
    }

    let command = failing(
        "command",
        "commands:\n  01_fail:\n    command: echo doomed; exit 4\n",
    );
    let text = message(&command);
    assert!(
        text.contains(".ebextensions/01.config commands.01_fail") && text.contains("doomed"),
        "{text}"
    );

    // Skipped with EB's warning, ignored with one, noted once: the deployment succeeds.
    let bundle = sample(
        &dir,
        "skips",
        &[
            Entry::File(".ebextensions/01-typo.config", b"OptionSettings:\n  a: b\n", 0o644),
            Entry::File(".ebextensions/02-infra.config", b"option_settings:\n  aws:autoscaling:asg:\n    MinSize: 2\n  aws:elasticbeanstalk:command:\n    DeploymentPolicy: Rolling\n", 0o644),
            Entry::File("__MACOSX/.ebextensions/._02-infra.config", b"\0\x05\x16\x07", 0o644),
        ],
    );
    let skips = host.deploy_ok(&bundle);
    let warnings = events_of(&host, &skips, "warning");
    assert!(warnings.contains(&"Error processing file (Skipping): '.ebextensions/01-typo.config' - Contains invalid key: 'OptionSettings'. For information about valid keys, see https://docs.aws.amazon.com/elasticbeanstalk/latest/dg/ebextensions.html".to_string()), "{warnings:?}");
    assert!(
        warnings.iter().any(|w| w.starts_with("__MACOSX/ ignored")),
        "{warnings:?}"
    );
    let notes = events_of(&host, &skips, "info");
    assert!(
        notes
            .iter()
            .any(|n| n.contains("not to this host (not applied): aws:autoscaling:asg (MinSize)")),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.contains("aws:elasticbeanstalk:command (DeploymentPolicy)")),
        "{notes:?}"
    );
    assert_eq!(host.body("/"), "Hello from skips\n");
}
