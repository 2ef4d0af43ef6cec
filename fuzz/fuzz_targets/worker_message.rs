//! A received SQS message (`worker/message.rs`) → the POST the daemon makes. Anyone who can
//! send to the queue controls the body and the message attributes; SQS sets the rest.
//!
//! Input, one item per line until the first empty line, then the body:
//! `md5:HEX`, `attr:Name=Value` (system attributes), `mattr:Name:DataType=Value`
//! (`mattr:Name:Binary` for a binary one), `now:MILLIS`.
//!
//! Properties: a body that does not match its MD5 is never delivered (and one that does, is
//! not refused); forwarded attribute headers are valid HTTP header names and values; the
//! POST goes to a path on this host.
#![no_main]

use hostmanager::worker::message::{PlanSettings, Received, plan};
use libfuzzer_sys::fuzz_target;
use md5::{Digest, Md5};

fn read(text: &str) -> (Received, i64) {
    let mut message = Received {
        message_id: "0b6b9a1e-5f1c-4b59-9a3c-1f1f1f1f1f1f".into(),
        receipt_handle: "handle".into(),
        ..Received::default()
    };
    let mut now_ms = 1_700_000_000_000;
    let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
    message.body = body.to_string();
    for line in head.lines() {
        if let Some(md5) = line.strip_prefix("md5:") {
            message.md5_of_body = Some(md5.to_string());
        } else if let Some(now) = line.strip_prefix("now:") {
            now_ms = now.parse().unwrap_or(now_ms);
        } else if let Some((name, value)) =
            line.strip_prefix("attr:").and_then(|a| a.split_once('='))
        {
            message
                .attributes
                .insert(name.to_string(), value.to_string());
        } else if let Some(attribute) = line.strip_prefix("mattr:") {
            let (key, value) = match attribute.split_once('=') {
                Some((key, value)) => (key, Some(value.to_string())),
                None => (attribute, None),
            };
            let (name, kind) = key.split_once(':').unwrap_or((key, "String"));
            message
                .message_attributes
                .insert(name.to_string(), (kind.to_string(), value));
        }
    }
    (message, now_ms)
}

fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (message, now_ms) = read(&text);
    let settings = PlanSettings {
        http_path: "/",
        mime_type: "application/json",
        queue_name: "worker-queue",
        retention_secs: 345_600,
    };
    let _ = message.age_ms(now_ms);
    let _ = message.receive_count();
    let matches = message.md5_of_body.as_ref().is_none_or(|expected| {
        let found: String = Md5::digest(message.body.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        found.eq_ignore_ascii_case(expected)
    });
    match plan(&message, settings, now_ms) {
        hostmanager::worker::message::Plan::Corrupt { .. } => assert!(!matches),
        hostmanager::worker::message::Plan::Expired { age_secs } => {
            assert!(matches);
            assert!(age_secs >= 0);
        }
        hostmanager::worker::message::Plan::Post(delivery) => {
            assert!(matches, "a body that does not match its MD5 is delivered");
            assert!(delivery.path.starts_with('/'), "{:?}", delivery.path);
            for (name, value) in &delivery.headers {
                assert!(is_token(name), "header name {name:?}");
                if name.starts_with("X-Aws-Sqsd-Attr-") {
                    assert!(
                        value
                            .bytes()
                            .all(|b| b == b'\t' || (0x20..0x7f).contains(&b)),
                        "header {name}: {value:?}"
                    );
                }
            }
        }
    }
});
