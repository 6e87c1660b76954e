-- Process runs: each branch, worker and compactor run of a conversation, recorded when it starts
-- and when it ends, so a run a crash cut short is found (no `state`) and settled at the next
-- start, and its conversation told. Conventions as in 0001 (INTEGER ms timestamps).

CREATE TABLE process_runs (
    -- The process id (a UUIDv7).
    id            TEXT    PRIMARY KEY NOT NULL,
    agent         TEXT    NOT NULL,
    conversation  TEXT    NOT NULL,
    kind          TEXT    NOT NULL CHECK (kind IN ('channel', 'branch', 'worker', 'compactor')),
    -- Its task or description.
    description   TEXT    NOT NULL,
    -- The serialized InboundMessage whose turn started it, to answer in that context; NULL for
    -- runs no message started (compactor runs).
    origin_json   TEXT,
    started_at    INTEGER NOT NULL,
    -- How it ended (`done`, `failed`, `cancelled`, `timed_out`); NULL while it runs. Set once:
    -- the update that records an end only touches a row that has none.
    state         TEXT    CHECK (state IS NULL OR state IN ('done', 'failed', 'cancelled', 'timed_out')),
    ended_at      INTEGER
) STRICT;

-- unfinished(): the few runs without an end, read at start.
CREATE INDEX process_runs_unfinished ON process_runs (started_at) WHERE state IS NULL;
