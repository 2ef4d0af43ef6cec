//! Tests of the environment roll-up (a file of their own to keep `rollup.rs` readable).

use super::super::fixtures::*;
use super::*;
use crate::model::{DeploymentKind, DeploymentStatus, Member, MemberState};

const NOW: i64 = 1_000_000;
const NO_SERIALS: &BTreeMap<u64, i64> = &BTreeMap::new();

fn input<'a>(published: &'a PublishedHealth, instances: &'a [Instance]) -> RollupInput<'a> {
    RollupInput {
        published,
        expected_version: Some("v1"),
        expected_deployment: Some(1),
        instances,
        active: None,
        budget_ms: 840_000,
        deployments_by_serial: NO_SERIALS,
        now_ms: NOW,
        interval_ms: 10_000,
        missed_reports: 3,
        grace_until_ms: 0,
        metrics_newer_than_ms: NOW - 30_000,
    }
}

fn ok(id: &str) -> Instance {
    serving(instance(id, Some(NOW), "Ok"), "v1", 1)
}

fn published(status: Status) -> PublishedHealth {
    PublishedHealth {
        status: status.as_str().into(),
        color: status.color().as_str().into(),
        ..PublishedHealth::default()
    }
}

fn candidate_of(instances: &[Instance]) -> Candidate {
    let p = published(Status::Ok);
    evaluate(&input(&p, instances)).candidate
}

fn cand(status: Status, causes: &[&str]) -> Candidate {
    Candidate {
        status,
        causes: causes.iter().map(|c| c.to_string()).collect(),
    }
}

#[test]
fn ebs_example_one_severe_of_five_is_warning() {
    let mut all: Vec<_> = (1..=4).map(|n| ok(&format!("i-{n}"))).collect();
    all.push(serving(instance("i-5", Some(NOW), "Severe"), "v1", 1));
    assert_eq!(
        candidate_of(&all),
        cand(
            Status::Warning,
            &["Impaired services on 1 out of 5 instances."]
        )
    );
}

#[test]
fn half_impaired_is_degraded_all_impaired_is_severe() {
    let two = [ok("i-1"), instance("i-2", Some(NOW), "Warning")];
    assert_eq!(
        candidate_of(&two),
        cand(
            Status::Degraded,
            &["Impaired services on 1 out of 2 instances."]
        )
    );
    let all = [
        instance("i-1", Some(NOW), "Warning"),
        instance("i-2", Some(0), "Ok"),
    ];
    assert_eq!(
        candidate_of(&all),
        cand(Status::Severe, &["Impaired services on all instances."])
    );
    let silent = [
        instance("i-1", Some(0), "Ok"),
        instance("i-2", Some(0), "Ok"),
    ];
    assert_eq!(
        candidate_of(&silent),
        cand(Status::Severe, &["None of the instances are sending data."])
    );
    assert_eq!(
        candidate_of(&[]),
        cand(Status::Severe, &["There are no instances."])
    );
    assert_eq!(candidate_of(&[ok("i-1")]), cand(Status::Ok, &[]));
}

#[test]
fn ebs_5xx_text_with_one_decimal_and_a_space() {
    // 199 of 1000 requests fail: AWS's own example, 19.9 %.
    let hosts = [
        with_window(ok("i-1"), NOW, 400, 0, 100),
        with_window(ok("i-2"), NOW, 401, 0, 99),
    ];
    assert_eq!(
        candidate_of(&hosts),
        cand(
            Status::Degraded,
            &["19.9 % of the requests are failing with HTTP 5xx."]
        )
    );
    let severe = [
        with_window(ok("i-1"), NOW, 3, 0, 1),
        with_window(ok("i-2"), NOW, 6, 0, 2),
    ];
    assert_eq!(
        candidate_of(&severe).causes,
        ["25.0 % of the requests are failing with HTTP 5xx."]
    );
    assert_eq!(candidate_of(&severe).status, Status::Severe);
    let warning = [with_window(ok("i-1"), NOW, 99, 0, 1)];
    assert_eq!(candidate_of(&warning).status, Status::Warning);
}

#[test]
fn ebs_4xx_text_says_erroring() {
    let hosts = [with_window(ok("i-1"), NOW, 10, 60, 0)];
    assert_eq!(
        candidate_of(&hosts),
        cand(
            Status::Degraded,
            &["85.7 % of the requests are erroring with HTTP 4xx."]
        )
    );
    let five_percent = [with_window(ok("i-1"), NOW, 95, 5, 0)];
    assert_eq!(
        candidate_of(&five_percent).status,
        Status::Ok,
        "EB: 5 % 4xx is still Ok"
    );
}

