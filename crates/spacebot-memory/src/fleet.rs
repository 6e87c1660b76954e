//! [`PgLeases`]: the leases of a fleet of daemons sharing one PostgreSQL database (cargo feature
//! `postgres`), behind [`spacebot_core::Leases`].
//!
//! The tables are `fleet_members`, `leases` and `lease_grants` (`migrations/postgres/0002_fleet.sql`).
//! Every time is the database's clock (`spacebot_now_ms()`), so members on machines whose clocks
//! disagree still agree on when a lease expired. Taking a lease is one `INSERT .. ON CONFLICT DO
//! UPDATE .. WHERE` that succeeds only when the row is new, expired, or already this member's:
//! PostgreSQL locks the row it conflicts on and checks the condition against its latest version,
//! so of members racing for a lease exactly one gets it.
//!
//! A member is told of messages handed to it by `NOTIFY spacebot_fleet` with its name as the
//! payload; a task owned by the [`PgLeases`] (aborted when the last clone is dropped) listens on
//! one pooled connection. A notification that is lost costs only latency: the runtime looks at
//! the claimable messages every third of the lease time anyway.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::PgListener;
use sqlx::{PgPool, Row};
use tokio::sync::Notify;

use spacebot_core::{AgentId, Claim, ConversationId, FleetMember, FleetStatus, InboundMessage, Leases, StoreError};

use crate::conversation_log::InboundRow;
use crate::error::{permanent, store_error};
use crate::postgres::PgLog;

/// The channel members are told of messages on.
const CHANNEL: &str = "spacebot_fleet";

/// How many lease times a member may go unseen and still be listed as a member.
const LISTED_FOR: u32 = 3;

/// The leases of one member of a fleet on a PostgreSQL database (see the module docs).
///
/// Cloning is cheap; clones share the pool and the listener.
#[derive(Clone)]
pub struct PgLeases {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    member: String,
    lease: Duration,
    agents: Vec<String>,
    handed: Arc<Notify>,
    listener: tokio::task::AbortHandle,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl std::fmt::Debug for PgLeases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLeases")
            .field("member", &self.inner.member)
            .field("lease", &self.inner.lease)
            .finish_non_exhaustive()
    }
}

impl PgLeases {
    /// Joins the fleet on `log`'s database as `member`, announcing `address` (where its HTTP API
    /// listens, for `spacebot status`), running conversations of `agents` under leases of
    /// `lease`.
    ///
    /// # Errors
    ///
    /// When the database can't be reached, or another member of that name is alive (it renews
    /// its leases while this one waits half a lease time): two daemons of one name would take
    /// each other's leases for their own. A member of that name that stopped renewing (this
    /// daemon's previous run, killed) is taken over, its leases with it.
    pub async fn join(
        log: &PgLog,
        member: &str,
        address: Option<&str>,
        lease: Duration,
        agents: &[AgentId],
    ) -> Result<Self, StoreError> {
        let pool = log.pool.clone();
        let lease_ms = millis(lease);
        // A member of this name seen within the lease time is either this daemon's previous run,
        // killed, or another daemon given the same name. A live one renews every third of the
        // lease time, so after half of it, a name seen again is taken.
        let seen = || async {
            sqlx::query_scalar::<_, i64>(
                "SELECT seen_at FROM fleet_members
                 WHERE member = $1 AND left_at IS NULL AND seen_at > spacebot_now_ms() - $2",
            )
            .bind(member)
            .bind(lease_ms)
            .fetch_optional(&pool)
            .await
            .map_err(|error| store_error(format!("join the fleet as {member}"), error))
        };
        if let Some(before) = seen().await? {
            tracing::info!(
                member,
                "a member of this name was seen within the lease time; waiting to tell whether it still runs"
            );
            tokio::time::sleep(lease / 2).await;
            if seen().await?.is_some_and(|after| after != before) {
                return Err(permanent(
                    format!("join the fleet as {member}"),
                    "a running member already has that name; give each daemon its own `[fleet] member`",
                ));
            }
        }
        sqlx::query(
            "INSERT INTO fleet_members (member, address, started_at, seen_at)
             VALUES ($1, $2, spacebot_now_ms(), spacebot_now_ms())
             ON CONFLICT (member) DO UPDATE
             SET address = excluded.address, started_at = excluded.started_at, seen_at = excluded.seen_at,
                 left_at = NULL",
        )
        .bind(member)
        .bind(address)
        .execute(&pool)
        .await
        .map_err(|error| store_error(format!("join the fleet as {member}"), error))?;

        let mut listener = PgListener::connect_with(&pool)
            .await
            .map_err(|error| store_error("listen for messages handed over", error))?;
        listener.listen(CHANNEL).await.map_err(|error| store_error("listen for messages handed over", error))?;
        let handed = Arc::new(Notify::new());
        let listener = tokio::spawn(listen(listener, member.to_owned(), handed.clone())).abort_handle();
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                member: member.to_owned(),
                lease,
                agents: agents.iter().map(|agent| agent.as_str().to_owned()).collect(),
                handed,
                listener,
            }),
        })
    }
}

