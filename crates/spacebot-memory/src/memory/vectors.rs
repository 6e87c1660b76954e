//! The in-memory copy of the current model's vectors, with what the vector stage filters on.
//!
//! SQLite holds the truth (`memory_vectors`, written in each memory's transaction); how this
//! copy follows it commit by commit is in `indexes.rs`.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use spacebot_core::{MemoryId, MemoryType};

use crate::embed::dot;

/// Above this many vectors a scan is split across two threads.
const PARALLEL_SCAN_FROM: usize = 20_000;

/// Bits in a vector's sketch.
const SKETCH_BITS: usize = 128;

/// A vector's sketch: one bit per hyperplane.
type Sketch = u128;

/// The most sketch bits two vectors at cosine ≥ [`SKETCH_SCREEN_FROM`] may differ in and still be
/// compared exactly by [`VectorIndex::nearest_in_partition`].
///
/// Each bit is the sign of the vector's projection on a fixed random ±1 hyperplane, so for two
/// vectors at angle θ a bit differs with probability θ/π (Charikar's SimHash). At cosine 0.95
/// (θ = 0.318) that is 0.101: the differing bits follow Binomial(128, 0.101), mean 12.9,
/// standard deviation 3.4. P(more than 32 differ) is about 4 × 10⁻⁷ (exact binomial tail), so a
/// true duplicate is practically never screened out (and closer pairs even less often).
/// Unrelated vectors pass rarely: at cosine 0.2 with probability 1 × 10⁻⁵, at 0.3, 2 × 10⁻⁴, at
/// 0.5, 2.6%. With 64 bits (cut-off 20, miss rate 7 × 10⁻⁷) those were 3%, 9% and 42%: on the
/// benchmark's data (typical cosine 0.2, 99th percentile 0.37) the exact comparisons of the
/// vectors that passed were most of a save's time at 100,000 memories.
const SKETCH_MAX_DISTANCE: u32 = 32;

/// The lowest similarity threshold [`SKETCH_MAX_DISTANCE`] is justified for; below it the
/// partition scan compares every vector exactly.
const SKETCH_SCREEN_FROM: f32 = 0.95;

/// From this many vectors on, [`VectorIndex::nearest_screened`] pre-screens by int8 copy; below it
/// the scan is exact (and small stores, such as tests', rank deterministically by cosine).
const SCREEN_FROM: usize = 5_000;

/// The fewest candidates [`VectorIndex::nearest_screened`] compares exactly, and how many per
/// requested result (whichever is more).
const SCREEN_MIN_CANDIDATES: usize = 500;
const SCREEN_CANDIDATES_PER_RESULT: usize = 10;

/// `vector` as int8 (each value × 127 / the largest magnitude, rounded) and the factor that
/// turns it back (largest magnitude / 127; 0 for a zero vector).
#[inline(always)]
fn quantize(vector: &[f32]) -> (Vec<i8>, f32) {
    let largest = vector.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    if largest == 0.0 || !largest.is_finite() {
        return (vec![0; vector.len()], 0.0);
    }
    let factor = 127.0 / largest;
    // Ties to even: one instruction where SSE4.1 is there, where `round` is a library call.
    (vector.iter().map(|x| (x * factor).round_ties_even().clamp(-127.0, 127.0) as i8).collect(), largest / 127.0)
}

/// The dot product of an int8 vector widened to i16 (the query, widened once per scan) and an
/// int8 vector (a stored one).
///
/// The stored vector is widened a block at a time into a stack buffer, then multiplied as i16
/// pairs summed into i32, which the compiler turns into `pmaddwd` even on baseline x86-64
/// (SSE2): about twice as fast as multiplying the bytes as i32 directly. Blocks of 384 (the
/// common embedding size) then of 32 keep the inner loops at sizes it unrolls fully.
#[inline(always)]
fn dot_i8(query: &[i16], stored: &[i8]) -> i32 {
    #[inline(always)]
    fn block<const B: usize>(query: &[i16], stored: &[i8]) -> i32 {
        let wide: [i16; B] = std::array::from_fn(|i| i16::from(stored[i]));
        dot_i16(query, &wide)
    }
    let mut total = 0;
    let mut query = query;
    let mut stored = stored;
    while query.len() >= 384 && stored.len() >= 384 {
        total += block::<384>(&query[..384], &stored[..384]);
        (query, stored) = (&query[384..], &stored[384..]);
    }
    while query.len() >= 32 && stored.len() >= 32 {
        total += block::<32>(&query[..32], &stored[..32]);
        (query, stored) = (&query[32..], &stored[32..]);
    }
    total + query.iter().zip(stored).map(|(x, y)| i32::from(*x) * i32::from(*y)).sum::<i32>()
}

