-- Process run outcomes: what a run's conversation is owed when it ends (its result to relay, or a
-- notice that a shutdown stopped it), kept until the conversation is told, so a crash or restart
-- in between still tells it once; and the id of the message whose turn started a run, so a turn
-- replayed after a crash finds the work it started before and does not start it again.

-- The result or notice text recorded with the end (kept after it is told).
ALTER TABLE process_runs ADD COLUMN result TEXT;
-- How the conversation is still owed `result`: NULL when nothing is (never, or told already).
ALTER TABLE process_runs ADD COLUMN owed TEXT CHECK (owed IS NULL OR owed IN ('result', 'notice'));
-- The id of the origin message (also inside origin_json), for started_for().
ALTER TABLE process_runs ADD COLUMN origin_id TEXT;

UPDATE process_runs SET origin_id = json_extract(origin_json, '$.id') WHERE origin_json IS NOT NULL;

-- owed(): the few ended runs still owed, read at start.
CREATE INDEX process_runs_owed ON process_runs (agent, conversation, started_at) WHERE owed IS NOT NULL;
-- started_for(): runs by the message that started them.
CREATE INDEX process_runs_origin ON process_runs (agent, origin_id) WHERE origin_id IS NOT NULL;
