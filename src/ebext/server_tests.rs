use super::*;
use crate::ebext::{Parsed, parse_config};

fn plan(yaml: &str) -> Result<FileKeys, Vec<String>> {
    let Ok(Parsed::File(file)) =
        parse_config(".ebextensions/01.config", yaml, "v1", &mut Vec::new())
    else {
        panic!("parses");
    };
    server_keys(&file, &Resolver::default())
}

#[test]
fn every_key_is_read_in_cfn_inits_order_with_its_fields() {
    let plan = plan(
        r#"
packages:
  apt:
    figlet: []
    jq: "1.6-2"
groups:
  deploy: {gid: "4501"}
users:
  builder: {groups: [deploy], uid: "4502", homeDir: /srv/builder}
files:
  "/etc/b.conf": {content: "b\n", mode: "000640", owner: root, group: deploy}
  "/etc/a.json": {content: {port: 80}}
  "/etc/link": {content: /etc/a.json, mode: "120777"}
  "/etc/blob": {content: "aGVsbG8=", encoding: base64}
commands:
  02_second: {command: [touch, /tmp/x], cwd: /tmp, ignoreErrors: "true"}
  01_first: {command: "echo hi", test: "test -e /etc/a.json", env: {A: 1}}
services:
  sysvinit:
    cron: {enabled: true, ensureRunning: true, files: [/etc/b.conf], packages: {apt: [jq]}}
container_commands:
  b_all: {command: "make assets"}
  z_leader: {command: "migrate", leader_only: true, test: "false"}
"#,
    )
    .expect("valid");
    assert_eq!(
        plan.packages,
        [
            Package {
                name: "figlet".into(),
                version: None
            },
            Package {
                name: "jq".into(),
                version: Some("1.6-2".into())
            },
        ]
    );
    assert_eq!(
        plan.groups,
        [Group {
            name: "deploy".into(),
            gid: Some(4501)
        }]
    );
    assert_eq!(plan.users[0].home.as_deref(), Some("/srv/builder"));
    assert_eq!(plan.users[0].groups, ["deploy"]);
    let paths: Vec<&str> = plan.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        ["/etc/a.json", "/etc/b.conf", "/etc/blob", "/etc/link"]
    );
    assert_eq!(
        plan.files[0].content,
        FileContent::Bytes(br#"{"port":80}"#.to_vec())
    );
    assert_eq!(plan.files[1].mode, Some(0o640));
    assert_eq!(plan.files[2].content, FileContent::Bytes(b"hello".to_vec()));
    assert_eq!(
        plan.files[3].content,
        FileContent::Link("/etc/a.json".into())
    );
    let names: Vec<&str> = plan.commands.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["01_first", "02_second"]);
    assert_eq!(
        plan.commands[0].env.as_ref().map(|e| e["A"].as_str()),
        Some("1")
    );
    assert!(plan.commands[1].ignore_errors);
    assert_eq!(
        plan.commands[1].program,
        Program::Argv(vec!["touch".into(), "/tmp/x".into()])
    );
    assert_eq!(plan.services[0].packages, ["jq"]);
    assert_eq!(plan.services[0].files, ["/etc/b.conf"]);
    let container: Vec<(&str, bool)> = plan
        .container_commands
        .iter()
        .map(|c| (c.name.as_str(), c.leader_only))
        .collect();
    assert_eq!(
        container,
        [("z_leader", true), ("b_all", false)],
        "leader-only first"
    );
    assert_eq!(
        plan.container_commands[0].test, None,
        "leader_only wins over test"
    );
}

#[test]
fn what_cannot_apply_on_debian_is_refused_naming_the_file_key_and_what_to_do() {
    let problems = plan(
        r#"
packages:
  yum: {git: [], jq: []}
  python: {boto3: []}
files:
  "/etc/nginx/conf.d/proxy.conf": {content: "x"}
  "/etc/app.conf": {content: "x", mode: 000755}
  "relative": {content: "x"}
  "/etc/t": {content: "x", context: {a: 1}}
"#,
    )
    .expect_err("refused");
    let text = problems.join("\n");
    assert!(text.contains(".ebextensions/01.config: packages.yum: git, jq: yum packages cannot be installed on Debian; list them under `packages: apt:`"), "{text}");
    assert!(
        text.contains(
            "packages.python: boto3: pip does not install into Debian's system Python (PEP 668"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "files./etc/nginx/conf.d/proxy.conf: hostmanager renders nginx's configuration itself"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "files./etc/app.conf.mode: written without quotes, YAML reads it as the number"
        ),
        "{text}"
    );
    assert!(
        text.contains("files.relative: must be an absolute path"),
        "{text}"
    );
    assert!(text.contains("files./etc/t.context: Mustache"), "{text}");
    assert_eq!(problems.len(), 6, "{problems:?}");
}

#[test]
fn names_that_could_become_options_or_paths_are_refused() {
    let problems = plan(
        "packages:\n  apt:\n    \"-oAPT::x\": []\ngroups:\n  \"../x\": {}\nusers:\n  Bad: {}\nservices:\n  systemd:\n    \"-x\": {}\n",
    )
    .expect_err("refused");
    assert_eq!(problems.len(), 4, "{problems:?}");
}
