-- Live memories counted per agent, type and scope, for the knowledge render's "8 of 31"
-- headers: summing a handful of rows here replaces counting every visible memory.
--
-- The columns the render's visibility filter reads (`private`, `human`, `conversation`) are
-- kept only where they matter, so one row stands for one visibility class: `human` only for a
-- private memory, `conversation` only for a private memory with no person. A shared memory is
-- visible whatever its person or conversation.
--
-- Triggers keep the counts in the same transaction as the write that changes them (save, merge,
-- forget, prune, an identity link moving memories to a person), so they can't drift.

CREATE TABLE memory_counts (
    agent        TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    -- 'shared', 'human:<id>' or 'conversation:<id>', from the columns below.
    class        TEXT    NOT NULL,
    private      INTEGER NOT NULL,
    human        TEXT,
    conversation TEXT,
    live         INTEGER NOT NULL,
    PRIMARY KEY (agent, kind, class)
) STRICT, WITHOUT ROWID;

CREATE TRIGGER memory_counts_insert AFTER INSERT ON memories WHEN new.forgotten_at IS NULL
BEGIN
    INSERT INTO memory_counts (agent, kind, class, private, human, conversation, live)
    VALUES (new.agent, new.kind,
            CASE WHEN new.private = 0 THEN 'shared'
                 WHEN new.human IS NOT NULL THEN 'human:' || new.human
                 ELSE 'conversation:' || IFNULL(new.conversation, '') END,
            new.private,
            CASE WHEN new.private = 1 THEN new.human END,
            CASE WHEN new.private = 1 AND new.human IS NULL THEN new.conversation END,
            1)
    ON CONFLICT (agent, kind, class) DO UPDATE SET live = live + 1;
END;

CREATE TRIGGER memory_counts_delete AFTER DELETE ON memories WHEN old.forgotten_at IS NULL
BEGIN
    UPDATE memory_counts SET live = live - 1
     WHERE agent = old.agent AND kind = old.kind
       AND class = CASE WHEN old.private = 0 THEN 'shared'
                        WHEN old.human IS NOT NULL THEN 'human:' || old.human
                        ELSE 'conversation:' || IFNULL(old.conversation, '') END;
END;

CREATE TRIGGER memory_counts_update
AFTER UPDATE OF agent, kind, private, human, conversation, forgotten_at ON memories
WHEN old.forgotten_at IS NULL OR new.forgotten_at IS NULL
BEGIN
    UPDATE memory_counts SET live = live - 1
     WHERE old.forgotten_at IS NULL AND agent = old.agent AND kind = old.kind
       AND class = CASE WHEN old.private = 0 THEN 'shared'
                        WHEN old.human IS NOT NULL THEN 'human:' || old.human
                        ELSE 'conversation:' || IFNULL(old.conversation, '') END;
    INSERT INTO memory_counts (agent, kind, class, private, human, conversation, live)
    SELECT new.agent, new.kind,
           CASE WHEN new.private = 0 THEN 'shared'
                WHEN new.human IS NOT NULL THEN 'human:' || new.human
                ELSE 'conversation:' || IFNULL(new.conversation, '') END,
           new.private,
           CASE WHEN new.private = 1 THEN new.human END,
           CASE WHEN new.private = 1 AND new.human IS NULL THEN new.conversation END,
           1
     WHERE new.forgotten_at IS NULL
    ON CONFLICT (agent, kind, class) DO UPDATE SET live = live + 1;
END;

-- Files migrated before this table existed.
INSERT INTO memory_counts (agent, kind, class, private, human, conversation, live)
SELECT agent, kind,
       CASE WHEN private = 0 THEN 'shared'
            WHEN human IS NOT NULL THEN 'human:' || human
            ELSE 'conversation:' || IFNULL(conversation, '') END AS class,
       MAX(private),
       CASE WHEN MAX(private) = 1 THEN MAX(human) END,
       CASE WHEN MAX(private) = 1 AND MAX(human) IS NULL THEN MAX(conversation) END,
       COUNT(*)
  FROM memories
 WHERE forgotten_at IS NULL
 GROUP BY agent, kind, class;