#[test]
fn small_or_stale_windows_do_not_judge() {
    let few = [with_window(ok("i-1"), NOW, 0, 0, 9)];
    assert_eq!(candidate_of(&few).status, Status::Ok);
    let stale = [with_window(ok("i-1"), NOW - 31_000, 0, 0, 100)];
    assert_eq!(candidate_of(&stale).status, Status::Ok);
}

#[test]
fn ebs_version_texts() {
    let serials = BTreeMap::from([(2, 2)]);
    let p = published(Status::Ok);
    let hosts: Vec<_> = [ok("i-1"), ok("i-2"), ok("i-3")]
        .into_iter()
        .chain((4..=5).map(|n| serving(instance(&format!("i-{n}"), Some(NOW), "Ok"), "v2", 2)))
        .collect();
    let eval = evaluate(&RollupInput {
        deployments_by_serial: &serials,
        ..input(&p, &hosts)
    });
    assert_eq!(
        eval.candidate,
        cand(
            Status::Degraded,
            &[
                "Incorrect application version found on 2 out of 5 instances. Expected version \"v1\" (deployment 1).",
                "Impaired services on 2 out of 5 instances.",
            ]
        )
    );
    assert_eq!(
        eval.instances[4].causes,
        [
            "Incorrect application version \"v2\" (deployment 2). Expected version \"v1\" (deployment 1)."
        ]
    );
    let all: Vec<_> = hosts[3..].to_vec();
    let eval = evaluate(&input(&p, &all));
    assert_eq!(
        eval.candidate.causes[1],
        "Incorrect application version on environment instances. Expected version \"v1\" (deployment 1)."
    );
}

#[test]
fn deployment_in_progress_is_info_and_its_failures_do_not_count() {
    let deployment = Deployment {
        id: 2,
        environment: "env".into(),
        kind: DeploymentKind::Deploy,
        version_label: Some("v2".into()),
        serial: 2,
        policy: "AllAtOnce".into(),
        status: DeploymentStatus::InProgress,
        created_ms: NOW - 5_000,
        finished_ms: None,
        message: None,
        members: ["i-1", "i-2", "i-3"]
            .iter()
            .map(|id| Member {
                instance_id: id.to_string(),
                batch: 0,
                state: MemberState::Dispatched,
                outcome: None,
                step: None,
                message: None,
                dispatched_ms: Some(NOW - 5_000),
                done_ms: None,
                healthy_reports: 0,
                command_id: None,
                drain_started_ms: None,
                role: Default::default(),
            })
            .collect(),
    };
    let hosts: Vec<_> = (1..=5)
        .map(|n| {
            with_window(
                ok(&format!("i-{n}")),
                NOW,
                if n <= 3 { 0 } else { 50 },
                0,
                if n <= 3 { 50 } else { 0 },
            )
        })
        .collect();
    let p = published(Status::Ok);
    let eval = evaluate(&RollupInput {
        active: Some(&deployment),
        ..input(&p, &hosts)
    });
    assert_eq!(
        eval.candidate,
        cand(
            Status::Info,
            &["Command is executing on 3 out of 5 instances."]
        )
    );
    assert_eq!(eval.counts.info, 3);
    assert_eq!(eval.counts.ok, 2);
    // Info publishes at once, as an INFO event with its cause.
    assert_eq!(eval.published.status, "Info");
    assert_eq!(
        eval.event,
        Some((
            EventSeverity::Info,
            "Environment health has transitioned from Ok to Info. Command is executing on 3 out of 5 instances.".into()
        ))
    );
    assert_eq!(eval.metrics.request_count, 10.0);
}

