-- Token usage per day (UTC, `YYYY-MM-DD`), agent, model and process kind: every model call adds
-- its counts to its row (crates/spacebot-memory/src/usage.rs), so `GET /api/usage` and
-- `spacebot usage` report what the agents spent across restarts.

CREATE TABLE model_usage (
    day           TEXT    NOT NULL,
    agent         TEXT    NOT NULL,
    model         TEXT    NOT NULL,
    process       TEXT    NOT NULL,
    requests      INTEGER NOT NULL DEFAULT 0,
    input_tokens  INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, agent, model, process)
);
