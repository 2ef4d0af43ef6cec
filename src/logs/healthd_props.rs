//! Properties of the healthd log cleanup (`to_prune`): it never deletes what nginx may still
//! write or the metrics follower has not read, and of the rest it keeps the newest, as many as
//! `healthd_keep_hours` and `healthd_keep_files` say.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::{Checkpoint, PREFIX, to_prune};

/// 2026-03-01T00:00:00Z, hour 0 of the generated logs.
const BASE_S: i64 = 1_772_323_200;

fn hour_name(hour: i64) -> String {
    let at = jiff::Timestamp::from_second(BASE_S + hour * 3600).expect("a valid time");
    format!("{PREFIX}{}", at.strftime("%Y-%m-%d-%H"))
}

#[derive(Debug, Clone)]
enum Position {
    None,
    InFile(i64),
    After(i64),
}

fn position() -> impl Strategy<Value = Position> {
    prop_oneof![
        Just(Position::None),
        (0..100i64).prop_map(Position::InFile),
        (0..100i64).prop_map(Position::After),
    ]
}

proptest! {
    #[test]
    fn pruning_spares_the_unfinished_and_keeps_the_newest(
        hours in prop::collection::btree_set(0..96i64, 0..40),
        others in prop::collection::vec(
            prop_oneof![Just(format!("{PREFIX}2026-03-01-07.gz")), "[a-z.]{1,12}"], 0..3),
        now_s in 0..100 * 3600i64,
        position in position(),
        keep_hours in 0..80u64,
        keep_files in 0..10u64,
    ) {
        let mut names: Vec<String> = hours.iter().map(|&h| hour_name(h)).collect();
        names.extend(others);
        let now = jiff::Timestamp::from_second(BASE_S + now_s).expect("a valid time");
        let current = now_s.div_euclid(3600);
        let checkpoint = match position {
            Position::None => None,
            Position::InFile(h) => Some(Checkpoint::InFile { file: hour_name(h), inode: 1, offset: 0 }),
            Position::After(h) => Some(Checkpoint::After { file: hour_name(h) }),
        };
        let newest = hours.last().copied();
        // What may go: a past hour, not the newest file, read to its end by the follower.
        let deletable = |h: i64| {
            h < current
                && Some(h) != newest
                && match position {
                    Position::None => true,
                    Position::InFile(at) => h < at,
                    Position::After(at) => h <= at,
                }
        };
        let pruned = to_prune(&names, now, checkpoint.as_ref(), keep_hours, keep_files);
        let by_name: std::collections::BTreeMap<String, i64> =
            hours.iter().map(|&h| (hour_name(h), h)).collect();
        let mut gone = BTreeSet::new();
        for name in &pruned {
            let hour = by_name.get(name).copied();
            prop_assert!(hour.is_some(), "{} is no hour file of the listing", name);
            let hour = hour.unwrap_or_default();
            prop_assert!(deletable(hour), "{} must stay", name);
            prop_assert!(gone.insert(hour), "{} pruned twice", name);
        }
        let left: Vec<i64> = hours.iter().copied().filter(|h| !gone.contains(h)).collect();
        // Older than `keep_hours` (the current hour is the first kept): gone.
        let oldest_kept = current - i64::try_from(keep_hours.max(1)).unwrap_or(i64::MAX) + 1;
        for &h in &left {
            prop_assert!(!deletable(h) || h >= oldest_kept, "{} is too old to stay", hour_name(h));
        }
        // More files than `keep_files` only when none of the rest may go.
        prop_assert!(
            left.len() as u64 <= keep_files || left.iter().all(|&h| !deletable(h)),
            "{} files left", left.len()
        );
        // What goes is older than what may go but stays.
        for &h in &left {
            if deletable(h) {
                prop_assert!(gone.iter().all(|&g| g < h), "{} kept, a newer one pruned", hour_name(h));
            }
        }
    }
}
