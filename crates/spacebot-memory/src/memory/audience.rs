//! Who a read is for, resolved: the [`Visibility`] of a query with its participants mapped to
//! people through the identity anchors. The same rule is written twice, as SQL (authoritative:
//! every row a read returns passes it) and in Rust (to pre-filter the in-memory vector index,
//! so the vector stage is not starved by memories the reader may not see).

use std::collections::BTreeSet;

use sqlx::{QueryBuilder, Sqlite};

use spacebot_core::{AgentId, MemoryType, Visibility};

use crate::memory::vectors::Entry;

/// A resolved visibility.
#[derive(Debug, Clone)]
pub(crate) enum Audience {
    Shared,
    Conversation { conversation: String, humans: BTreeSet<String> },
    Operator,
}

/// A resolved read filter: agent, audience, kinds and period.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    pub(crate) agent: AgentId,
    pub(crate) audience: Audience,
    pub(crate) kinds: Vec<MemoryType>,
    pub(crate) since: Option<i64>,
    pub(crate) until: Option<i64>,
}

impl Filter {
    pub(crate) fn new(agent: AgentId, audience: Audience) -> Self {
        Self { agent, audience, kinds: Vec::new(), since: None, until: None }
    }

    /// Appends ` AND ...` conditions on the memories table aliased `m`: owned by the agent,
    /// visible to the audience, of the kinds and in the period asked for. Does not check
    /// `forgotten_at`; callers say whether they want live rows.
    pub(crate) fn push_sql(&self, query: &mut QueryBuilder<Sqlite>) {
        self.push_sql_for(query, true);
    }

    /// As [`push_sql`](Self::push_sql); with `by_agent` false, the agent condition is written so
    /// SQLite doesn't pick the agent index, for queries that already name the rows (by id or
    /// full-text match) and would otherwise scan every row of the agent.
    pub(crate) fn push_sql_for(&self, query: &mut QueryBuilder<Sqlite>, by_agent: bool) {
        query
            .push(if by_agent { " AND m.agent = " } else { " AND +m.agent = " })
            .push_bind(self.agent.as_str().to_owned());
        self.push_audience(query);
        if !self.kinds.is_empty() {
            let kinds: Vec<&str> = self.kinds.iter().map(|kind| kind.label()).collect();
            query
                .push(" AND m.kind IN (SELECT value FROM json_each(")
                .push_bind(serde_json::Value::from(kinds).to_string())
                .push("))");
        }
        if let Some(since) = self.since {
            query.push(" AND m.created_at >= ").push_bind(since);
        }
        if let Some(until) = self.until {
            query.push(" AND m.created_at < ").push_bind(until);
        }
    }

    /// Only the agent and audience conditions.
    pub(crate) fn push_audience(&self, query: &mut QueryBuilder<Sqlite>) {
        match &self.audience {
            Audience::Shared => {
                query.push(" AND m.private = 0");
            }
            Audience::Conversation { conversation, humans } => {
                let humans: Vec<&str> = humans.iter().map(String::as_str).collect();
                query
                    .push(" AND (m.private = 0 OR (m.human IS NULL AND m.conversation = ")
                    .push_bind(conversation.clone())
                    .push(") OR m.human IN (SELECT value FROM json_each(")
                    .push_bind(serde_json::Value::from(humans).to_string())
                    .push(")))");
            }
            Audience::Operator => {}
        }
    }

    /// The same rule as [`push_sql`](Self::push_sql), for an entry of the vector index.
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
        match &self.audience {
            Audience::Operator => true,
            Audience::Shared => !entry.private,
            Audience::Conversation { conversation, humans } => {
                !entry.private
                    || match &entry.human {
                        Some(human) => humans.contains(&**human),
                        None => entry.conversation.as_deref() == Some(conversation.as_str()),
                    }
            }
        }
    }
}

impl Audience {
    /// The audience for a visibility, given the people its participants map to.
    pub(crate) fn resolve(visibility: &Visibility, mapped: impl IntoIterator<Item = String>) -> Self {
        match visibility {
            Visibility::Shared => Self::Shared,
            Visibility::Operator => Self::Operator,
            Visibility::Conversation { conversation, participants } => {
                let mut humans: BTreeSet<String> = participants.iter().cloned().collect();
                humans.extend(mapped);
                Self::Conversation { conversation: conversation.as_str().to_owned(), humans }
            }
            // A visibility this version does not know: the narrowest reading.
            _ => Self::Shared,
        }
    }
}
