//! The follower's law: however nginx's writes cut the lines, whenever the agent polls, and
//! wherever it restarts from its checkpoint, every complete line is handed out exactly once,
//! in order (the metrics windows rely on it: nothing lost, nothing counted twice).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use proptest::prelude::*;

use super::super::healthd::PREFIX;
use super::LogFollower;

/// One healthd line whose `$msec` says which line it is.
fn line(id: u64) -> String {
    format!(
        "{}.{:03}\"/p\"200\"0.001\"-\"\n",
        1_700_000_000 + id / 1000,
        id % 1000
    )
}

fn id_of(time_ms: i64) -> u64 {
    (time_ms - 1_700_000_000_000) as u64
}

/// What the agent does between two of nginx's writes.
#[derive(Debug, Clone)]
struct Step {
    /// Bytes nginx appends (a write may end anywhere in a line).
    write: usize,
    /// Whether the agent polls, and with what byte budget.
    poll: Option<u64>,
    /// Whether the agent restarts from the checkpoint it would save now.
    restart: bool,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = (
        1..120usize,
        prop::option::weighted(0.7, prop_oneof![Just(0u64), 1..200u64, Just(1 << 20)]),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(write, poll, restart)| Step {
            write,
            poll,
            restart,
        });
    prop::collection::vec(step, 1..40)
}

/// Polls until the follower has nothing more to say, collecting what it hands out.
fn drain(follower: &mut LogFollower, seen: &mut Vec<u64>) -> Result<(), TestCaseError> {
    // Twice: a file superseded with a line in progress gets one more poll (none here).
    for _ in 0..2 {
        poll(follower, 1 << 20, seen)?;
    }
    Ok(())
}

fn poll(follower: &mut LogFollower, budget: u64, seen: &mut Vec<u64>) -> Result<(), TestCaseError> {
    let mut bad = None;
    follower
        .poll(budget, |parsed| match parsed {
            Ok(line) => seen.push(id_of(line.time_ms)),
            Err(error) => bad = Some(error),
        })
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert!(bad.is_none(), "a whole line was refused: {:?}", bad);
    Ok(())
}

fn append(dir: &Path, name: &str, bytes: &[u8]) {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(name))
        .expect("open the log");
    // One write, as nginx writes each buffer.
    file.write_all(bytes).expect("append");
}

proptest! {
    // Each case writes files and lists a directory per poll: fewer cases.
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn restarts_from_the_checkpoint_hand_out_every_line_exactly_once(
        lines_per_file in prop::collection::vec(0..25u64, 1..4),
        steps in steps(),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        // The logs of consecutive hours; a file is complete before the next one appears.
        let mut next_id = 0;
        let files: Vec<(String, Vec<u8>)> = lines_per_file
            .iter()
            .enumerate()
            .map(|(hour, &n)| {
                let text: String = (next_id..next_id + n).map(line).collect();
                next_id += n;
                (format!("{PREFIX}2026-01-01-{hour:02}"), text.into_bytes())
            })
            .collect();
        let mut follower = LogFollower::open(dir.path(), None);
        let mut seen = Vec::new();
        let (mut file, mut written) = (0, 0);
        for step in steps.iter().cycle() {
            if file == files.len() {
                break;
            }
            let (name, text) = &files[file];
            let end = (written + step.write).min(text.len());
            append(dir.path(), name, &text[written..end]);
            written = end;
            if written == text.len() {
                (file, written) = (file + 1, 0);
            }
            if let Some(budget) = step.poll {
                poll(&mut follower, budget, &mut seen)?;
            }
            if step.restart {
                let checkpoint = follower.checkpoint();
                follower = LogFollower::open(dir.path(), Some(checkpoint));
            }
        }
        drain(&mut follower, &mut seen)?;
        let all: Vec<u64> = (0..next_id).collect();
        prop_assert_eq!(seen, all);
    }
}
