//! Tests of option parsing, validation and the typed views.

use super::*;

fn settings(pairs: &[(&str, &str)]) -> OptionSettings {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn option_name_is_after_the_last_colon_before_equals() {
    let (key, value) =
        parse_option_arg("aws:elasticbeanstalk:command:Timeout=600").expect("the test sets it up");
    assert_eq!(
        (key.as_str(), value.as_str()),
        ("aws:elasticbeanstalk:command:Timeout", "600")
    );
    assert_eq!(split_key(&key), Some((COMMAND, "Timeout")));
    let (key, value) = parse_option_arg("aws:elasticbeanstalk:application:environment:URL=a=b:c")
        .expect("the test sets it up");
    assert_eq!(split_key(&key), Some((APPLICATION_ENVIRONMENT, "URL")));
    assert_eq!(value, "a=b:c");
    assert!(matches!(
        parse_option_arg("Timeout=1"),
        Err(OptionArgError::MissingNamespace(_))
    ));
    assert!(matches!(
        parse_option_arg("a:b"),
        Err(OptionArgError::MissingEquals(_))
    ));
    assert!(parse_option_arg("a:=1").is_err());
}

#[test]
fn valid_settings_have_no_problems() {
    let ok = settings(&[
        ("aws:elasticbeanstalk:command:DeploymentPolicy", "AllAtOnce"),
        ("aws:elasticbeanstalk:command:Timeout", "3600"),
        ("aws:elasticbeanstalk:command:BatchSizeType", "Percentage"),
        ("aws:elasticbeanstalk:command:BatchSize", "30"),
        ("aws:elasticbeanstalk:command:IgnoreHealthCheck", "false"),
        (
            "aws:elasticbeanstalk:command:HealthCheckSuccessThreshold",
            "Warning",
        ),
        (
            "aws:elasticbeanstalk:healthreporting:system:HealthCheckSuccessThreshold",
            "Ok",
        ),
        (
            "aws:elasticbeanstalk:healthreporting:system:SystemType",
            "enhanced",
        ),
        (
            "aws:elasticbeanstalk:environment:EnvironmentType",
            "SingleInstance",
        ),
        (
            "aws:elasticbeanstalk:application:environment:DB_URL",
            "postgres://x",
        ),
        ("aws:elasticbeanstalk:application:environment:_X1", ""),
    ]);
    assert_eq!(validate(&ok, false), Vec::<String>::new());
}

#[test]
fn every_problem_is_reported_at_once_naming_its_option() {
    let bad = settings(&[
        ("aws:elasticbeanstalk:command:DeploymentPolicy", "Immutable"),
        ("aws:elasticbeanstalk:command:Timeout", "0"),
        ("aws:elasticbeanstalk:command:BatchSizeType", "Half"),
        ("aws:elasticbeanstalk:command:BatchSize", "101"),
        ("aws:elasticbeanstalk:command:IgnoreHealthCheck", "yes"),
        (
            "aws:elasticbeanstalk:command:HealthCheckSuccessThreshold",
            "Info",
        ),
        ("aws:elasticbeanstalk:command:Colour", "red"),
        (
            "aws:elasticbeanstalk:healthreporting:system:SystemType",
            "basic",
        ),
        (
            "aws:elasticbeanstalk:environment:EnvironmentType",
            "Cluster",
        ),
        ("aws:elasticbeanstalk:application:environment:1X", "a"),
        ("aws:elasticbeanstalk:application:environment:PORT", "80"),
        (
            "aws:elasticbeanstalk:application:environment:HOSTMANAGER_ROOT",
            "/",
        ),
        ("aws:autoscaling:asg:MaxSize", "4"),
    ]);
    let problems = validate(&bad, false);
    assert_eq!(problems.len(), 13, "{problems:#?}");
    let has = |needle: &str| problems.iter().any(|p| p.contains(needle));
    assert!(has(
        "DeploymentPolicy: Immutable needs new hosts, and this controller has no provisioner"
    ));
    assert!(has("Timeout: \"0\" is not valid; seconds from 1 to 3600"));
    assert!(has(
        "BatchSizeType: \"Half\" is not valid; one of Percentage, Fixed"
    ));
    assert!(has(
        "BatchSize: \"101\" is not valid; a percentage from 1 to 100"
    ));
    assert!(has(
        "IgnoreHealthCheck: \"yes\" is not valid; true or false"
    ));
    assert!(has(
        "HealthCheckSuccessThreshold: \"Info\" is not valid; one of Ok, Warning, Degraded, Severe"
    ));
    assert!(has("aws:elasticbeanstalk:command:Colour: unknown option"));
    assert!(has("SystemType: \"basic\" is not valid; only enhanced"));
    assert!(has(
        "EnvironmentType: \"Cluster\" is not valid; one of LoadBalanced, SingleInstance"
    ));
    assert!(has("environment:1X: property names are letters"));
    assert!(has("environment:PORT: PORT is set by the agent"));
    assert!(has(
        "HOSTMANAGER_ROOT: names starting with HOSTMANAGER_ are reserved"
    ));
    assert!(has(
        "aws:autoscaling:asg:MaxSize: namespace aws:autoscaling:asg is not supported"
    ));
}

#[test]
fn policies_that_need_new_hosts_are_refused_without_a_provisioner() {
    let policy = |name: &str| settings(&[("aws:elasticbeanstalk:command:DeploymentPolicy", name)]);
    for needs in DeploymentPolicy::ALL
        .into_iter()
        .filter(|p| p.needs_new_hosts())
    {
        let problems = validate(&policy(needs.as_str()), false);
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].contains("needs new hosts, and this controller has no provisioner"),
            "{problems:?}"
        );
        assert!(validate(&policy(needs.as_str()), true).is_empty());
    }
    for name in ["AllAtOnce", "Rolling"] {
        assert!(validate(&policy(name), false).is_empty(), "{name}");
    }
    let problems = validate(&policy("Blue"), true);
    assert!(problems[0].contains("is not valid; one of AllAtOnce, Rolling"));
}

