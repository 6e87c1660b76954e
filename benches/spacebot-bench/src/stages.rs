//! Per-stage timing for the memory benchmark: a `tracing` layer that adds up, per span name, the
//! wall time from a span's creation to its close.
//!
//! `spacebot-memory` wraps the stages of a recall (`recall.text`, `recall.vectors`, ...) and of a
//! save (`save.embed`, `save.insert`, ...) in `trace`-level spans and knows nothing of this
//! layer. The layer's filter enables only those spans, so other crates' events (sqlx logs every
//! statement at debug level) stay disabled and cost nothing. Wall time, not time entered: an
//! async stage spends most of its time waiting for SQLite's worker thread, which is the cost.
//! Creating and closing a span costs about a microsecond here, against milliseconds per recall.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tracing::span::{Attributes, Id};
use tracing::{Metadata, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// Total time and count per span name.
#[derive(Debug, Default, Clone)]
pub(crate) struct Totals(BTreeMap<&'static str, (Duration, u64)>);

impl Totals {
    /// Mean time per operation of each stage whose name starts with `prefix`, best first by
    /// name order as given, as `(name, mean per op, calls per op)`.
    pub(crate) fn per_op(&self, prefix: &str, ops: usize) -> Vec<(&'static str, Duration, f64)> {
        let ops = ops.max(1);
        self.0
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(name, (total, count))| (*name, *total / ops as u32, *count as f64 / ops as f64))
            .collect()
    }
}

/// The shared totals the layer writes and the benchmark reads.
#[derive(Debug, Clone, Default)]
pub(crate) struct Stages(Arc<Mutex<Totals>>);

impl Stages {
    /// Installs the layer as the global subscriber and returns its totals.
    pub(crate) fn install() -> anyhow::Result<Self> {
        let stages = Self::default();
        let layer = StageLayer(stages.clone()).with_filter(tracing_subscriber::filter::filter_fn(is_stage));
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))?;
        Ok(stages)
    }

    /// The totals so far, leaving them at zero.
    pub(crate) fn take(&self) -> Totals {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

fn is_stage(metadata: &Metadata<'_>) -> bool {
    metadata.is_span() && metadata.target().starts_with("spacebot_memory")
}

struct StageLayer(Stages);

/// When a span was created, kept in its extensions.
struct Started(Instant);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for StageLayer {
    fn on_new_span(&self, _attributes: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Started(Instant::now()));
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(elapsed) = span.extensions().get::<Started>().map(|started| started.0.elapsed()) else { return };
        let mut totals = self.0.0.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = totals.0.entry(span.metadata().name()).or_default();
        slot.0 += elapsed;
        slot.1 += 1;
    }
}
