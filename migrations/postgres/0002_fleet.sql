-- A fleet: several daemons on one database. A member runs a conversation only while it holds the
-- conversation's lease (`crates/spacebot-core/src/lease.rs`, `crates/spacebot-memory/src/fleet.rs`).
--
-- Times are Unix milliseconds of the database's own clock (`spacebot_now_ms()`), never of a
-- member's, so members whose clocks disagree still agree on when a lease expired.

CREATE FUNCTION spacebot_now_ms() RETURNS BIGINT
    LANGUAGE sql VOLATILE
    AS $$ SELECT (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT $$;

-- Every member that joined: where its API listens, and when it last renewed its leases.
CREATE TABLE fleet_members (
    member     TEXT   NOT NULL PRIMARY KEY,
    address    TEXT,
    started_at BIGINT NOT NULL,
    seen_at    BIGINT NOT NULL,
    -- Set when it shut down cleanly (and gave its leases back); NULL while it runs.
    left_at    BIGINT
);

-- One row per conversation that was ever run in the fleet: who holds it until when. A lease
-- changes hands only once it expired (`expires_at` in the past) or its holder gave it back.
CREATE TABLE leases (
    agent        TEXT   NOT NULL,
    conversation TEXT   NOT NULL,
    holder       TEXT   NOT NULL,
    -- When the current holder took it (renewals keep it).
    acquired_at  BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    PRIMARY KEY (agent, conversation)
);

CREATE INDEX leases_by_holder ON leases (holder, expires_at);

-- Each time a lease changed hands: who held which conversation from when, for audits (and the
-- fleet test, which checks no conversation was answered by two members at once).
CREATE TABLE lease_grants (
    seq          BIGSERIAL PRIMARY KEY,
    agent        TEXT   NOT NULL,
    conversation TEXT   NOT NULL,
    holder       TEXT   NOT NULL,
    granted_at   BIGINT NOT NULL
);

CREATE INDEX lease_grants_by_conversation ON lease_grants (agent, conversation, seq);

-- Platform connections a platform gives a bot once (a Discord gateway session, a Slack Socket
-- Mode app, a Telegram poller, a mailbox reader), by adapter name: who runs each until when.
CREATE TABLE connection_leases (
    adapter     TEXT   NOT NULL PRIMARY KEY,
    holder      TEXT   NOT NULL,
    acquired_at BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
