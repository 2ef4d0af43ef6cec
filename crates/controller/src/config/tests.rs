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