/// The dot product of two i16 vectors of a length divisible by 16, with independent
/// accumulators as [`dot`].
#[inline(always)]
fn dot_i16(a: &[i16], b: &[i16]) -> i32 {
    const LANES: usize = 16;
    let mut sums = [0i32; LANES];
    for (x, y) in a.chunks_exact(LANES).zip(b.chunks_exact(LANES)) {
        for lane in 0..LANES {
            sums[lane] += i32::from(x[lane]) * i32::from(y[lane]);
        }
    }
    sums.iter().sum::<i32>()
}

/// The hyperplanes for `dimensions`, made once per process and shared by every index of that
/// size (each agent's memory, and the index a load builds beside the live one): 192 KiB at 384
/// dimensions that would otherwise be computed and held once per index.
fn shared_hyperplanes(dimensions: usize) -> Arc<[f32]> {
    static MADE: std::sync::Mutex<Vec<(usize, Arc<[f32]>)>> = std::sync::Mutex::new(Vec::new());
    let mut made = MADE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, planes)) = made.iter().find(|(size, _)| *size == dimensions) {
        return planes.clone();
    }
    let planes: Arc<[f32]> = hyperplanes(dimensions).into();
    made.push((dimensions, planes.clone()));
    planes
}

/// The random ±1 hyperplanes of the sketch, laid out dimension-major (`dims × 128`) so the
/// projection runs as 128 independent accumulators per dimension. Fixed (seeded), so sketches
/// are comparable across the index's lifetime and never stored.
fn hyperplanes(dimensions: usize) -> Vec<f32> {
    let mut state: u64 = 0x5eed_5ace_b07e_0001;
    let mut planes = Vec::with_capacity(dimensions * SKETCH_BITS);
    for _ in 0..dimensions {
        // splitmix64: each 64-bit word gives the signs of one dimension in 64 planes.
        for _ in 0..SKETCH_BITS / 64 {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            planes.extend((0..64).map(|bit| if z >> bit & 1 == 1 { 1.0 } else { -1.0 }));
        }
    }
    planes
}

/// The sign sketch of `vector` against `planes` (from [`hyperplanes`]).
#[inline(always)]
fn sketch_with(planes: &[f32], vector: &[f32]) -> Sketch {
    let mut sums = [0.0f32; SKETCH_BITS];
    for (value, plane) in vector.iter().zip(planes.chunks_exact(SKETCH_BITS)) {
        for (sum, sign) in sums.iter_mut().zip(plane) {
            *sum += value * sign;
        }
    }
    sums.iter().enumerate().fold(0, |bits: Sketch, (bit, sum)| if *sum >= 0.0 { bits | 1 << bit } else { bits })
}

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