#[test]
fn traffic_splitting_options_have_eb_ranges_and_defaults() {
    let defaults = CommandOptions::from(&settings(&[]));
    assert_eq!(
        (defaults.new_version_percent, defaults.evaluation_time_min),
        (10, 5)
    );
    let set = settings(&[
        (
            "aws:elasticbeanstalk:trafficsplitting:NewVersionPercent",
            "25",
        ),
        ("aws:elasticbeanstalk:trafficsplitting:EvaluationTime", "3"),
    ]);
    assert!(validate(&set, true).is_empty());
    let options = CommandOptions::from(&set);
    assert_eq!(
        (options.new_version_percent, options.evaluation_time_min),
        (25, 3)
    );
    let bad = settings(&[
        (
            "aws:elasticbeanstalk:trafficsplitting:NewVersionPercent",
            "0",
        ),
        ("aws:elasticbeanstalk:trafficsplitting:EvaluationTime", "2"),
        ("aws:elasticbeanstalk:trafficsplitting:Share", "2"),
    ]);
    let problems = validate(&bad, true);
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(problems[0].contains("EvaluationTime: \"2\" is not valid; minutes from 3 to 600"));
    assert!(
        problems[1].contains("NewVersionPercent: \"0\" is not valid; a percentage from 1 to 100")
    );
    assert!(
        problems[2].contains(
            "unknown option; the namespace's options are NewVersionPercent, EvaluationTime"
        )
    );
}

#[test]
fn fixed_batch_size_is_a_count() {
    let fixed = settings(&[
        ("aws:elasticbeanstalk:command:BatchSizeType", "Fixed"),
        ("aws:elasticbeanstalk:command:BatchSize", "250"),
    ]);
    assert!(validate(&fixed, false).is_empty());
    let zero = settings(&[
        ("aws:elasticbeanstalk:command:BatchSizeType", "Fixed"),
        ("aws:elasticbeanstalk:command:BatchSize", "0"),
    ]);
    assert!(validate(&zero, false)[0].contains("at least 1 (BatchSizeType Fixed)"));
}

#[test]
fn properties_are_limited_in_total_size() {
    let big = "x".repeat(40 * 1024);
    let mut two = OptionSettings::new();
    two.insert(format!("{APPLICATION_ENVIRONMENT}:A"), big.clone());
    two.insert(format!("{APPLICATION_ENVIRONMENT}:B"), big);
    let problems = validate(&two, false);
    assert_eq!(problems.len(), 1);
    assert!(problems[0].contains("more than 65536"), "{problems:?}");
}

