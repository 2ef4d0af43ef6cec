use super::*;

fn settings() -> PlanSettings<'static> {
    PlanSettings {
        http_path: "/jobs",
        mime_type: "application/json",
        queue_name: "work",
        retention_secs: 60,
    }
}

fn message(body: &str) -> Received {
    let mut m = Received {
        message_id: "m-1".into(),
        receipt_handle: "r".into(),
        body: body.into(),
        md5_of_body: Some(hex(&Md5::digest(body.as_bytes()))),
        ..Default::default()
    };
    m.attributes
        .insert("ApproximateReceiveCount".into(), "3".into());
    m.attributes.insert(
        "ApproximateFirstReceiveTimestamp".into(),
        "1692107873000".into(),
    );
    m.attributes
        .insert("SentTimestamp".into(), "1692107870123".into());
    m.attributes
        .insert("SenderId".into(), "AROAEXAMPLE:i-0879".into());
    m
}

fn header<'a>(delivery: &'a Delivery, name: &str) -> Option<&'a str> {
    delivery
        .headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

const NOW: i64 = 1_692_107_880_000;

#[test]
fn a_message_is_posted_to_the_http_path_with_sqsds_headers() {
    let mut m = message("{\"job\":1}");
    m.message_attributes
        .insert("tenant".into(), ("String".into(), Some("acme".into())));
    m.message_attributes
        .insert("priority".into(), ("Number".into(), Some("5".into())));
    m.message_attributes
        .insert("blob".into(), ("Binary".into(), None));
    m.message_attributes.insert(
        "beanstalk.sqsd.other".into(),
        ("String".into(), Some("x".into())),
    );
    let Plan::Post(d) = plan(&m, settings(), NOW) else {
        panic!("posted")
    };
    assert_eq!(d.path, "/jobs");
    assert_eq!(d.body, "{\"job\":1}");
    assert!(
        header(&d, "User-Agent")
            .expect("ua")
            .starts_with("aws-sqsd/")
    );
    assert_eq!(header(&d, "Content-Type"), Some("application/json"));
    assert_eq!(header(&d, "X-Aws-Sqsd-Msgid"), Some("m-1"));
    assert_eq!(header(&d, "X-Aws-Sqsd-Receive-Count"), Some("3"));
    assert_eq!(header(&d, "X-Aws-Sqsd-Queue"), Some("work"));
    assert_eq!(
        header(&d, "X-Aws-Sqsd-First-Received-At"),
        Some("2023-08-15T13:57:53Z")
    );
    assert_eq!(
        header(&d, "X-Aws-Sqsd-Sent-At"),
        Some("2023-08-15T13:57:50Z")
    );
    assert_eq!(
        header(&d, "X-Aws-Sqsd-Sender-Id"),
        Some("AROAEXAMPLE:i-0879")
    );
    assert_eq!(header(&d, "X-Aws-Sqsd-Attr-tenant"), Some("acme"));
    assert_eq!(header(&d, "X-Aws-Sqsd-Attr-priority"), Some("5"));
    assert_eq!(header(&d, "X-Aws-Sqsd-Attr-blob"), None);
    assert_eq!(header(&d, "X-Aws-Sqsd-Attr-beanstalk.sqsd.other"), None);
    assert_eq!(header(&d, "X-Aws-Sqsd-Taskname"), None);
    assert_eq!(d.task, None);
}

#[test]
fn a_periodic_task_goes_to_its_url_with_an_empty_body() {
    let mut m = message(crate::worker::cron::MESSAGE_BODY);
    for (name, value) in [
        (PATH_ATTRIBUTE, "backup"),
        (TASK_ATTRIBUTE, "backup-job"),
        (SCHEDULED_ATTRIBUTE, "2017-03-22 23:10:00 UTC"),
    ] {
        m.message_attributes
            .insert(name.into(), ("String".into(), Some(value.into())));
    }
    let Plan::Post(d) = plan(&m, settings(), NOW) else {
        panic!("posted")
    };
    assert_eq!(d.path, "/backup");
    assert_eq!(d.body, "");
    assert_eq!(header(&d, "X-Aws-Sqsd-Taskname"), Some("backup-job"));
    assert_eq!(
        header(&d, "X-Aws-Sqsd-Scheduled-At"),
        Some("2017-03-22T23:10:00Z")
    );
    assert_eq!(header(&d, "X-Aws-Sqsd-Path"), Some("/backup"));
    assert_eq!(d.task.as_deref(), Some("backup-job"));
}

#[test]
fn a_path_attribute_alone_does_not_redirect_a_message() {
    let mut m = message("x");
    m.message_attributes.insert(
        PATH_ATTRIBUTE.into(),
        ("String".into(), Some("/elsewhere".into())),
    );
    let Plan::Post(d) = plan(&m, settings(), NOW) else {
        panic!("posted")
    };
    assert_eq!(d.path, "/jobs");
    assert_eq!(d.body, "x");
}

#[test]
fn retention_counts_from_the_first_receive() {
    let m = message("x");
    // First received at NOW - 7 s: inside 60 s.
    assert!(matches!(plan(&m, settings(), NOW), Plan::Post(_)));
    assert_eq!(
        plan(&m, settings(), 1_692_107_873_000 + 61_000),
        Plan::Expired { age_secs: 61 }
    );
}

#[test]
fn a_body_that_does_not_match_its_md5_is_not_posted() {
    let mut m = message("x");
    m.body = "y".into();
    assert!(matches!(plan(&m, settings(), NOW), Plan::Corrupt { .. }));
}

#[test]
fn header_names_and_values_http_cannot_carry_are_skipped() {
    let mut m = message("x");
    m.message_attributes
        .insert("has space".into(), ("String".into(), Some("v".into())));
    m.message_attributes
        .insert("nl".into(), ("String".into(), Some("a\nb".into())));
    m.message_attributes.insert(
        "my_attr".into(),
        ("String.custom".into(), Some("ok".into())),
    );
    let Plan::Post(d) = plan(&m, settings(), NOW) else {
        panic!("posted")
    };
    assert_eq!(header(&d, "X-Aws-Sqsd-Attr-has space"), None);
    assert_eq!(header(&d, "X-Aws-Sqsd-Attr-nl"), None);
    assert_eq!(header(&d, "X-Aws-Sqsd-Attr-my_attr"), Some("ok"));
}

/// Found with `fuzz/fuzz_targets/worker_message.rs`: timestamps at the ends of i64 overflowed
/// the age subtraction (a panic in debug builds, a wrong age in release ones).
#[test]
fn timestamps_far_off_do_not_overflow_the_age() {
    let mut m = message("x");
    m.attributes
        .insert("SentTimestamp".into(), i64::MIN.to_string());
    m.attributes.insert(
        "ApproximateFirstReceiveTimestamp".into(),
        i64::MIN.to_string(),
    );
    assert_eq!(m.age_ms(1_692_107_880_000), Some(i64::MAX));
    assert!(matches!(
        plan(&m, settings(), 1_692_107_880_000),
        Plan::Expired { .. }
    ));
    m.attributes
        .insert("SentTimestamp".into(), i64::MAX.to_string());
    assert_eq!(m.age_ms(-1), Some(0));
}