impl Entry {
    /// A shared fact of agent `main` with id `m{seq}`, for tests.
    #[cfg(test)]
    pub(crate) fn shared_fact(seq: i64) -> Self {
        Self {
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

    /// The heap bytes of its id (the shared strings are counted with whoever else holds them:
    /// not at all).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.id.as_str().len()
    }
}

/// Entries with their vectors, as a write adds them to the index after its commit.
pub(crate) type NewVectors = Vec<(Entry, Vec<f32>)>;

/// Vectors of one model, contiguous, plus their entries.
#[derive(Debug)]
pub(crate) struct VectorIndex {
    dimensions: usize,
    entries: Vec<Entry>,
    data: Vec<f32>,
    /// Per partition (indexed by its number), the sketches of its vectors and their slots,
    /// contiguous, so the write-time near-duplicate screen reads 16 bytes per memory of the
    /// partition only, not the entry and vector of every memory.
    members: Vec<Members>,
    /// Per slot, where the slot sits in its partition's [`Members`].
    member_at: Vec<usize>,
    /// The sketch hyperplanes ([`hyperplanes`]), shared by every index of this size.
    planes: Arc<[f32]>,
    /// Per slot, the vector as int8 ([`quantize`]), contiguous, and its scale: the first pass
    /// of [`VectorIndex::nearest_screened`].
    quantized: Vec<i8>,
    scales: Vec<f32>,
    slots: HashMap<i64, usize>,
    partitions: HashMap<(Arc<str>, MemoryType, Arc<str>), u32>,
    /// The SIMD instruction set the scans run with.
    arch: pulp::Arch,
}

/// The vectors of one partition, as [`VectorIndex::nearest_in_partition`] screens them.
#[derive(Debug, Default)]
struct Members {
    sketches: Vec<Sketch>,
    slots: Vec<usize>,
}

/// A score that orders totally (`f32` for similarities, `f64` for BM25).
pub(crate) trait Score: Copy {
    fn order(&self, other: &Self) -> Ordering;
}

impl Score for f32 {
    fn order(&self, other: &Self) -> Ordering {
        self.total_cmp(other)
    }
}

impl Score for f64 {
    fn order(&self, other: &Self) -> Ordering {
        self.total_cmp(other)
    }
}

/// A scored slot (of the vector copy, or a document of the word copy), ordered by score then
/// by sequence for a deterministic heap.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scored<S = f32> {
    pub(crate) score: S,
    pub(crate) seq: i64,
    pub(crate) slot: usize,
}

impl<S: Score> PartialEq for Scored<S> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl<S: Score> Eq for Scored<S> {}
impl<S: Score> PartialOrd for Scored<S> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<S: Score> Ord for Scored<S> {
    /// "Greater" means "better": higher score, then older memory.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score.order(&other.score).then_with(|| other.seq.cmp(&self.seq))
    }
}

