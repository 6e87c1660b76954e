//! A read filter: the agent, the audience (the [`Visibility`] of a query with its participants'
//! people, found through the identity anchors, added), kinds and period.
//!
//! The privacy rule is core's [`Visibility::admits`]. The in-memory index stages call it to
//! pre-filter (so the vector stage is not starved by memories the reader may not see); the SQL
//! here states the same rule for the database and is authoritative: every row a read returns
//! passes it. A test (`tests/it/memory_visibility.rs`) checks the two agree over generated
//! scopes and visibilities.

use sqlx::QueryBuilder;

use spacebot_core::{AgentId, MemoryType, ScopeView, Visibility};

use crate::memory::db::Dialect;
use crate::memory::vectors::Entry;

/// A resolved read filter: agent, audience, kinds and period.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    pub(crate) agent: AgentId,
    /// The query's visibility with the people its participants map to added
    /// ([`Visibility::with_participants`]).
    pub(crate) audience: Visibility,
    pub(crate) kinds: Vec<MemoryType>,
    pub(crate) since: Option<i64>,
    pub(crate) until: Option<i64>,
}

impl Filter {
    pub(crate) fn new(agent: AgentId, audience: Visibility) -> Self {
        Self { agent, audience, kinds: Vec::new(), since: None, until: None }
    }

    /// Appends ` AND ...` conditions on the memories table aliased `m`: owned by the agent,
    /// visible to the audience, of the kinds and in the period asked for. Does not check
    /// `forgotten_at`; callers say whether they want live rows.
    pub(crate) fn push_sql<DB: Dialect>(&self, query: &mut QueryBuilder<DB>) {
        self.push_sql_for(query, true);
    }

    /// As [`push_sql`](Self::push_sql); with `by_agent` false, the agent condition is written so
    /// SQLite doesn't pick the agent index, for queries that already name the rows (by id or
    /// full-text match) and would otherwise scan every row of the agent.
    pub(crate) fn push_sql_for<DB: Dialect>(&self, query: &mut QueryBuilder<DB>, by_agent: bool) {
        query.push(" AND ").push(if by_agent { "m.agent" } else { DB::AGENT_NOT_INDEXED }).push(" = ");
        DB::push_text(query, self.agent.as_str().to_owned());
        self.push_audience(query);
        if !self.kinds.is_empty() {
            let kinds: Vec<&str> = self.kinds.iter().map(|kind| kind.label()).collect();
            query.push(" AND m.kind IN (SELECT value FROM json_each(");
            DB::push_text(query, serde_json::Value::from(kinds).to_string());
            query.push("))");
        }
        if let Some(since) = self.since {
            query.push(" AND m.created_at >= ");
            DB::push_int(query, since);
        }
        if let Some(until) = self.until {
            query.push(" AND m.created_at < ");
            DB::push_int(query, until);
        }
    }

    /// Only the audience condition: [`Visibility::admits`] in SQL.
    pub(crate) fn push_audience<DB: Dialect>(&self, query: &mut QueryBuilder<DB>) {
        match &self.audience {
            Visibility::Operator => {}
            Visibility::Conversation { conversation, participants } => {
                query.push(" AND (m.private = 0 OR (m.human IS NULL AND m.conversation = ");
                DB::push_text(query, conversation.as_str().to_owned());
                query.push(") OR m.human IN (SELECT value FROM json_each(");
                DB::push_text(query, serde_json::Value::from(participants.clone()).to_string());
                query.push(")))");
            }
            // Shared, and a visibility this version does not know: the narrowest reading.
            _ => {
                query.push(" AND m.private = 0");
            }
        }
    }

    /// The same conditions as [`push_sql`](Self::push_sql), for an entry of the in-memory index.
    pub(crate) fn admits(&self, entry: &Entry) -> bool {
        if *entry.agent != *self.agent.as_str() {
            return false;
        }
        if !self.kinds.is_empty() && !self.kinds.contains(&entry.kind) {
            return false;
        }
        if self.since.is_some_and(|since| entry.created_at < since)
            || self.until.is_some_and(|until| entry.created_at >= until)
        {
            return false;
        }
        self.audience.admits(ScopeView::new(entry.private, entry.human.as_deref(), entry.conversation.as_deref()))
    }
}
