//! The healthd log follower on real files: hour rollover, partial lines, restarts from the
//! saved position. Every line carries a unique `$msec`, so the test can check that each line is
//! counted exactly once.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use hostmanager::metrics::{Checkpoint, LineError, LogFollower};

const BUDGET: u64 = 1 << 30;

fn line(id: u64, status: u16) -> String {
    format!(
        "{}.{:03}\"/item/{id}\"{status}\"0.{:03}\"0.001\"10.0.0.{}\n",
        1_700_000_000 + id / 1000,
        id % 1000,
        id % 1000,
        id % 250
    )
}

fn hour_file(dir: &Path, hour: u32) -> PathBuf {
    dir.join(format!("application.log.2026-11-22-{hour:02}"))
}

fn append(path: &Path, bytes: &[u8]) {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log");
    file.write_all(bytes).expect("append");
}

/// Lines handed out (by their id) and errors, in order.
#[derive(Debug, Default)]
struct Seen {
    ids: Vec<u64>,
    errors: Vec<LineError>,
}

fn poll(follower: &mut LogFollower, seen: &mut Seen) {
    follower
        .poll(BUDGET, |result| match result {
            Ok(line) => seen.ids.push((line.time_ms - 1_700_000_000_000) as u64),
            Err(error) => seen.errors.push(error),
        })
        .expect("poll");
}

#[test]
fn the_next_hour_is_followed_once_the_current_one_is_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut follower = LogFollower::open(dir.path(), None);
    let mut seen = Seen::default();
    poll(&mut follower, &mut seen);
    assert!(seen.ids.is_empty(), "no log yet");

    append(
        &hour_file(dir.path(), 13),
        (0..3).map(|i| line(i, 200)).collect::<String>().as_bytes(),
    );
    poll(&mut follower, &mut seen);
    append(&hour_file(dir.path(), 13), line(3, 200).as_bytes());
    append(
        &hour_file(dir.path(), 14),
        (4..6).map(|i| line(i, 500)).collect::<String>().as_bytes(),
    );
    poll(&mut follower, &mut seen);
    append(&hour_file(dir.path(), 14), line(6, 404).as_bytes());
    // An hour with no request at all leaves no file: 14 → 16.
    append(&hour_file(dir.path(), 16), line(7, 200).as_bytes());
    poll(&mut follower, &mut seen);
    assert_eq!(seen.ids, (0..8).collect::<Vec<_>>());
    assert!(seen.errors.is_empty(), "{:?}", seen.errors);
    assert!(
        matches!(follower.checkpoint(), Checkpoint::InFile { file, .. } if file.ends_with("-16"))
    );
}

#[test]
fn a_partial_last_line_waits_for_its_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = hour_file(dir.path(), 10);
    let mut follower = LogFollower::open(dir.path(), None);
    let mut seen = Seen::default();
    let whole = line(1, 200);
    let (head, tail) = whole.split_at(17);
    append(&path, head.as_bytes());
    poll(&mut follower, &mut seen);
    poll(&mut follower, &mut seen);
    assert!(seen.ids.is_empty() && seen.errors.is_empty(), "{seen:?}");
    append(&path, tail.as_bytes());
    poll(&mut follower, &mut seen);
    assert_eq!(
        (seen.ids.as_slice(), seen.errors.as_slice()),
        (&[1][..], &[][..])
    );
}

#[test]
fn a_line_left_unfinished_at_the_hour_change_counts_as_partial() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut follower = LogFollower::open(dir.path(), None);
    let mut seen = Seen::default();
    let cut = line(1, 200);
    append(
        &hour_file(dir.path(), 10),
        format!("{}{}", line(0, 200), &cut[..10]).as_bytes(),
    );
    append(&hour_file(dir.path(), 11), line(2, 200).as_bytes());
    poll(&mut follower, &mut seen);
    assert_eq!(seen.ids, [0], "the cut line gets one more poll to complete");
    poll(&mut follower, &mut seen);
    assert_eq!(seen.ids, [0, 2]);
    assert_eq!(seen.errors, [LineError::Partial]);
}