impl VectorIndex {
    pub(crate) fn new(dimensions: usize) -> Self {
        Self {
            dimensions,
            entries: Vec::new(),
            data: Vec::new(),
            members: Vec::new(),
            member_at: Vec::new(),
            planes: shared_hyperplanes(dimensions),
            quantized: Vec::new(),
            scales: Vec::new(),
            slots: HashMap::new(),
            partitions: HashMap::new(),
            arch: pulp::Arch::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Gives back the spare capacity that growing by doubling left (after a load).
    pub(crate) fn shrink_to_fit(&mut self) {
        self.data.shrink_to_fit();
        self.quantized.shrink_to_fit();
        self.scales.shrink_to_fit();
        self.entries.shrink_to_fit();
        self.member_at.shrink_to_fit();
        for members in &mut self.members {
            members.sketches.shrink_to_fit();
            members.slots.shrink_to_fit();
        }
    }

    /// About how many bytes of heap the copy holds (vectors, their int8 copy, entries, maps).
    pub(crate) fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        let members: usize = self
            .members
            .iter()
            .map(|members| {
                members.sketches.capacity() * size_of::<Sketch>() + members.slots.capacity() * size_of::<usize>()
            })
            .sum();
        self.data.capacity() * size_of::<f32>()
            + self.quantized.capacity()
            + self.scales.capacity() * size_of::<f32>()
            + self.entries.capacity() * size_of::<Entry>()
            + self.entries.iter().map(Entry::heap_bytes).sum::<usize>()
            + members
            + self.member_at.capacity() * size_of::<usize>()
            // The hyperplanes are shared (`shared_hyperplanes`), not this index's own.
            // A hash map entry: key, value and about one control byte, at 7/8 load.
            + self.slots.capacity() * (size_of::<(i64, usize)>() + 1)
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
        let (sketch, (quantized, scale)) = self.arch.dispatch(Encode { planes: &self.planes, vector });
        let partition = entry.partition;
        if let Some(&slot) = self.slots.get(&entry.seq) {
            self.data[slot * self.dimensions..(slot + 1) * self.dimensions].copy_from_slice(vector);
            self.quantized[slot * self.dimensions..(slot + 1) * self.dimensions].copy_from_slice(&quantized);
            self.scales[slot] = scale;
            let old = std::mem::replace(&mut self.entries[slot], entry).partition;
            if old == partition {
                self.members[partition as usize].sketches[self.member_at[slot]] = sketch;
            } else {
                self.leave_partition(slot, old);
                self.member_at[slot] = self.join_partition(slot, partition, sketch);
            }
            return;
        }
        let slot = self.entries.len();
        self.slots.insert(entry.seq, slot);
        self.entries.push(entry);
        let at = self.join_partition(slot, partition, sketch);
        self.member_at.push(at);
        self.data.extend_from_slice(vector);
        self.quantized.extend_from_slice(&quantized);
        self.scales.push(scale);
    }

    /// Removes the vector of `seq`, if present.
    pub(crate) fn remove(&mut self, seq: i64) {
        let Some(slot) = self.slots.remove(&seq) else { return };
        self.leave_partition(slot, self.entries[slot].partition);
        let last = self.entries.len() - 1;
        if slot != last {
            let moved = self.entries[last].seq;
            self.members[self.entries[last].partition as usize].slots[self.member_at[last]] = slot;
            self.entries.swap(slot, last);
            self.member_at.swap(slot, last);
            let dims = self.dimensions;
            self.data.copy_within(last * dims..(last + 1) * dims, slot * dims);
            self.quantized.copy_within(last * dims..(last + 1) * dims, slot * dims);
            self.scales.swap(slot, last);
            self.slots.insert(moved, slot);
        }
        self.entries.pop();
        self.member_at.pop();
        self.scales.pop();
        self.data.truncate(last * self.dimensions);
        self.quantized.truncate(last * self.dimensions);
    }

    /// Adds `slot` to the members of `partition`; returns its place there.
    fn join_partition(&mut self, slot: usize, partition: u32, sketch: Sketch) -> usize {
        let partition = partition as usize;
        if self.members.len() <= partition {
            self.members.resize_with(partition + 1, Members::default);
        }
        let members = &mut self.members[partition];
        members.sketches.push(sketch);
        members.slots.push(slot);
        members.slots.len() - 1
    }

    /// Removes `slot` from the members of `partition` (the last member takes its place).
    fn leave_partition(&mut self, slot: usize, partition: u32) {
        let at = self.member_at[slot];
        let members = &mut self.members[partition as usize];
        members.sketches.swap_remove(at);
        members.slots.swap_remove(at);
        if let Some(&moved) = members.slots.get(at) {
            self.member_at[moved] = at;
        }
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

    /// As [`nearest`](Self::nearest), but on stores of [`SCREEN_FROM`] vectors or more, a first
    /// pass ranks every admitted vector by its int8 copy and only the best
    /// `max(k × 10, 500)` are compared exactly. For hybrid recall's vector list.
    ///
    /// The first pass reads 384 bytes per memory instead of 1.5 KB (at 384 dimensions). The
    /// quantisation error of a dot product is far below the gaps between the 50th and the
    /// 500th best cosine, so the list is practically always the exact one (scores and order are
    /// always exact: they are recomputed in f32). The 64-bit sketches were tried first and are
    /// not good enough for this: on the benchmark's data their best 2,500 of 100,000 held only a
    /// third of the exact top 10, since a sketch distance (Binomial(64, θ/π), standard deviation
    /// about 4 bits) separates near-duplicates from the bulk but not a cosine of 0.3 from 0.1.
    pub(crate) fn nearest_screened(
        &self,
        query: &[f32],
        k: usize,
        min_score: f32,
        admit: impl Fn(&Entry) -> bool + Sync,
    ) -> Vec<(Entry, f32)> {
        let n = self.entries.len();
        let wanted = k.saturating_mul(SCREEN_CANDIDATES_PER_RESULT).max(SCREEN_MIN_CANDIDATES);
        if k == 0 || query.len() != self.dimensions || n < SCREEN_FROM || wanted >= n {
            return self.scan(query, k, min_score, false, admit);
        }
        let dims = self.dimensions;
        let (query_q, query_scale) = quantize(query);
        let query_q: Vec<i16> = query_q.into_iter().map(i16::from).collect();
        let first = |range: std::ops::Range<usize>| {
            self.arch.dispatch(FirstPass { index: self, query: &query_q, query_scale, range, wanted, admit: &admit })
        };
        let candidates: Vec<usize> = if n >= PARALLEL_SCAN_FROM {
            let middle = n / 2;
            let (left, right) = std::thread::scope(|scope| {
                let right = scope.spawn(|| first(middle..n));
                let left = first(0..middle);
                (left, right.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            });
            left.into_iter().chain(right).map(|reverse| reverse.0.slot).collect()
        } else {
            first(0..n).into_iter().map(|reverse| reverse.0.slot).collect()
        };
        let mut best: Vec<Scored> = candidates
            .into_iter()
            .map(|slot| Scored {
                score: dot(query, &self.data[slot * dims..(slot + 1) * dims]),
                seq: self.entries[slot].seq,
                slot,
            })
            .filter(|scored| scored.score >= min_score)
            .collect();
        best.sort_by(|a, b| b.cmp(a));
        best.truncate(k);
        best.into_iter().map(|scored| (self.entries[scored.slot].clone(), scored.score)).collect()
    }

    /// The entry of `partition` most similar to `query` at `min_score` or more, with its cosine
    /// (ties: the older memory). For the write-time near-duplicate check: when `min_score` is
    /// at least [`SKETCH_SCREEN_FROM`], only vectors whose sketch is within
    /// [`SKETCH_MAX_DISTANCE`] bits of the query's are compared exactly.
    pub(crate) fn nearest_in_partition(&self, query: &[f32], partition: u32, min_score: f32) -> Option<(Entry, f32)> {
        if query.len() != self.dimensions {
            return None;
        }
        let max_distance = if min_score >= SKETCH_SCREEN_FROM { SKETCH_MAX_DISTANCE } else { SKETCH_BITS as u32 };
        let members = self.members.get(partition as usize)?;
        let best = self.arch.dispatch(PartitionPass { index: self, query, members, max_distance, min_score });
        best.map(|scored| (self.entries[scored.slot].clone(), scored.score))
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
        let scan = |range: std::ops::Range<usize>| {
            self.arch.dispatch(ExactPass { index: self, query, k, min_score, admit_first, range, admit: &admit })
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

/// Keeps the `wanted` best of a stream of scored slots that `admit` lets through, checking
/// `admit` only for those good enough to be kept.
#[inline(always)]
pub(crate) fn keep_best<S: Score>(
    heap: &mut BinaryHeap<Reverse<Scored<S>>>,
    wanted: usize,
    scored: Scored<S>,
    entry: &Entry,
    admit: &impl Fn(&Entry) -> bool,
) {
    if heap.len() == wanted && heap.peek().is_some_and(|worst| scored <= worst.0) {
        return;
    }
    if !admit(entry) {
        return;
    }
    heap.push(Reverse(scored));
    if heap.len() > wanted {
        heap.pop();
    }
}

// The scans below run through `pulp`, which calls them compiled for the best SIMD instruction
// set the CPU has (AVX2 with FMA on most x86-64 machines since 2013, found at run time), so
// the plain loops of `dot_i8`, `dot` and `count_ones` vectorise with it: about 4 times faster
// than the baseline x86-64 (SSE2) build. Each pass is a struct whose `with_simd` is inlined
// into that specially compiled function, with everything it calls in its loop; a closure
// would not be.

/// A stored vector's sketch and int8 copy ([`sketch_with`], [`quantize`]): 49,152
/// multiply-adds at 384 dimensions, most of the cost of loading a vector.
struct Encode<'a> {
    planes: &'a [f32],
    vector: &'a [f32],
}

impl pulp::WithSimd for Encode<'_> {
    type Output = (Sketch, (Vec<i8>, f32));

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) -> Self::Output {
        (sketch_with(self.planes, self.vector), quantize(self.vector))
    }
}

/// The int8 first pass of [`VectorIndex::nearest_screened`] over `range`.
struct FirstPass<'a, F> {
    index: &'a VectorIndex,
    query: &'a [i16],
    query_scale: f32,
    range: std::ops::Range<usize>,
    wanted: usize,
    admit: &'a F,
}

impl<F: Fn(&Entry) -> bool> pulp::WithSimd for FirstPass<'_, F> {
    type Output = BinaryHeap<Reverse<Scored>>;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) -> Self::Output {
        let Self { index, query, query_scale, range, wanted, admit } = self;
        let dims = index.dimensions;
        let mut heap = BinaryHeap::with_capacity(wanted + 1);
        for slot in range {
            let estimate = dot_i8(query, &index.quantized[slot * dims..(slot + 1) * dims]) as f32
                * query_scale
                * index.scales[slot];
            // Most vectors lose to the worst kept one on score alone: decide that before
            // reading their entry (another cache line per vector).
            if heap.len() == wanted && heap.peek().is_some_and(|worst: &Reverse<Scored>| estimate < worst.0.score) {
                continue;
            }
            let entry = &index.entries[slot];
            keep_best(&mut heap, wanted, Scored { score: estimate, seq: entry.seq, slot }, entry, admit);
        }
        heap
    }
}

