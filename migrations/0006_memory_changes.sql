-- A log of which memories changed, so a process that keeps the in-memory copies (vectors and
-- words, see crates/spacebot-memory/src/memory/indexes.rs) and sees another process's writes (a
-- new `memory_meta.generation`) re-reads only the memories that changed instead of every row.
--
-- Triggers append the memory's `seq` in the writing transaction whenever something the copies
-- hold changes: a memory inserted, deleted, forgotten, moved to another scope or type, or its
-- vector written or removed. Ids only grow (AUTOINCREMENT), so "changes after id N" is exact.
-- Maintenance trims old entries; a reader that finds the entries it needs trimmed reloads
-- everything.

CREATE TABLE memory_changes (
    id  INTEGER PRIMARY KEY AUTOINCREMENT,
    seq INTEGER NOT NULL
);

CREATE TRIGGER memory_changes_on_insert AFTER INSERT ON memories
BEGIN
    INSERT INTO memory_changes (seq) VALUES (new.seq);
END;

CREATE TRIGGER memory_changes_on_update
    AFTER UPDATE OF agent, kind, content, created_at, conversation, human, private, scope_key, forgotten_at ON memories
BEGIN
    INSERT INTO memory_changes (seq) VALUES (new.seq);
END;

CREATE TRIGGER memory_changes_on_delete AFTER DELETE ON memories
BEGIN
    INSERT INTO memory_changes (seq) VALUES (old.seq);
END;

CREATE TRIGGER memory_changes_on_vector_insert AFTER INSERT ON memory_vectors
BEGIN
    INSERT INTO memory_changes (seq) VALUES (new.memory_seq);
END;

CREATE TRIGGER memory_changes_on_vector_update AFTER UPDATE ON memory_vectors
BEGIN
    INSERT INTO memory_changes (seq) VALUES (new.memory_seq);
END;

CREATE TRIGGER memory_changes_on_vector_delete AFTER DELETE ON memory_vectors
BEGIN
    INSERT INTO memory_changes (seq) VALUES (old.memory_seq);
END;
