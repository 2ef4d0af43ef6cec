//! A sparse index of the event journal: for each segment, the id of the first event that
//! starts after every `STRIDE` bytes, with its byte offset. A read "after id N" seeks to the
//! last indexed line at or before N+1 and reads forward from there, so it touches at most
//! about one stride plus what it returns, never the whole journal. Pure: no I/O.

use std::collections::BTreeMap;

/// Distance between two index entries of a segment. 64 MiB of journal make ~1 000 entries.
pub const STRIDE: u64 = 64 << 10;

/// Entries per segment (keyed by the segment's first id): `(event id, byte offset)` of a line
/// start, ascending in both.
#[derive(Debug, Default)]
pub struct SparseIndex {
    segments: BTreeMap<u64, Vec<(u64, u64)>>,
}

impl SparseIndex {
    /// Records that the line at `offset` of `segment` holds event `id`, if it starts a new
    /// stride (the segment's start needs no entry: reads begin there anyway).
    pub fn note(&mut self, segment: u64, id: u64, offset: u64) {
        let entries = self.segments.entry(segment).or_default();
        let last = entries.last().map_or(0, |(_, offset)| *offset);
        if offset / STRIDE > last / STRIDE {
            entries.push((id, offset));
        }
    }

    /// Keeps only the segments in `existing`.
    pub fn retain(&mut self, existing: &[u64]) {
        self.segments.retain(|first, _| existing.contains(first));
    }

    #[cfg(test)]
    pub fn entries(&self) -> usize {
        self.segments.values().map(Vec::len).sum()
    }

    /// Where to start reading for the events after `cursor`: the position in `segments`
    /// (first ids, ascending) and the byte offset inside that segment; `None` without segments.
    pub fn start_after(&self, segments: &[u64], cursor: u64) -> Option<(usize, u64)> {
        if segments.is_empty() {
            return None;
        }
        let wanted = cursor.saturating_add(1);
        // The last segment that starts at or before the wanted id; older ones end before it.
        let position = segments
            .iter()
            .rposition(|first| *first <= wanted)
            .unwrap_or(0);
        let offset = self
            .segments
            .get(&segments[position])
            .and_then(|entries| entries.iter().rev().find(|(id, _)| *id <= wanted))
            .map_or(0, |(_, offset)| *offset);
        Some((position, offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_kept_once_per_stride() {
        let mut index = SparseIndex::default();
        index.note(1, 1, 0);
        index.note(1, 2, 100);
        index.note(1, 50, STRIDE + 10);
        index.note(1, 51, STRIDE + 200);
        index.note(1, 99, 2 * STRIDE + 5);
        assert_eq!(
            index.segments[&1],
            vec![(50, STRIDE + 10), (99, 2 * STRIDE + 5)]
        );
    }

    #[test]
    fn reads_start_at_the_last_entry_at_or_before_the_wanted_id() {
        let mut index = SparseIndex::default();
        index.note(1, 40, STRIDE);
        index.note(1, 80, 2 * STRIDE);
        index.note(100, 150, STRIDE + 1);
        let segments = [1, 100];
        assert_eq!(index.start_after(&segments, 0), Some((0, 0)));
        assert_eq!(index.start_after(&segments, 39), Some((0, STRIDE)));
        assert_eq!(index.start_after(&segments, 79), Some((0, 2 * STRIDE)));
        assert_eq!(index.start_after(&segments, 98), Some((0, 2 * STRIDE)));
        assert_eq!(index.start_after(&segments, 99), Some((1, 0)));
        assert_eq!(index.start_after(&segments, 149), Some((1, STRIDE + 1)));
        assert_eq!(
            index.start_after(&segments, u64::MAX),
            Some((1, STRIDE + 1))
        );
        assert_eq!(index.start_after(&[], 5), None);
    }

    #[test]
    fn a_cursor_older_than_every_segment_starts_at_the_oldest() {
        let index = SparseIndex::default();
        assert_eq!(index.start_after(&[500, 900], 3), Some((0, 0)));
    }

    #[test]
    fn deleted_segments_are_forgotten() {
        let mut index = SparseIndex::default();
        index.note(1, 40, STRIDE);
        index.note(100, 150, STRIDE);
        index.retain(&[100]);
        assert_eq!(index.entries(), 1);
        index.retain(&[]);
        assert_eq!(index.entries(), 0);
    }
}
