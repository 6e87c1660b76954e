//! The settings and the report of one memory maintenance pass.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Settings of one maintenance pass. Every step is bounded by `max_items` and by `time_budget`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MaintenanceOptions {
    /// Fraction of importance an idle memory loses per idle day (compounded).
    pub decay_per_day: f32,
    /// How long after its last access a memory starts to decay.
    pub decay_grace: Duration,
    /// Memories below this importance may be pruned ...
    pub prune_below: f32,
    /// ... once they are older than this and were not accessed for as long.
    pub prune_min_age: Duration,
    /// Forgotten memories are deleted for good this long after they were forgotten.
    pub forgotten_retention: Duration,
    /// Memories of one type and scope at least this similar (cosine) are merged.
    pub merge_similarity: f32,
    /// New memories at least this similar to another get a `related_to` edge.
    pub link_similarity: f32,
    /// At most this many memories handled by each step.
    pub max_items: usize,
    /// The whole pass stops between batches once this much time has passed.
    pub time_budget: Duration,
}

impl Default for MaintenanceOptions {
    fn default() -> Self {
        const DAY: u64 = 24 * 60 * 60;
        Self {
            decay_per_day: 0.03,
            decay_grace: Duration::from_secs(7 * DAY),
            prune_below: 0.1,
            prune_min_age: Duration::from_secs(30 * DAY),
            forgotten_retention: Duration::from_secs(30 * DAY),
            merge_similarity: 0.95,
            link_similarity: 0.8,
            max_items: 2000,
            time_budget: Duration::from_secs(60),
        }
    }
}

impl MaintenanceOptions {
    /// Sets the time budget of the pass.
    pub fn with_time_budget(mut self, budget: Duration) -> Self {
        self.time_budget = budget;
        self
    }

    /// Sets how many memories each step handles at most.
    pub fn with_max_items(mut self, max_items: usize) -> Self {
        self.max_items = max_items;
        self
    }
}

/// What one maintenance pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MaintenanceReport {
    /// Memories whose importance decayed.
    pub decayed: usize,
    /// Memories deleted for good (forgotten long ago, or faded).
    pub pruned: usize,
    /// Near-duplicates merged into a survivor.
    pub merged: usize,
    /// `related_to` edges created or strengthened.
    pub linked: usize,
    /// Whether every step finished, rather than stopping at its item cap or the time budget.
    pub complete: bool,
}
