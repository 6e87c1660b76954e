-- Cron jobs and their runs (crates/spacebot-memory/src/cron.rs), run by the cortex's scheduler.
-- A job's definition is kept as JSON (`spec`); its scheduler state (enabled, next run, failures
-- since the last success) in columns, so a run is claimed by a compare-and-set on `next_run`
-- before it starts: a restart neither repeats nor skips a run, and a run-once job fires at most
-- once. Every run is recorded when it starts and again when it ends.

CREATE TABLE cron_jobs (
    agent                TEXT    NOT NULL,
    id                   TEXT    NOT NULL,
    spec                 TEXT    NOT NULL,
    enabled              INTEGER NOT NULL DEFAULT 1,
    next_run             INTEGER,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    updated_at           INTEGER NOT NULL,
    PRIMARY KEY (agent, id)
);

CREATE TABLE cron_runs (
    id           TEXT    PRIMARY KEY,
    agent        TEXT    NOT NULL,
    job          TEXT    NOT NULL,
    conversation TEXT    NOT NULL,
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER,
    outcome      TEXT,
    delivery     TEXT
);

CREATE INDEX cron_runs_by_job ON cron_runs (agent, job, started_at);
CREATE INDEX cron_runs_unfinished ON cron_runs (finished_at) WHERE finished_at IS NULL;
