-- The conversation log: every inbound message and every reply, per agent and conversation.
--
-- Conventions (shared by later migrations):
--   * Timestamps are INTEGER milliseconds since the Unix epoch, UTC. They sort numerically and
--     compare without parsing.
--   * Order within a conversation is `seq`, the order messages were recorded, never a timestamp:
--     platform clocks disagree, the log's own order does not.
--
-- An inbound (user) message keeps its full serialized `InboundMessage` in `inbound_json` so that a
-- crash between recording it and answering it loses nothing: on restart the runtime reads every
-- row with `inbound_json IS NOT NULL AND handled_at IS NULL` and processes it again. Replies,
-- skips and visible errors set `handled_at` on the messages they answer, in the same transaction
-- that records the reply, so a recorded reply is never sent twice.

CREATE TABLE messages (
    -- Recording order; AUTOINCREMENT so a number is never reused, even after deletes.
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The message id (UUIDv7 for generated ids, the platform's id for some adapters).
    id           TEXT    NOT NULL,
    agent        TEXT    NOT NULL,
    conversation TEXT    NOT NULL,
    role         TEXT    NOT NULL CHECK (role IN ('user', 'assistant', 'system')),
    -- The sender's label: the person's display name, or the agent id.
    sender       TEXT    NOT NULL,
    -- The text a model sees for the message.
    text         TEXT    NOT NULL,
    -- When the message was written (inbound: when the platform received it), Unix milliseconds.
    created_at   INTEGER NOT NULL,
    -- The serialized InboundMessage, for inbound messages only; NULL for replies.
    inbound_json TEXT,
    -- When an inbound message was answered or skipped, Unix milliseconds; NULL while unhandled.
    handled_at   INTEGER,
    -- Idempotency: a redelivered platform event is recorded once per agent.
    UNIQUE (agent, id)
) STRICT;

-- history(): the last N messages of one conversation.
CREATE INDEX messages_by_conversation ON messages (agent, conversation, seq);

-- unhandled(): recovery at start reads only the few rows still waiting for an answer.
CREATE INDEX messages_unhandled ON messages (seq)
    WHERE inbound_json IS NOT NULL AND handled_at IS NULL;
