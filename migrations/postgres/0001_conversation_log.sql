-- The conversation log on PostgreSQL (crates/spacebot-memory/src/postgres.rs): the tables the
-- SQLite migrations 0001, 0004, 0005, 0007, 0008, 0009 and 0010 build, as they stand after all of
-- them, in one step. The memory graph (0002, 0003, 0006) is not here.
--
-- Conventions, the SQLite log's (see ../0001_conversation_log.sql), so both stores run the same
-- statements and read rows into the same types:
--   * Integers are BIGINT, timestamps BIGINT milliseconds since the Unix epoch (UTC), flags
--     BIGINT 0 or 1.
--   * Keys that results are sorted by (ids, agents, days, models) compare byte by byte
--     (COLLATE "C"), as SQLite compares text, whatever the database's default collation.
--   * Order within a conversation is `messages.seq`, the recording order: numbers are taken in
--     commit order (writers take turns, see postgres.rs) and never reused, though a rolled back
--     or duplicate insert leaves a gap.

-- Every inbound message and every reply, per agent and conversation (SQLite 0001).
CREATE TABLE messages (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id           TEXT   NOT NULL,
    agent        TEXT   NOT NULL,
    conversation TEXT   NOT NULL,
    role         TEXT   NOT NULL CHECK (role IN ('user', 'assistant', 'system')),
    sender       TEXT   NOT NULL,
    text         TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    -- The serialized InboundMessage, for inbound messages only; NULL for replies.
    inbound_json TEXT,
    -- When an inbound message was answered or skipped; NULL while unhandled.
    handled_at   BIGINT,
    UNIQUE (agent, id)
);

CREATE INDEX messages_by_conversation ON messages (agent, conversation, seq);
CREATE INDEX messages_unhandled ON messages (seq) WHERE inbound_json IS NOT NULL AND handled_at IS NULL;

-- The chronicle: checkpoints summarising contiguous spans of a conversation (SQLite 0004).
CREATE TABLE checkpoints (
    agent           TEXT   NOT NULL,
    conversation    TEXT   NOT NULL,
    seq             BIGINT NOT NULL CHECK (seq >= 1),
    level           BIGINT NOT NULL CHECK (level IN (0, 1)),
    kind            TEXT   NOT NULL CHECK (kind IN ('interval', 'bootstrap', 'pressure', 'emergency', 'rollup')),
    title           TEXT   NOT NULL,
    summary         TEXT   NOT NULL,
    unsummarized    BIGINT NOT NULL DEFAULT 0 CHECK (unsummarized IN (0, 1)),
    covers_from_seq BIGINT NOT NULL,
    covers_to_seq   BIGINT NOT NULL,
    covers_from_at  BIGINT NOT NULL,
    covers_to_at    BIGINT NOT NULL,
    message_count   BIGINT NOT NULL CHECK (message_count >= 1),
    token_estimate  BIGINT NOT NULL,
    model           TEXT,
    rolled_up_into  BIGINT,
    rolls_up_from   BIGINT,
    rolls_up_to     BIGINT,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (agent, conversation, seq),
    CHECK (covers_from_seq <= covers_to_seq),
    CHECK ((level = 0) = (rolls_up_from IS NULL) AND (rolls_up_from IS NULL) = (rolls_up_to IS NULL)),
    UNIQUE (agent, conversation, level, covers_to_seq),
    UNIQUE (agent, conversation, level, covers_from_seq)
);

CREATE INDEX checkpoints_unrolled ON checkpoints (agent, conversation, seq)
    WHERE level = 0 AND rolled_up_into IS NULL;

-- Branch, worker and compactor runs, and what their conversation is still owed (SQLite 0005, 0007).
CREATE TABLE process_runs (
    id           TEXT   COLLATE "C" PRIMARY KEY,
    agent        TEXT   NOT NULL,
    conversation TEXT   NOT NULL,
    kind         TEXT   NOT NULL CHECK (kind IN ('channel', 'branch', 'worker', 'compactor')),
    description  TEXT   NOT NULL,
    origin_json  TEXT,
    started_at   BIGINT NOT NULL,
    state        TEXT   CHECK (state IS NULL OR state IN ('done', 'failed', 'cancelled', 'timed_out')),
    ended_at     BIGINT,
    result       TEXT,
    owed         TEXT   CHECK (owed IS NULL OR owed IN ('result', 'notice')),
    origin_id    TEXT
);

CREATE INDEX process_runs_unfinished ON process_runs (started_at) WHERE state IS NULL;
CREATE INDEX process_runs_owed ON process_runs (agent, conversation, started_at) WHERE owed IS NOT NULL;
CREATE INDEX process_runs_origin ON process_runs (agent, origin_id) WHERE origin_id IS NOT NULL;

-- Token usage per day (`YYYY-MM-DD`), agent, model and process kind (SQLite 0008).
CREATE TABLE model_usage (
    day           TEXT   COLLATE "C" NOT NULL,
    agent         TEXT   COLLATE "C" NOT NULL,
    model         TEXT   COLLATE "C" NOT NULL,
    process       TEXT   COLLATE "C" NOT NULL,
    requests      BIGINT NOT NULL DEFAULT 0,
    input_tokens  BIGINT NOT NULL DEFAULT 0,
    output_tokens BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (day, agent, model, process)
);

-- Settings kept per conversation, such as its response mode (SQLite 0009).
CREATE TABLE conversation_settings (
    agent        TEXT   NOT NULL,
    conversation TEXT   NOT NULL,
    key          TEXT   NOT NULL,
    value        TEXT   NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (agent, conversation, key)
);

-- Cron jobs and their runs (SQLite 0010).
CREATE TABLE cron_jobs (
    agent                TEXT   COLLATE "C" NOT NULL,
    id                   TEXT   COLLATE "C" NOT NULL,
    spec                 TEXT   NOT NULL,
    enabled              BIGINT NOT NULL DEFAULT 1,
    next_run             BIGINT,
    consecutive_failures BIGINT NOT NULL DEFAULT 0,
    updated_at           BIGINT NOT NULL,
    PRIMARY KEY (agent, id)
);

CREATE TABLE cron_runs (
    id           TEXT   COLLATE "C" PRIMARY KEY,
    agent        TEXT   NOT NULL,
    job          TEXT   NOT NULL,
    conversation TEXT   NOT NULL,
    started_at   BIGINT NOT NULL,
    finished_at  BIGINT,
    outcome      TEXT,
    delivery     TEXT
);

CREATE INDEX cron_runs_by_job ON cron_runs (agent, job, started_at);
CREATE INDEX cron_runs_unfinished ON cron_runs (finished_at) WHERE finished_at IS NULL;