/// The exact (f32) pass of [`VectorIndex::scan`] over `range`.
struct ExactPass<'a, F> {
    index: &'a VectorIndex,
    query: &'a [f32],
    k: usize,
    min_score: f32,
    admit_first: bool,
    range: std::ops::Range<usize>,
    admit: &'a F,
}

impl<F: Fn(&Entry) -> bool> pulp::WithSimd for ExactPass<'_, F> {
    type Output = BinaryHeap<Reverse<Scored>>;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) -> Self::Output {
        let Self { index, query, k, min_score, admit_first, range, admit } = self;
        let dims = index.dimensions;
        let mut heap = BinaryHeap::with_capacity(k + 1);
        for slot in range {
            let entry = &index.entries[slot];
            if admit_first && !admit(entry) {
                continue;
            }
            let score = dot(query, &index.data[slot * dims..(slot + 1) * dims]);
            if score < min_score {
                continue;
            }
            let scored = Scored { score, seq: entry.seq, slot };
            if admit_first {
                keep_best(&mut heap, k, scored, entry, &|_: &Entry| true);
            } else {
                keep_best(&mut heap, k, scored, entry, admit);
            }
        }
        heap
    }
}

/// The sketch-screened pass of [`VectorIndex::nearest_in_partition`].
struct PartitionPass<'a> {
    index: &'a VectorIndex,
    query: &'a [f32],
    members: &'a Members,
    max_distance: u32,
    min_score: f32,
}

