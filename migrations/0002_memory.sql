-- The memory graph: typed memories, their edges, a full-text index, embedding vectors and the
-- identity anchors that map platform ids to people.
--
-- Everything a memory owns lives in this file and is written in the same transaction as the
-- memory itself, so a save, merge, forget or prune can never leave a stale index or vector row:
--   * `memories_fts` is an external-content FTS5 index kept in step by triggers. It holds exactly
--     the live (not forgotten) memories.
--   * `memory_vectors` holds one vector per live memory and embedding model. Triggers delete a
--     memory's vectors when it is forgotten, deleted, or its content changes; the writer stores
--     the new vector in the same transaction.
--   * `memory_meta.generation` is bumped by every write transaction, so a process that keeps
--     vectors in memory can tell when another process changed the file.
--
-- Scope: `private = 0` is visible to every conversation of the agent. A private memory with a
-- `human` is visible only where that person takes part; with no `human`, only in its own
-- `conversation`. `scope_key` is the canonical form ('shared', 'human:<id>', 'conversation:<id>')
-- that idempotency and merges compare, so they never cross scopes.
--
-- Timestamps are INTEGER Unix milliseconds, as in 0001.

CREATE TABLE memories (
    -- Insertion order, and the rowid the FTS index refers to.
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT    NOT NULL UNIQUE,
    agent        TEXT    NOT NULL,
    kind         TEXT    NOT NULL CHECK (kind IN ('fact', 'preference', 'decision', 'identity', 'event',
                                                  'observation', 'goal', 'todo')),
    content      TEXT    NOT NULL CHECK (length(content) > 0),
    -- SHA-256 (hex) of the whitespace-normalised content: saves are idempotent on it.
    content_hash TEXT    NOT NULL,
    importance   REAL    NOT NULL CHECK (importance >= 0.0 AND importance <= 1.0),
    access_count INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    -- Set by writes that change content or importance (saves, merges); never by decay.
    updated_at   INTEGER NOT NULL,
    -- Set by recall; equal to created_at until the first recall.
    accessed_at  INTEGER NOT NULL,
    -- Up to when decay has been applied; decay reads and writes only this and `importance`.
    decayed_at   INTEGER NOT NULL,
    source       TEXT,
    conversation TEXT,
    human        TEXT,
    private      INTEGER NOT NULL CHECK (private IN (0, 1)),
    scope_key    TEXT    NOT NULL,
    -- Soft delete: when the memory was forgotten; NULL while it is live.
    forgotten_at INTEGER
) STRICT;

-- Idempotency: one live memory per content, type and scope.
CREATE UNIQUE INDEX memories_by_hash ON memories (agent, kind, scope_key, content_hash)
    WHERE forgotten_at IS NULL;
-- Renders and listings: the most important live memories of a type.
CREATE INDEX memories_by_importance ON memories (agent, kind, importance DESC, created_at, id)
    WHERE forgotten_at IS NULL;
CREATE INDEX memories_by_created ON memories (agent, created_at);
CREATE INDEX memories_by_human ON memories (agent, human) WHERE human IS NOT NULL;
-- Prune: forgotten rows, oldest first.
CREATE INDEX memories_forgotten ON memories (agent, forgotten_at) WHERE forgotten_at IS NOT NULL;

CREATE VIRTUAL TABLE memories_fts USING fts5 (
    content,
    content = 'memories',
    content_rowid = 'seq',
    tokenize = 'unicode61 remove_diacritics 2'
);

CREATE TRIGGER memories_fts_insert AFTER INSERT ON memories WHEN new.forgotten_at IS NULL
BEGIN
    INSERT INTO memories_fts (rowid, content) VALUES (new.seq, new.content);
END;

CREATE TRIGGER memories_fts_update AFTER UPDATE OF content, forgotten_at ON memories
BEGIN
    INSERT INTO memories_fts (memories_fts, rowid, content)
        SELECT 'delete', old.seq, old.content WHERE old.forgotten_at IS NULL;
    INSERT INTO memories_fts (rowid, content)
        SELECT new.seq, new.content WHERE new.forgotten_at IS NULL;
END;

CREATE TRIGGER memories_fts_delete AFTER DELETE ON memories WHEN old.forgotten_at IS NULL
BEGIN
    INSERT INTO memories_fts (memories_fts, rowid, content) VALUES ('delete', old.seq, old.content);
END;

CREATE TABLE memory_vectors (
    memory_seq INTEGER NOT NULL PRIMARY KEY REFERENCES memories (seq) ON DELETE CASCADE,
    -- The embedder's model id; vectors of another model are rebuilt by a reindex.
    model      TEXT    NOT NULL,
    -- Little-endian f32s, L2-normalised.
    vector     BLOB    NOT NULL
) STRICT;

CREATE TRIGGER memory_vectors_on_forget AFTER UPDATE OF forgotten_at ON memories
    WHEN new.forgotten_at IS NOT NULL
BEGIN
    DELETE FROM memory_vectors WHERE memory_seq = new.seq;
END;

CREATE TRIGGER memory_vectors_on_content AFTER UPDATE OF content ON memories
    WHEN new.content IS NOT old.content
BEGIN
    DELETE FROM memory_vectors WHERE memory_seq = new.seq;
END;

CREATE TRIGGER memory_vectors_on_delete AFTER DELETE ON memories
BEGIN
    DELETE FROM memory_vectors WHERE memory_seq = old.seq;
END;

-- Directed, weighted edges, unique per (source, target, kind).
CREATE TABLE memory_edges (
    source     TEXT    NOT NULL REFERENCES memories (id) ON DELETE CASCADE,
    target     TEXT    NOT NULL REFERENCES memories (id) ON DELETE CASCADE,
    kind       TEXT    NOT NULL CHECK (kind IN ('related_to', 'updates', 'contradicts', 'caused_by', 'part_of')),
    weight     REAL    NOT NULL CHECK (weight >= 0.0 AND weight <= 1.0),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (source, target, kind),
    CHECK (source <> target)
) STRICT, WITHOUT ROWID;

CREATE INDEX memory_edges_by_target ON memory_edges (target);

-- Deleting a memory deletes its edges even on a connection without foreign keys.
CREATE TRIGGER memory_edges_on_delete AFTER DELETE ON memories
BEGIN
    DELETE FROM memory_edges WHERE source = old.id OR target = old.id;
END;

-- Identity anchors: several platform ids of one person.
CREATE TABLE human_identities (
    agent       TEXT    NOT NULL,
    platform_id TEXT    NOT NULL,
    human       TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (agent, platform_id)
) STRICT;

CREATE INDEX human_identities_by_human ON human_identities (agent, human);

-- Small per-file state: the write generation, the embedding model in use, maintenance marks.
CREATE TABLE memory_meta (
    key   TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

INSERT INTO memory_meta (key, value) VALUES ('generation', '0');

-- File imports: which chunks of which file (by SHA-256 of its text) are already saved, so an
-- interrupted import resumes where it stopped. Written in the transaction that saves the chunk.
CREATE TABLE memory_imports (
    agent       TEXT    NOT NULL,
    file_hash   TEXT    NOT NULL,
    chunk_index INTEGER NOT NULL,
    memory_id   TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (agent, file_hash, chunk_index)
) STRICT;