/// Wakes [`Leases::handed`] for each notification naming `member`, until the pool closes.
async fn listen(mut listener: PgListener, member: String, handed: Arc<Notify>) {
    loop {
        match listener.recv().await {
            Ok(notification) => {
                if notification.payload() == member {
                    handed.notify_one();
                }
            }
            Err(sqlx::Error::PoolClosed) => return,
            Err(error) => {
                // The listener reconnects on its next call; until then the periodic look serves.
                tracing::warn!(%error, "lost the connection that hears of messages handed over; reconnecting");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[async_trait]
impl Leases for PgLeases {
    fn member(&self) -> &str {
        &self.inner.member
    }

    fn lease_time(&self) -> Duration {
        self.inner.lease
    }

    async fn acquire(&self, agent: &AgentId, conversation: &ConversationId) -> Result<Claim, StoreError> {
        let inner = &self.inner;
        let fail = |error| store_error(format!("take the lease of {agent}/{conversation}"), error);
        let mut transaction = inner.pool.begin().await.map_err(fail)?;
        let now: i64 =
            sqlx::query_scalar("SELECT spacebot_now_ms()").fetch_one(&mut *transaction).await.map_err(fail)?;
        // Who held it before, locked until this transaction ends, so a grant is recorded exactly
        // when the lease changes hands (or is new), never for a renewal: the acquisition time
        // alone can't tell, since a renewal within the same millisecond carries the same one.
        let previous: Option<String> =
            sqlx::query_scalar("SELECT holder FROM leases WHERE agent = $1 AND conversation = $2 FOR UPDATE")
                .bind(agent.as_str())
                .bind(conversation.as_str())
                .fetch_optional(&mut *transaction)
                .await
                .map_err(fail)?;
        let taken: Option<i64> = sqlx::query_scalar(
            "INSERT INTO leases AS l (agent, conversation, holder, acquired_at, expires_at)
             VALUES ($1, $2, $3, $4, $4 + $5)
             ON CONFLICT (agent, conversation) DO UPDATE
             SET holder = excluded.holder,
                 acquired_at = CASE WHEN l.holder = excluded.holder THEN l.acquired_at ELSE excluded.acquired_at END,
                 expires_at = excluded.expires_at
             WHERE l.holder = excluded.holder OR l.expires_at <= excluded.acquired_at
             RETURNING acquired_at",
        )
        .bind(agent.as_str())
        .bind(conversation.as_str())
        .bind(&inner.member)
        .bind(now)
        .bind(millis(inner.lease))
        .fetch_optional(&mut *transaction)
        .await
        .map_err(fail)?;
        let claim = match taken {
            Some(_) => {
                if previous.as_deref() != Some(inner.member.as_str()) {
                    sqlx::query(
                        "INSERT INTO lease_grants (agent, conversation, holder, granted_at) VALUES ($1, $2, $3, $4)",
                    )
                    .bind(agent.as_str())
                    .bind(conversation.as_str())
                    .bind(&inner.member)
                    .bind(now)
                    .execute(&mut *transaction)
                    .await
                    .map_err(fail)?;
                }
                Claim::Held
            }
            None => {
                let holder: String =
                    sqlx::query_scalar("SELECT holder FROM leases WHERE agent = $1 AND conversation = $2")
                        .bind(agent.as_str())
                        .bind(conversation.as_str())
                        .fetch_one(&mut *transaction)
                        .await
                        .map_err(fail)?;
                Claim::HeldBy(holder)
            }
        };
        transaction.commit().await.map_err(fail)?;
        Ok(claim)
    }

    async fn renew(
        &self,
        conversations: &[(AgentId, ConversationId)],
    ) -> Result<Vec<(AgentId, ConversationId)>, StoreError> {
        let inner = &self.inner;
        let fail = |error| store_error("renew the leases", error);
        sqlx::query("UPDATE fleet_members SET seen_at = spacebot_now_ms() WHERE member = $1")
            .bind(&inner.member)
            .execute(&inner.pool)
            .await
            .map_err(fail)?;
        if conversations.is_empty() {
            return Ok(Vec::new());
        }
        let agents: Vec<&str> = conversations.iter().map(|(agent, _)| agent.as_str()).collect();
        let names: Vec<&str> = conversations.iter().map(|(_, conversation)| conversation.as_str()).collect();
        let renewed = sqlx::query(
            "UPDATE leases SET expires_at = spacebot_now_ms() + $2
             WHERE holder = $1
               AND (agent, conversation) IN (SELECT * FROM unnest($3::text[], $4::text[]))
             RETURNING agent, conversation",
        )
        .bind(&inner.member)
        .bind(millis(inner.lease))
        .bind(agents)
        .bind(names)
        .fetch_all(&inner.pool)
        .await
        .map_err(fail)?;
        let held: std::collections::HashSet<(String, String)> = renewed
            .iter()
            .map(|row| Ok((row.try_get::<String, _>(0)?, row.try_get::<String, _>(1)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(fail)?;
        Ok(conversations
            .iter()
            .filter(|(agent, conversation)| {
                !held.contains(&(agent.as_str().to_owned(), conversation.as_str().to_owned()))
            })
            .cloned()
            .collect())
    }

    async fn claimable(&self) -> Result<Vec<InboundMessage>, StoreError> {
        let inner = &self.inner;
        let rows: Vec<InboundRow> = sqlx::query_as(
            "SELECT m.seq, m.id, m.agent, m.inbound_json FROM messages m
             LEFT JOIN leases l ON l.agent = m.agent AND l.conversation = m.conversation
             WHERE m.inbound_json IS NOT NULL AND m.handled_at IS NULL
               AND m.agent = ANY($2)
               AND (l.holder IS NULL OR l.holder = $1 OR l.expires_at <= spacebot_now_ms())
             ORDER BY m.seq ASC",
        )
        .bind(&inner.member)
        .bind(&inner.agents)
        .fetch_all(&inner.pool)
        .await
        .map_err(|error| store_error("read the messages waiting for this member", error))?;
        // A row that no longer reads is marked handled by the log's own recovery; skipped here.
        Ok(rows.into_iter().filter_map(InboundRow::into_inbound).collect())
    }

    async fn hand_over(&self, agent: &AgentId, conversation: &ConversationId, holder: &str) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(holder)
            .execute(&self.inner.pool)
            .await
            .map_err(|error| store_error(format!("tell {holder} of a message of {agent}/{conversation}"), error))?;
        Ok(())
    }

    async fn handed(&self) {
        self.inner.handed.notified().await;
    }

    async fn acquire_connection(&self, adapter: &str) -> Result<Claim, StoreError> {
        let inner = &self.inner;
        let fail = |error| store_error(format!("take the lease of connection {adapter}"), error);
        let taken: Option<String> = sqlx::query_scalar(
            "INSERT INTO connection_leases AS l (adapter, holder, acquired_at, expires_at)
             VALUES ($1, $2, spacebot_now_ms(), spacebot_now_ms() + $3)
             ON CONFLICT (adapter) DO UPDATE
             SET holder = excluded.holder,
                 acquired_at = CASE WHEN l.holder = excluded.holder THEN l.acquired_at ELSE excluded.acquired_at END,
                 expires_at = excluded.expires_at
             WHERE l.holder = excluded.holder OR l.expires_at <= excluded.acquired_at
             RETURNING holder",
        )
        .bind(adapter)
        .bind(&inner.member)
        .bind(millis(inner.lease))
        .fetch_optional(&inner.pool)
        .await
        .map_err(fail)?;
        if taken.is_some() {
            return Ok(Claim::Held);
        }
        let holder: Option<String> = sqlx::query_scalar("SELECT holder FROM connection_leases WHERE adapter = $1")
            .bind(adapter)
            .fetch_optional(&inner.pool)
            .await
            .map_err(fail)?;
        // Given back between the two statements: free for the next try.
        Ok(Claim::HeldBy(holder.unwrap_or_default()))
    }

    async fn release_connection(&self, adapter: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM connection_leases WHERE adapter = $1 AND holder = $2")
            .bind(adapter)
            .bind(&self.inner.member)
            .execute(&self.inner.pool)
            .await
            .map_err(|error| store_error(format!("give back the lease of connection {adapter}"), error))?;
        Ok(())
    }

    async fn address(&self, member: &str) -> Result<Option<String>, StoreError> {
        let address: Option<Option<String>> = sqlx::query_scalar("SELECT address FROM fleet_members WHERE member = $1")
            .bind(member)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(|error| store_error(format!("read where member {member} is reached"), error))?;
        Ok(address.flatten())
    }

    async fn release_all(&self) -> Result<(), StoreError> {
        let inner = &self.inner;
        let fail = |error| store_error("give the leases back", error);
        let mut transaction = inner.pool.begin().await.map_err(fail)?;
        for statement in ["DELETE FROM leases WHERE holder = $1", "DELETE FROM connection_leases WHERE holder = $1"] {
            sqlx::query(statement).bind(&inner.member).execute(&mut *transaction).await.map_err(fail)?;
        }
        sqlx::query("UPDATE fleet_members SET left_at = spacebot_now_ms() WHERE member = $1")
            .bind(&inner.member)
            .execute(&mut *transaction)
            .await
            .map_err(fail)?;
        transaction.commit().await.map_err(fail)
    }

    async fn status(&self) -> Result<FleetStatus, StoreError> {
        let inner = &self.inner;
        let rows = sqlx::query(
            "SELECT f.member, f.address, spacebot_now_ms() - f.seen_at,
                    (SELECT count(*) FROM leases l WHERE l.holder = f.member AND l.expires_at > spacebot_now_ms()),
                    ARRAY(SELECT c.adapter FROM connection_leases c
                          WHERE c.holder = f.member AND c.expires_at > spacebot_now_ms() ORDER BY c.adapter)
             FROM fleet_members f
             WHERE f.left_at IS NULL AND f.seen_at > spacebot_now_ms() - $1
             ORDER BY f.member",
        )
        .bind(millis(inner.lease * LISTED_FOR))
        .fetch_all(&inner.pool)
        .await
        .map_err(|error| store_error("read the fleet's members", error))?;
        let members = rows
            .iter()
            .map(|row| {
                let seen_ms_ago: i64 = row.try_get(2)?;
                let conversations: i64 = row.try_get(3)?;
                Ok(FleetMember::new(
                    row.try_get::<String, _>(0)?,
                    row.try_get::<Option<String>, _>(1)?,
                    u64::try_from(seen_ms_ago).unwrap_or(0),
                    u64::try_from(conversations).unwrap_or(0),
                    row.try_get::<Vec<String>, _>(4)?,
                ))
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(|error| store_error("read the fleet's members", error))?;
        Ok(FleetStatus::new(inner.member.clone(), inner.lease, members))
    }
}
