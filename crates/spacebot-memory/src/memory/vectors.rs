//! The in-memory copy of the current model's vectors, with what the vector stage filters on.
//!
//! SQLite holds the truth (`memory_vectors`, written in each memory's transaction). This copy is
//! loaded at open and updated by the writer right after each commit, while it still holds the
//! store's write lock, so it follows the database commit by commit. Another process writing the
//! same file bumps `memory_meta.generation`; a reader that sees a generation other than the
//! copy's reloads it before using it. Rows the copy returns are re-read from SQLite with the full
//! visibility filter, so a stale copy can cost ranking quality, never correctness.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use spacebot_core::{MemoryId, MemoryType};

use crate::embed::dot;

/// Above this many vectors a scan is split across two threads.
const PARALLEL_SCAN_FROM: usize = 20_000;

/// What the vector stage needs to know about a memory besides its vector.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) seq: i64,
    pub(crate) id: MemoryId,
    pub(crate) agent: Arc<str>,
    pub(crate) kind: MemoryType,
    pub(crate) private: bool,
    pub(crate) human: Option<Arc<str>>,
    pub(crate) conversation: Option<Arc<str>>,
    pub(crate) scope_key: Arc<str>,
    pub(crate) created_at: i64,
    /// The index's number for `(agent, kind, scope_key)`, set by [`VectorIndex::upsert`], so
    /// partition checks in hot loops compare integers, not strings.
    pub(crate) partition: u32,
}

/// Entries with their vectors, as a write adds them to the index after its commit.
pub(crate) type NewVectors = Vec<(Entry, Vec<f32>)>;

/// Vectors of one model, contiguous, plus their entries.
#[derive(Debug)]
pub(crate) struct VectorIndex {
    dimensions: usize,
    /// The database generation this copy reflects; `None` when it must be reloaded.
    generation: Option<i64>,
    entries: Vec<Entry>,
    data: Vec<f32>,
    slots: HashMap<i64, usize>,
    partitions: HashMap<(Arc<str>, MemoryType, Arc<str>), u32>,
}

/// A scored slot, ordered by score then by sequence for a deterministic heap.
#[derive(Debug, Clone, Copy)]
struct Scored {
    score: f32,
    seq: i64,
    slot: usize,
}

impl PartialEq for Scored {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scored {
    /// "Greater" means "better": higher score, then older memory.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score.total_cmp(&other.score).then_with(|| other.seq.cmp(&self.seq))
    }
}

impl VectorIndex {
    pub(crate) fn new(dimensions: usize) -> Self {
        Self {
            dimensions,
            generation: None,
            entries: Vec::new(),
            data: Vec::new(),
            slots: HashMap::new(),
            partitions: HashMap::new(),
        }
    }

    pub(crate) fn generation(&self) -> Option<i64> {
        self.generation
    }