impl pulp::WithSimd for PartitionPass<'_> {
    type Output = Option<Scored>;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) -> Self::Output {
        let Self { index, query, members, max_distance, min_score } = self;
        let dims = index.dimensions;
        let sketch = sketch_with(&index.planes, query);
        let mut best: Option<Scored> = None;
        for (&slot, &other) in members.slots.iter().zip(&members.sketches) {
            if (sketch ^ other).count_ones() > max_distance {
                continue;
            }
            let score = dot(query, &index.data[slot * dims..(slot + 1) * dims]);
            if score < min_score {
                continue;
            }
            let scored = Scored { score, seq: index.entries[slot].seq, slot };
            if best.is_none_or(|best| scored > best) {
                best = Some(scored);
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_int8_dot_product_matches_the_naive_sum_for_any_length() {
        for len in [0usize, 1, 31, 32, 33, 383, 384, 385, 800, 1536] {
            let a: Vec<i8> = (0..len).map(|i| ((i * 37) % 255) as i16 as i8).map(|x| x.max(-127)).collect();
            let b: Vec<i8> = (0..len).map(|i| ((i * 91 + 7) % 255) as i16 as i8).map(|x| x.max(-127)).collect();
            let naive: i32 = a.iter().zip(&b).map(|(x, y)| i32::from(*x) * i32::from(*y)).sum();
            let wide: Vec<i16> = a.iter().copied().map(i16::from).collect();
            assert_eq!(dot_i8(&wide, &b), naive, "length {len}");
        }
    }

    fn entry(seq: i64) -> Entry {
        Entry::shared_fact(seq)
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
    fn partitions_follow_removes_and_rescoped_upserts() {
        let dims = 8;
        let scoped = |seq: i64, kind: MemoryType| Entry { kind, ..entry(seq) };
        let mut index = VectorIndex::new(dims);
        // Memory `seq` points along axis `seq % dims`, so each is its own exact duplicate.
        let axis = |seq: i64| {
            let mut v = vec![0.0; dims];
            v[(seq as usize) % dims] = 1.0;
            v
        };
        for seq in 0..8 {
            let kind = if seq % 2 == 0 { MemoryType::Fact } else { MemoryType::Event };
            index.upsert(scoped(seq, kind), &axis(seq));
        }
        let facts = index.partition_of("main", MemoryType::Fact, "shared").unwrap();
        let events = index.partition_of("main", MemoryType::Event, "shared").unwrap();
        let found = |index: &VectorIndex, seq: i64, partition: u32| {
            index.nearest_in_partition(&axis(seq), partition, 0.95).map(|(entry, _)| entry.seq)
        };
        for seq in 0..8 {
            let (own, other) = if seq % 2 == 0 { (facts, events) } else { (events, facts) };
            assert_eq!(found(&index, seq, own), Some(seq), "memory {seq} in its partition");
            assert_eq!(found(&index, seq, other), None, "memory {seq} not in the other");
        }
        // Removing the first slot moves the last memory (7) into it; 2 changes partition.
        index.remove(0);
        index.upsert(scoped(2, MemoryType::Event), &axis(2));
        assert_eq!(found(&index, 0, facts), None);
        assert_eq!(found(&index, 7, events), Some(7));
        assert_eq!(found(&index, 2, facts), None);
        assert_eq!(found(&index, 2, events), Some(2));
        assert_eq!(found(&index, 4, facts), Some(4));
        assert_eq!(found(&index, 6, facts), Some(6));
        index.remove(7);
        index.remove(4);
        assert_eq!(found(&index, 6, facts), Some(6));
        assert_eq!(found(&index, 5, events), Some(5));
        assert_eq!(index.len(), 5);
    }

    /// A unit vector at cosine `cos` to the first axis, turned towards axis `towards`.
    fn at_cosine(dims: usize, cos: f32, towards: usize) -> Vec<f32> {
        let mut v = vec![0.0; dims];
        v[0] = cos;
        v[towards] = (1.0 - cos * cos).sqrt();
        v
    }

    #[test]
    fn indexes_of_one_size_share_their_hyperplanes() {
        let (a, b, other) = (VectorIndex::new(48), VectorIndex::new(48), VectorIndex::new(40));
        assert!(Arc::ptr_eq(&a.planes, &b.planes), "two indexes of one size made their own hyperplanes");
        assert_eq!(&a.planes[..], &hyperplanes(48)[..], "the shared hyperplanes are the seeded ones");
        assert_eq!(other.planes.len(), 40 * SKETCH_BITS, "another size gets its own");
    }

    #[test]
    fn sketch_screen_keeps_near_duplicates_and_drops_far_vectors() {
        let dims = 384;
        let planes = hyperplanes(dims);
        let query = at_cosine(dims, 1.0, 1);
        let near = at_cosine(dims, 0.96, 7);
        let far = at_cosine(dims, 0.0, 7);
        let distance = |v: &[f32]| (sketch_with(&planes, &query) ^ sketch_with(&planes, v)).count_ones();
        assert!(distance(&near) <= SKETCH_MAX_DISTANCE, "near: {}", distance(&near));
        assert!(distance(&far) > SKETCH_MAX_DISTANCE, "far: {}", distance(&far));

        let mut index = VectorIndex::new(dims);
        index.upsert(entry(1), &far);
        index.upsert(entry(2), &near);
        let (found, score) = index.nearest_in_partition(&query, 0, 0.95).expect("the near duplicate");
        assert_eq!(found.seq, 2);
        assert!((score - 0.96).abs() < 1e-4);
        assert!(index.nearest_in_partition(&query, 1, 0.95).is_none(), "another partition");
        index.remove(2);
        assert!(index.nearest_in_partition(&query, 0, 0.95).is_none());
        // Below the screened threshold every vector of the partition is compared.
        assert_eq!(index.nearest_in_partition(&query, 0, -1.0).map(|(e, _)| e.seq), Some(1));
    }

    #[test]
    fn sketch_screen_misses_no_duplicate_at_the_threshold() {
        // 2,000 random directions at cosine 0.95 to random queries: none screened out.
        let dims = 384;
        let planes = hyperplanes(dims);
        let mut state = 7u64;
        let mut gaussian = move || {
            // Sum of uniforms: close enough to a normal for random directions.
            (0..12)
                .map(|_| {
                    state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                    (state >> 40) as f32 / (1u64 << 24) as f32
                })
                .sum::<f32>()
                - 6.0
        };
        for _ in 0..2_000 {
            let mut q: Vec<f32> = (0..dims).map(|_| gaussian()).collect();
            crate::embed::normalize(&mut q);
            let mut r: Vec<f32> = (0..dims).map(|_| gaussian()).collect();
            let along = dot(&q, &r);
            r.iter_mut().zip(&q).for_each(|(x, y)| *x -= along * y);
            crate::embed::normalize(&mut r);
            let v: Vec<f32> = q.iter().zip(&r).map(|(a, b)| 0.95 * a + (1.0 - 0.95f32 * 0.95).sqrt() * b).collect();
            let distance = (sketch_with(&planes, &q) ^ sketch_with(&planes, &v)).count_ones();
            assert!(distance <= SKETCH_MAX_DISTANCE, "distance {distance}");
        }
    }

    /// A random unit vector of `dims` dimensions (sum-of-uniforms Gaussian, seeded).
    fn random_unit(state: &mut u64, dims: usize) -> Vec<f32> {
        let mut v: Vec<f32> = (0..dims)
            .map(|_| {
                (0..12)
                    .map(|_| {
                        *state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                        (*state >> 40) as f32 / (1u64 << 24) as f32
                    })
                    .sum::<f32>()
                    - 6.0
            })
            .collect();
        crate::embed::normalize(&mut v);
        v
    }

    #[test]
    fn screened_search_finds_the_exact_top_ten() {
        let dims = 384;
        let mut state = 11u64;
        let mut index = VectorIndex::new(dims);
        let queries: Vec<Vec<f32>> = (0..5).map(|_| random_unit(&mut state, dims)).collect();
        let mut seq = 0;
        // 20,000 random vectors, and per query 12 planted neighbours at cosine 0.7 to 0.92.
        for _ in 0..20_000 {
            index.upsert(entry(seq), &random_unit(&mut state, dims));
            seq += 1;
        }
        for query in &queries {
            for i in 0..12 {
                let cos = 0.7 + 0.02 * i as f32;
                let noise = random_unit(&mut state, dims);
                let along = dot(query, &noise);
                let mut orth: Vec<f32> = noise.iter().zip(query).map(|(n, q)| n - along * q).collect();
                crate::embed::normalize(&mut orth);
                let v: Vec<f32> =
                    query.iter().zip(&orth).map(|(q, o)| cos * q + (1.0 - cos * cos).sqrt() * o).collect();
                index.upsert(entry(seq), &v);
                seq += 1;
            }
        }
        assert!(index.len() >= SCREEN_FROM);
        for query in &queries {
            let exact: Vec<(i64, f32)> =
                index.nearest(query, 10, -1.0, |_| true).iter().map(|(e, s)| (e.seq, *s)).collect();
            let screened: Vec<(i64, f32)> =
                index.nearest_screened(query, 10, -1.0, |_| true).iter().map(|(e, s)| (e.seq, *s)).collect();
            assert_eq!(screened, exact);
        }
        // A filter that admits almost nothing: applied in the first pass, so the list still fills.
        let rare = |e: &Entry| e.seq % 997 == 0;
        let exact: Vec<i64> = index.nearest(&queries[0], 10, -1.0, rare).iter().map(|(e, _)| e.seq).collect();
        let screened: Vec<i64> =
            index.nearest_screened(&queries[0], 10, -1.0, rare).iter().map(|(e, _)| e.seq).collect();
        assert_eq!(screened, exact);
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