#[test]
fn typed_view_has_ebs_defaults() {
    let options = CommandOptions::from(&OptionSettings::new());
    assert_eq!(options, CommandOptions::default());
    assert_eq!(options.policy, DeploymentPolicy::AllAtOnce);
    assert_eq!(options.timeout_s, 600);
    assert!(!options.ignore_health_check);
    assert_eq!(options.health_threshold, Status::Ok);
    assert_eq!(options.batch_size_type, BatchSizeType::Percentage);
    assert_eq!(options.batch_size, 100);
}

#[test]
fn typed_view_reads_settings_and_either_threshold_namespace() {
    let options = CommandOptions::from(&settings(&[
        ("aws:elasticbeanstalk:command:Timeout", "120"),
        ("aws:elasticbeanstalk:command:IgnoreHealthCheck", "true"),
        ("aws:elasticbeanstalk:command:BatchSizeType", "Fixed"),
        ("aws:elasticbeanstalk:command:BatchSize", "2"),
        (
            "aws:elasticbeanstalk:healthreporting:system:HealthCheckSuccessThreshold",
            "Warning",
        ),
    ]));
    assert_eq!(options.timeout_s, 120);
    assert!(options.ignore_health_check);
    assert_eq!(options.batch_size_type, BatchSizeType::Fixed);
    assert_eq!(options.batch_size, 2);
    assert_eq!(options.health_threshold, Status::Warning);
    // The command namespace wins when both are set.
    let both = CommandOptions::from(&settings(&[
        (
            "aws:elasticbeanstalk:command:HealthCheckSuccessThreshold",
            "Degraded",
        ),
        (
            "aws:elasticbeanstalk:healthreporting:system:HealthCheckSuccessThreshold",
            "Warning",
        ),
    ]));
    assert_eq!(both.health_threshold, Status::Degraded);
}

#[test]
fn properties_are_the_application_environment_namespace() {
    let all = settings(&[
        (
            "aws:elasticbeanstalk:application:environment:DB_URL",
            "postgres://x",
        ),
        ("aws:elasticbeanstalk:command:Timeout", "60"),
    ]);
    let props = properties(&all);
    assert_eq!(props.len(), 1);
    assert_eq!(props["DB_URL"], "postgres://x");
}

#[test]
fn the_default_process_options_have_ebs_ranges() {
    let ok = settings(&[
        (
            "aws:elasticbeanstalk:environment:process:default:DeregistrationDelay",
            "0",
        ),
        (
            "aws:elasticbeanstalk:environment:process:default:HealthCheckPath",
            "/health?deep=1",
        ),
        (
            "aws:elasticbeanstalk:environment:process:default:HealthCheckInterval",
            "5",
        ),
        (
            "aws:elasticbeanstalk:environment:process:default:HealthyThresholdCount",
            "10",
        ),
        (
            "aws:elasticbeanstalk:environment:process:default:UnhealthyThresholdCount",
            "2",
        ),
        ("aws:elasticbeanstalk:command:AutoRollback", "true"),
    ]);
    assert_eq!(validate(&ok, false), Vec::<String>::new());
    let process = ProcessOptions::from(&ok);
    assert_eq!(process.health_check_path, "/health?deep=1");
    assert_eq!(process.deregistration_delay_s, 0);
    assert_eq!((process.interval_s, process.rise, process.fall), (5, 10, 2));
    assert!(CommandOptions::from(&ok).auto_rollback);
    let defaults = ProcessOptions::from(&OptionSettings::new());
    assert_eq!(defaults, ProcessOptions::default());
    assert_eq!(defaults.deregistration_delay_s, 20);
    assert_eq!(defaults.health_check_path, "/");
    let bad = settings(&[
        (
            "aws:elasticbeanstalk:environment:process:default:DeregistrationDelay",
            "3601",
        ),
        (
            "aws:elasticbeanstalk:environment:process:default:HealthCheckPath",
            "/a b",
        ),
        (
            "aws:elasticbeanstalk:environment:process:default:HealthyThresholdCount",
            "1",
        ),
        (
            "aws:elasticbeanstalk:environment:process:default:Port",
            "80",
        ),
        ("aws:elasticbeanstalk:command:AutoRollback", "yes"),
    ]);
    let problems = validate(&bad, false);
    assert_eq!(problems.len(), 5, "{problems:#?}");
    assert!(
        problems
            .iter()
            .any(|p| p
                .contains("DeregistrationDelay: \"3601\" is not valid; seconds from 0 to 3600"))
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("HealthCheckPath: \"/a b\" is not valid"))
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("default:Port: unknown option"))
    );
}