    pub(crate) fn set_generation(&mut self, generation: Option<i64>) {
        self.generation = generation;
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Adds or replaces the vector of `entry.seq`. A vector of the wrong length is ignored (the
    /// writer checks lengths before it commits).
    pub(crate) fn upsert(&mut self, mut entry: Entry, vector: &[f32]) {
        if vector.len() != self.dimensions {
            return;
        }
        let next = u32::try_from(self.partitions.len()).unwrap_or(u32::MAX);
        entry.partition =
            *self.partitions.entry((entry.agent.clone(), entry.kind, entry.scope_key.clone())).or_insert(next);
        if let Some(&slot) = self.slots.get(&entry.seq) {
            self.data[slot * self.dimensions..(slot + 1) * self.dimensions].copy_from_slice(vector);
            self.entries[slot] = entry;
            return;
        }
        self.slots.insert(entry.seq, self.entries.len());
        self.entries.push(entry);
        self.data.extend_from_slice(vector);
    }

    /// Removes the vector of `seq`, if present.
    pub(crate) fn remove(&mut self, seq: i64) {
        let Some(slot) = self.slots.remove(&seq) else { return };
        let last = self.entries.len() - 1;
        if slot != last {
            let moved = self.entries[last].seq;
            self.entries.swap(slot, last);
            let dims = self.dimensions;
            self.data.copy_within(last * dims..(last + 1) * dims, slot * dims);
            self.slots.insert(moved, slot);
        }
        self.entries.pop();
        self.data.truncate(last * self.dimensions);
    }

    pub(crate) fn vector(&self, seq: i64) -> Option<&[f32]> {
        let slot = *self.slots.get(&seq)?;
        Some(&self.data[slot * self.dimensions..(slot + 1) * self.dimensions])
    }

    /// The number of the partition `(agent, kind, scope_key)`, if any vector is in it.
    pub(crate) fn partition_of(&self, agent: &str, kind: MemoryType, scope_key: &str) -> Option<u32> {
        self.partitions.get(&(Arc::from(agent), kind, Arc::from(scope_key))).copied()
    }

    /// Every entry, in no particular order.
    pub(crate) fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The `k` entries most similar to `query` that pass `admit` and reach `min_score`, best
    /// first, with their cosine similarity. `admit` is checked only for entries that would make
    /// the list, so it may be as costly as a comparison of strings.
    pub(crate) fn nearest(
        &self,
        query: &[f32],
        k: usize,
        min_score: f32,
        admit: impl Fn(&Entry) -> bool + Sync,
    ) -> Vec<(Entry, f32)> {
        self.scan(query, k, min_score, false, admit)
    }

    /// As [`nearest`](Self::nearest), checking `admit` before computing the similarity: cheaper
    /// when `admit` is cheap and rejects most entries (a partition of one type and scope).
    pub(crate) fn nearest_within(
        &self,
        query: &[f32],
        k: usize,
        min_score: f32,
        admit: impl Fn(&Entry) -> bool + Sync,
    ) -> Vec<(Entry, f32)> {
        self.scan(query, k, min_score, true, admit)
    }

    fn scan(
        &self,
        query: &[f32],
        k: usize,
        min_score: f32,
        admit_first: bool,
        admit: impl Fn(&Entry) -> bool + Sync,
    ) -> Vec<(Entry, f32)> {
        if k == 0 || query.len() != self.dimensions || self.entries.is_empty() {
            return Vec::new();
        }
        let scan = |range: std::ops::Range<usize>| -> BinaryHeap<std::cmp::Reverse<Scored>> {
            let mut heap = BinaryHeap::with_capacity(k + 1);
            for slot in range {
                let entry = &self.entries[slot];
                if admit_first && !admit(entry) {
                    continue;
                }
                let vector = &self.data[slot * self.dimensions..(slot + 1) * self.dimensions];
                let score = dot(query, vector);
                if score < min_score {
                    continue;
                }
                let scored = Scored { score, seq: entry.seq, slot };
                if heap.len() == k && heap.peek().is_some_and(|worst: &std::cmp::Reverse<Scored>| scored <= worst.0) {
                    continue;
                }
                if !admit_first && !admit(entry) {
                    continue;
                }
                heap.push(std::cmp::Reverse(scored));
                if heap.len() > k {
                    heap.pop();
                }
            }
            heap
        };
        let n = self.entries.len();
        let mut best: Vec<Scored> = if n >= PARALLEL_SCAN_FROM {
            let middle = n / 2;
            let (left, right) = std::thread::scope(|scope| {
                let right = scope.spawn(|| scan(middle..n));
                let left = scan(0..middle);
                // A panic in the scan would be a bug in this function; surface it rather than
                // return a partial result.
                (left, right.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            });
            left.into_iter().chain(right).map(|reverse| reverse.0).collect()
        } else {
            scan(0..n).into_iter().map(|reverse| reverse.0).collect()
        };
        best.sort_by(|a, b| b.cmp(a));
        best.truncate(k);
        best.into_iter().map(|scored| (self.entries[scored.slot].clone(), scored.score)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: i64) -> Entry {
        Entry {
            seq,
            id: MemoryId::from(format!("m{seq}")),
            agent: Arc::from("main"),
            kind: MemoryType::Fact,
            private: false,
            human: None,
            conversation: None,
            scope_key: Arc::from("shared"),
            created_at: 0,
            partition: 0,
        }
    }

    #[test]
    fn nearest_ranks_by_cosine_and_honours_the_filter() {
        let mut index = VectorIndex::new(2);
        index.upsert(entry(1), &[1.0, 0.0]);
        index.upsert(entry(2), &[0.6, 0.8]);
        index.upsert(entry(3), &[0.0, 1.0]);
        let found: Vec<i64> = index.nearest(&[1.0, 0.0], 2, -1.0, |_| true).iter().map(|(e, _)| e.seq).collect();
        assert_eq!(found, vec![1, 2]);
        let found: Vec<i64> = index.nearest(&[1.0, 0.0], 2, -1.0, |e| e.seq != 1).iter().map(|(e, _)| e.seq).collect();
        assert_eq!(found, vec![2, 3]);
    }

    #[test]
    fn remove_keeps_the_other_vectors_in_place() {
        let mut index = VectorIndex::new(2);
        for seq in 1..=4 {
            index.upsert(entry(seq), &[seq as f32, 0.0]);
        }
        index.remove(2);
        index.remove(9);
        assert_eq!(index.len(), 3);
        assert_eq!(index.vector(4), Some(&[4.0, 0.0][..]));
        assert_eq!(index.vector(2), None);
        index.upsert(entry(1), &[0.0, 1.0]);
        assert_eq!(index.vector(1), Some(&[0.0, 1.0][..]));
        assert_eq!(index.len(), 3);
    }

    #[test]
    fn parallel_and_serial_scans_agree() {
        let mut index = VectorIndex::new(4);
        for seq in 0..(PARALLEL_SCAN_FROM as i64 + 10) {
            let x = (seq as f32 * 0.37).sin();
            index.upsert(entry(seq), &[x, 1.0 - x, 0.5, -x]);
        }
        let query = [0.3, 0.7, 0.5, -0.3];
        let parallel: Vec<i64> = index.nearest(&query, 5, -10.0, |_| true).iter().map(|(e, _)| e.seq).collect();
        let mut brute: Vec<(f32, i64)> =
            index.entries().iter().map(|e| (dot(&query, index.vector(e.seq).unwrap()), e.seq)).collect();
        brute.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let expected: Vec<i64> = brute.iter().take(5).map(|(_, seq)| *seq).collect();
        assert_eq!(parallel, expected);
    }
}