#[test]
fn malformed_and_overlong_lines_are_skipped_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = hour_file(dir.path(), 10);
    let mut follower = LogFollower::open(dir.path(), None);
    let mut seen = Seen::default();
    append(
        &path,
        format!("{}not a healthd line\n\n", line(0, 200)).as_bytes(),
    );
    poll(&mut follower, &mut seen);
    // A runaway line is not buffered without bound while it waits for its end.
    append(&path, "x".repeat(20_000).as_bytes());
    poll(&mut follower, &mut seen);
    append(
        &path,
        format!("{}\n{}", "y".repeat(20_000), line(1, 200)).as_bytes(),
    );
    poll(&mut follower, &mut seen);
    assert_eq!(seen.ids, [0, 1]);
    assert_eq!(seen.errors, [LineError::MissingFields, LineError::TooLong]);
}

#[test]
fn a_first_start_skips_what_the_logs_already_hold() {
    let dir = tempfile::tempdir().expect("tempdir");
    append(&hour_file(dir.path(), 9), line(0, 200).as_bytes());
    append(&hour_file(dir.path(), 10), line(1, 200).as_bytes());
    let mut follower = LogFollower::open(dir.path(), None);
    let mut seen = Seen::default();
    poll(&mut follower, &mut seen);
    append(&hour_file(dir.path(), 10), line(2, 200).as_bytes());
    append(&hour_file(dir.path(), 11), line(3, 200).as_bytes());
    poll(&mut follower, &mut seen);
    assert_eq!(seen.ids, [2, 3]);
}

/// The agent's cycle, with restarts at random points: lines are written in random pieces across
/// four hour files; a "window" closes now and then (the position is saved, its lines counted);
/// a "restart" drops the follower with the lines it handed out since the last close (they were
/// in no published window) and reopens it from the saved position. Every line must end up in
/// exactly one closed window.
#[test]
fn restarts_anywhere_neither_lose_nor_double_count() {
    for seed in 0..20 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let dir = tempfile::tempdir().expect("tempdir");
        let total = 2_000u64;
        let text: Vec<(u32, String)> = (0..total)
            .map(|id| (10 + (id * 4 / total) as u32, line(id, 200)))
            .collect();
        let mut follower = LogFollower::open(dir.path(), None);
        // As the agent does: the starting position is saved before anything is read.
        let mut saved = follower.checkpoint();
        let mut counted: BTreeMap<u64, u32> = BTreeMap::new();
        let mut window = Seen::default();
        let mut pending: Vec<u8> = Vec::new();
        let mut pending_hour = 10;
        let mut next = 0usize;
        while next < text.len() || !pending.is_empty() {
            // Write a random piece: possibly half a line, possibly many lines.
            if pending.is_empty() && next < text.len() {
                let n = rng.usize(1..40).min(text.len() - next);
                pending_hour = text[next].0;
                for (hour, l) in &text[next..next + n] {
                    if *hour != pending_hour {
                        break;
                    }
                    pending.extend_from_slice(l.as_bytes());
                    next += 1;
                }
            }
            let cut = rng.usize(1..=pending.len());
            append(&hour_file(dir.path(), pending_hour), &pending[..cut]);
            pending.drain(..cut);
            poll(&mut follower, &mut window);
            match rng.u8(0..10) {
                0..=2 => {
                    // Window closes: save the position, then count.
                    saved = follower.checkpoint();
                    for id in window.ids.drain(..) {
                        *counted.entry(id).or_default() += 1;
                    }
                }
                3 => {
                    // Restart: what was read since the last close was never published.
                    window = Seen::default();
                    follower = LogFollower::open(dir.path(), Some(saved.clone()));
                }
                _ => {}
            }
        }
        poll(&mut follower, &mut window);
        for id in window.ids.drain(..) {
            *counted.entry(id).or_default() += 1;
        }
        let doubles: Vec<_> = counted.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            doubles.is_empty(),
            "seed {seed}: counted twice: {doubles:?}"
        );
        assert_eq!(counted.len() as u64, total, "seed {seed}: lines lost");
        assert!(window.errors.is_empty(), "seed {seed}: {:?}", window.errors);
    }
}
