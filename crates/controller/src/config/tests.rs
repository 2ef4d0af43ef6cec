use super::*;

#[test]
fn no_config_means_sqlite_and_loopback_under_the_data_dir() {
    let config = parse("", Some(Path::new("/tmp/c"))).expect("defaults");
    assert_eq!(
        config.database,
        Database::Sqlite("/tmp/c/controller.db".into())
    );
    assert_eq!(config.listen.to_string(), "127.0.0.1:7600");
    assert_eq!(config.public_url, "http://127.0.0.1:7600");
    assert_eq!(config.objects, Objects::Local("/tmp/c/objects".into()));
    assert_eq!(config.hosts.failover_grace, Duration::from_secs(300));
}

#[test]
fn every_problem_is_reported_at_once() {
    let problems = parse(
        "[server]\nlisten = \"0.0.0.0:7600\"\ntls_cert_file = \"/c.pem\"\n\
         [database]\nurl = \"mysql://x\"\n[hosts]\ninterval = \"soon\"\nmissed_reports = 0\n\
         [deploy]\ncommit_window = \"a while\"\n",
        None,
    )
    .expect_err("invalid");
    let text = problems.join("\n");
    for expected in [
        "server.tls_key_file",
        "server.listen",
        "database.url",
        "hosts.interval",
        "hosts.missed_reports",
        "deploy.commit_window",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
}

#[test]
fn a_zero_commit_window_is_the_default_and_may_be_given() {
    let config = parse("", None).expect("defaults");
    assert_eq!(config.deploy.commit_window, Duration::ZERO);
    let config = parse("[deploy]\ncommit_window = \"0s\"\n", None).expect("zero");
    assert_eq!(config.deploy.commit_window, Duration::ZERO);
    let config = parse("[deploy]\ncommit_window = \"20ms\"\n", None).expect("20ms");
    assert_eq!(config.deploy.commit_window, Duration::from_millis(20));
}

#[test]
fn unknown_keys_are_refused_by_name() {
    let problems = parse("[server]\nlisen = \"x\"\n", None).expect_err("typo");
    assert!(problems[0].contains("lisen"), "{problems:?}");
}

#[test]
fn a_postgres_password_is_not_shown() {
    let config = parse(
        "[database]\nurl = \"postgres://hm:s3cret@127.0.0.1:5432/hm\"\n",
        None,
    )
    .expect("valid");
    assert!(!config.database.describe().contains("s3cret"));
}

#[test]
fn provisioners_are_read_by_kind_and_their_problems_named() {
    let data = Some(Path::new("/tmp/c"));
    assert_eq!(parse("", data).expect("defaults").provisioner, None);
    let standby = parse("[provisioner]\nkind = \"standby\"\n", data).expect("standby");
    assert_eq!(
        standby.provisioner,
        Some(ProvisionerConfig::Standby {
            pool: "standby".into()
        })
    );
    let local = parse(
        "[provisioner]\nkind = \"local\"\nagent = \"/usr/bin/hostmanager\"\n\
         template = \"/etc/t.toml\"\nports = \"20000-20100\"\n[deploy]\nevaluation_time = \"5s\"\n",
        data,
    )
    .expect("local");
    let Some(ProvisionerConfig::Local(settings)) = local.provisioner else {
        panic!("local: {:?}", local.provisioner);
    };
    assert_eq!(settings.ports, 20000..=20100);
    assert_eq!(
        settings.dir,
        PathBuf::from("/var/lib/hostmanager-controller/hosts"),
        "not under the private data directory"
    );
    assert_eq!(local.deploy.evaluation_time, Some(Duration::from_secs(5)));
    let ec2 = parse(
        "[provisioner]\nkind = \"ec2\"\nendpoint_url = \"http://127.0.0.1:5000\"\n",
        data,
    )
    .expect("ec2");
    let Some(ProvisionerConfig::Ec2(settings)) = ec2.provisioner else {
        panic!("ec2: {:?}", ec2.provisioner);
    };
    assert_eq!(settings.auto_scaling_group, "hostmanager-{environment}");
    assert_eq!(settings.launch_timeout, Duration::from_secs(300));
    let problems = parse("[provisioner]\nkind = \"local\"\nports = \"80-81\"\n", data)
        .expect_err("incomplete")
        .join("\n");
    for expected in [
        "provisioner.agent: required with kind = \"local\"",
        "provisioner.template: required",
        "provisioner.ports: \"80-81\" is not a range",
    ] {
        assert!(problems.contains(expected), "{expected:?} in {problems}");
    }
    let unknown = parse("[provisioner]\nkind = \"cloud\"\n", data).expect_err("unknown");
    assert!(
        unknown[0].contains("provisioner.kind: \"cloud\" is not valid; one of standby, local, ec2")
    );
}