#[test]
fn worse_is_published_after_three_evaluations_with_ebs_text() {
    let warning = cand(
        Status::Warning,
        &["Impaired services on 1 out of 5 instances."],
    );
    let start = published(Status::Ok);
    let (one, e1) = publish(&start, &warning, 10);
    let (two, e2) = publish(&one, &warning, 20);
    assert_eq!((one.status.as_str(), e1.is_none()), ("Ok", true));
    assert_eq!(one.pending, Some(("Warning".into(), 1)));
    assert_eq!((two.status.as_str(), e2.is_none()), ("Ok", true));
    let (three, e3) = publish(&two, &warning, 30);
    assert_eq!(three.status, "Warning");
    assert_eq!(three.color, "Yellow");
    assert_eq!(three.since_ms, 30);
    assert_eq!(three.pending, None);
    assert_eq!(
        e3,
        Some((
            EventSeverity::Warn,
            "Environment health has transitioned from Ok to Warning. Impaired services on 1 out of 5 instances.".into()
        ))
    );
    // And back: better also takes three, and the INFO event has no causes.
    let ok = cand(Status::Ok, &[]);
    let (a, _) = publish(&three, &ok, 40);
    let (b, _) = publish(&a, &ok, 50);
    let (c, event) = publish(&b, &ok, 60);
    assert_eq!(
        (a.status.as_str(), b.status.as_str(), c.status.as_str()),
        ("Warning", "Warning", "Ok")
    );
    assert_eq!(
        event,
        Some((
            EventSeverity::Info,
            "Environment health has transitioned from Warning to Ok.".into()
        ))
    );
}

#[test]
fn ebs_severe_transition_text() {
    let causes = ["44.8 % of the requests are failing with HTTP 5xx."];
    assert_eq!(
        transition_event(Status::Ok, Status::Severe, &causes.map(String::from)),
        (
            EventSeverity::Warn,
            "Environment health has transitioned from Ok to Severe. 44.8 % of the requests are failing with HTTP 5xx.".into()
        )
    );
    assert_eq!(
        transition_event(Status::Severe, Status::Ok, &[]).1,
        "Environment health has transitioned from Severe to Ok."
    );
}

#[test]
fn a_flapping_candidate_resets_the_count() {
    let start = published(Status::Ok);
    let warning = cand(Status::Warning, &["w"]);
    let (one, _) = publish(&start, &warning, 10);
    let (back, _) = publish(&one, &cand(Status::Ok, &[]), 20);
    assert_eq!(back.pending, None);
    let (again, _) = publish(&back, &warning, 30);
    assert_eq!(again.pending, Some(("Warning".into(), 1)));
    // Warning then Degraded are both worse than Ok: they count together, the latest wins.
    let (two, _) = publish(&again, &cand(Status::Degraded, &["d"]), 40);
    let (three, event) = publish(&two, &cand(Status::Degraded, &["d"]), 50);
    assert_eq!(two.pending, Some(("Degraded".into(), 2)));
    assert_eq!(three.status, "Degraded");
    assert!(event.is_some());
}

#[test]
fn same_status_updates_causes_without_an_event() {
    let mut start = published(Status::Warning);
    start.causes = vec!["Impaired services on 1 out of 5 instances.".into()];
    start.since_ms = 5;
    let (next, event) = publish(
        &start,
        &cand(
            Status::Warning,
            &["Impaired services on 2 out of 5 instances."],
        ),
        99,
    );
    assert_eq!(event, None);
    assert_eq!(next.causes, ["Impaired services on 2 out of 5 instances."]);
    assert_eq!(next.since_ms, 5);
}

#[test]
fn unknown_publishes_the_first_real_status_at_once() {
    let (next, event) = publish(&PublishedHealth::default(), &cand(Status::Ok, &[]), 7);
    assert_eq!(next.status, "Ok");
    assert_eq!(next.color, "Green");
    assert_eq!(
        event,
        Some((
            EventSeverity::Info,
            "Environment health has transitioned from Unknown to Ok.".into()
        ))
    );
}

#[test]
fn nodata_waits_for_the_grace_and_counts_are_ebs() {
    let hosts = [
        ok("i-1"),
        instance("i-2", Some(NOW - 600_000), "Ok"),
        instance("i-3", None, "Unknown"),
    ];
    let p = published(Status::Ok);
    let graced = evaluate(&RollupInput {
        grace_until_ms: NOW + 1,
        ..input(&p, &hosts)
    });
    assert_eq!(graced.counts.no_data, 0);
    assert_eq!(graced.counts.pending, 1);
    assert_eq!(graced.candidate.status, Status::Ok);
    let after = evaluate(&input(&p, &hosts));
    assert_eq!(after.counts.no_data, 1);
    assert_eq!(
        after.candidate.causes,
        ["Impaired services on 1 out of 3 instances."]
    );
    assert_eq!(
        after.instances[1].causes,
        ["No data. Last seen 10 minutes ago."]
    );
}
