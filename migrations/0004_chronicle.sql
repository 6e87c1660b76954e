-- The chronicle: durable checkpoints that summarise a conversation's log in contiguous spans, so a
-- long session keeps a navigable record of itself while its live context stays small.
--
-- A level-0 checkpoint covers a span of the conversation's `messages` (by `messages.seq`,
-- inclusive at both ends). Level-0 spans of one conversation are gap-free and never overlap: the
-- store commits a new one only when its `covers_from_seq` is the first message of the
-- conversation after the previous one's `covers_to_seq` (a compare-and-set inside the write
-- transaction); the unique constraints below make a racing duplicate fail loudly. A level-1
-- checkpoint (a rollup) summarises a run of consecutive level-0 checkpoints, named by their
-- checkpoint numbers in `rolls_up_from`/`rolls_up_to`; each source then points at it through
-- `rolled_up_into`. Rows are never deleted or rewritten apart from that pointer.
--
-- Timestamps are INTEGER Unix milliseconds, as in 0001. Note that `messages.seq` counts over the
-- whole file, so a conversation's messages have increasing but not consecutive numbers.

CREATE TABLE checkpoints (
    agent           TEXT    NOT NULL,
    conversation    TEXT    NOT NULL,
    -- The checkpoint's number within its conversation: 1, 2, 3, ... over both levels.
    seq             INTEGER NOT NULL CHECK (seq >= 1),
    -- 0: the summary of a span of messages; 1: a rollup of level-0 checkpoints.
    level           INTEGER NOT NULL CHECK (level IN (0, 1)),
    kind            TEXT    NOT NULL CHECK (kind IN ('interval', 'bootstrap', 'pressure', 'emergency', 'rollup')),
    title           TEXT    NOT NULL,
    summary         TEXT    NOT NULL,
    -- 1 when the summary is a notice that the span could not be summarised (an emergency cut, a
    -- failed summary call): the messages are in the log, readable through the chronicle tool.
    unsummarized    INTEGER NOT NULL DEFAULT 0 CHECK (unsummarized IN (0, 1)),
    -- The span covered, as `messages.seq` (inclusive) and the creation times of its ends.
    covers_from_seq INTEGER NOT NULL,
    covers_to_seq   INTEGER NOT NULL,
    covers_from_at  INTEGER NOT NULL,
    covers_to_at    INTEGER NOT NULL,
    message_count   INTEGER NOT NULL CHECK (message_count >= 1),
    -- Estimated tokens of `summary` (four bytes per token).
    token_estimate  INTEGER NOT NULL,
    -- The model that wrote the summary; NULL when none did.
    model           TEXT,
    -- Level 0: the rollup that summarises this checkpoint, once one does.
    rolled_up_into  INTEGER,
    -- Level 1: the first and last checkpoint numbers it summarises.
    rolls_up_from   INTEGER,
    rolls_up_to     INTEGER,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (agent, conversation, seq),
    CHECK (covers_from_seq <= covers_to_seq),
    CHECK ((level = 0) = (rolls_up_from IS NULL) AND (rolls_up_from IS NULL) = (rolls_up_to IS NULL)),
    -- No two checkpoints of one level end, or start, at the same message.
    UNIQUE (agent, conversation, level, covers_to_seq),
    UNIQUE (agent, conversation, level, covers_from_seq)
) STRICT;

-- Rollup planning: the level-0 checkpoints no rollup covers yet, oldest first.
CREATE INDEX checkpoints_unrolled ON checkpoints (agent, conversation, seq)
    WHERE level = 0 AND rolled_up_into IS NULL;
