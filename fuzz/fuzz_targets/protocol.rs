//! The documents agent and controller exchange (`crates/protocol`). The first byte picks the
//! document, the rest is its JSON. What parses must survive the trip both ways: serialized
//! and read again it is the same value (a field that serializes differently from how it
//! reads would change meaning between agent and controller), and the validations run.
#![no_main]

use hostmanager_protocol as protocol;
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

fn round_trip<T>(json: &[u8]) -> Option<T>
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let value: T = serde_json::from_slice(json).ok()?;
    let text = serde_json::to_string(&value).expect("a parsed document serializes");
    let again: T = serde_json::from_str(&text).expect("a serialized document parses");
    assert_eq!(again, value, "{text}");
    Some(value)
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, json)) = data.split_first() else {
        return;
    };
    // Agent → controller first, then controller → agent.
    match selector % 14 {
        0 => {
            round_trip::<protocol::Report>(json);
        }
        1 => {
            round_trip::<protocol::EnrollRequest>(json);
        }
        2 => {
            round_trip::<protocol::HostStatus>(json);
        }
        3 => {
            round_trip::<protocol::Event>(json);
        }
        4 => {
            round_trip::<protocol::MetricsWindow>(json);
        }
        5 => {
            round_trip::<protocol::CommandResult>(json);
        }
        6 => {
            round_trip::<protocol::DesiredResult>(json);
        }
        7 => {
            round_trip::<protocol::ReportReply>(json);
        }
        8 => {
            if let Some(request) = round_trip::<protocol::DeploymentRequest>(json) {
                for problem in request.problems() {
                    assert!(!problem.is_empty());
                }
            }
        }
        9 => {
            round_trip::<protocol::DesiredState>(json);
        }
        10 => {
            round_trip::<protocol::Command>(json);
        }
        11 => {
            round_trip::<protocol::Credential>(json);
        }
        12 => {
            round_trip::<protocol::ErrorBody>(json);
        }
        _ => {
            round_trip::<protocol::Properties>(json);
        }
    }
});
