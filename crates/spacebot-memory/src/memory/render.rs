//! The knowledge render: a deterministic summary of the most important memories per type, for
//! a conversation's system prompt. No model call, no write (rendering records no access), and
//! the same store state always renders the same bytes: entries are ordered by importance, then
//! creation time, then id, and show the creation date, which no maintenance step rewrites.
//!
//! A conversation renders before every turn, mostly from a memory that did not change since its
//! last turn, so recent renders are kept with the write generation they were made at
//! ([`RenderCache`]): while the generation stands (every write that changes what a render shows
//! bumps it, in this process or another), the render is the kept one, for one read of the
//! generation instead of a statement per type.

use std::collections::{HashMap, VecDeque};

use sqlx::QueryBuilder;

use spacebot_core::{KnowledgeQuery, MemoryType, StoreError};

use crate::error::store_error;
use crate::memory::MemoryGraph;
use crate::memory::db::on_db;
use crate::memory::rows::{COLUMNS, MemoryRow, from_millis};

/// The longest entry line, in characters, before it is cut with an ellipsis.
const MAX_ENTRY_CHARS: usize = 200;

/// The render's first line.
pub(crate) const HEADING: &str = "## What I remember\n";

/// One entry line: the first non-empty line of the content, cut to length, the person it is
/// private to, and the day it was saved.
fn entry_line(row: &MemoryRow) -> String {
    let first = row.content.lines().map(str::trim).find(|line| !line.is_empty()).unwrap_or_default();
    let mut text: String = first.chars().take(MAX_ENTRY_CHARS).collect();
    if first.chars().count() > MAX_ENTRY_CHARS || row.content.trim() != first {
        text.push('…');
    }
    let person = match (&row.human, row.private) {
        (Some(human), 1) => format!("[{human}] "),
        _ => String::new(),
    };
    format!("- {person}{text} ({})\n", from_millis(row.created_at).format("%Y-%m-%d"))
}

/// How many renders are kept: one per conversation that had a recent turn.
const CACHED_RENDERS: usize = 32;

/// Recent renders, each with the query and the write generation it was made at; the oldest goes
/// first when it is full.
#[derive(Debug, Default)]
pub(crate) struct RenderCache {
    renders: VecDeque<(KnowledgeQuery, i64, String)>,
}

impl RenderCache {
    fn get(&self, query: &KnowledgeQuery, generation: i64) -> Option<String> {
        self.renders
            .iter()
            .find(|(kept, at, _)| *at == generation && kept == query)
            .map(|(_, _, render)| render.clone())
    }

    fn put(&mut self, query: KnowledgeQuery, generation: i64, render: String) {
        self.renders.retain(|(kept, _, _)| *kept != query);
        if self.renders.len() == CACHED_RENDERS {
            self.renders.pop_front();
        }
        self.renders.push_back((query, generation, render));
    }
}

fn section_header(kind: MemoryType, shown: usize, total: usize) -> String {
    format!("\n### {} ({shown} of {total})\n", kind.plural())
}

impl MemoryGraph {
    pub(crate) async fn render(&self, query: KnowledgeQuery) -> Result<String, StoreError> {
        // Read before rendering: a write committed meanwhile makes the kept render look older
        // than it is, never newer.
        let generation =
            self.db.read_stamp().await.map_err(|error| store_error("read the memory generation", error))?.generation;
        if let Some(kept) = self.lock_renders().get(&query, generation) {
            return Ok(kept);
        }
        let render = self.render_now(&query).await?;
        self.lock_renders().put(query, generation, render.clone());
        Ok(render)
    }

    fn lock_renders(&self) -> std::sync::MutexGuard<'_, RenderCache> {
        // A kept render is whole or absent: a panic elsewhere can't leave half of one.
        self.renders.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn render_now(&self, query: &KnowledgeQuery) -> Result<String, StoreError> {
        let filter = self.filter(&query.agent, &query.visibility).await?;
        // Live memories per type, from the counts the write triggers keep per visibility class
        // (migration 0003): the same audience rule, over a few rows instead of every memory.
        // (SUM of a BIGINT is a NUMERIC on PostgreSQL, hence the cast.)
        let counts: Vec<(String, i64)> = on_db!(&self.db, |pool, Database| {
            let mut counts = QueryBuilder::<Database>::new(
                "SELECT m.kind, CAST(SUM(m.live) AS BIGINT) FROM memory_counts m WHERE m.agent = ",
            );
            counts.push_bind(filter.agent.as_str());
            filter.push_audience(&mut counts);
            counts.push(" GROUP BY m.kind");
            counts.build_query_as().fetch_all(pool).await
        })
        .map_err(|error| store_error("count memories for the render", error))?;
        let counts: HashMap<String, usize> =
            counts.into_iter().map(|(kind, count)| (kind, usize::try_from(count).unwrap_or(0))).collect();
        if counts.values().all(|count| *count == 0) || query.per_type == 0 {
            return Ok(String::new());
        }

        // One query per type, each walking the (agent, kind, importance) index from the top.
        let mut by_kind: HashMap<&'static str, Vec<MemoryRow>> = HashMap::new();
        for kind in MemoryType::ALL {
            if counts.get(kind.label()).copied().unwrap_or(0) == 0 {
                continue;
            }
            let rows: Vec<MemoryRow> = on_db!(&self.db, |pool, Database| {
                let mut top = QueryBuilder::<Database>::new(format!(
                    "SELECT {COLUMNS} FROM memories m WHERE m.forgotten_at IS NULL AND m.kind = "
                ));
                top.push_bind(kind.label());
                filter.push_sql(&mut top);
                top.push(" ORDER BY m.importance DESC, m.created_at, m.id LIMIT ")
                    .push_bind(i64::try_from(query.per_type).unwrap_or(i64::MAX));
                top.build_query_as().fetch_all(pool).await
            })
            .map_err(|error| store_error("read memories for the render", error))?;
            by_kind.insert(kind.label(), rows);
        }

        let mut out = String::from(HEADING);
        if out.len() > query.max_chars {
            return Ok(String::new());
        }
        for kind in MemoryType::ALL {
            let total = counts.get(kind.label()).copied().unwrap_or(0);
            let Some(rows) = by_kind.get(kind.label()) else { continue };
            let lines: Vec<String> = rows.iter().map(entry_line).collect();
            // As many lines as fit with their header; a section never appears empty.
            let mut shown = 0;
            let mut body_len = 0;
            while shown < lines.len() {
                let next = body_len + lines[shown].len();
                if out.len() + section_header(kind, shown + 1, total).len() + next > query.max_chars {
                    break;
                }
                body_len = next;
                shown += 1;
            }
            if shown == 0 {
                break;
            }
            out.push_str(&section_header(kind, shown, total));
            for line in &lines[..shown] {
                out.push_str(line);
            }
            if shown < lines.len() {
                // Out of budget: later sections would be partial views of less important types.
                break;
            }
        }
        if out == HEADING {
            return Ok(String::new());
        }
        Ok(out)
    }
}
