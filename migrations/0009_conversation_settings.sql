-- Settings kept per conversation, such as the response mode a `/quiet` or `/mention-only` set
-- (crates/spacebot-memory/src/conversation_log.rs), so they outlive the conversation's task:
-- eviction and restarts keep them.

CREATE TABLE conversation_settings (
    agent        TEXT    NOT NULL,
    conversation TEXT    NOT NULL,
    key          TEXT    NOT NULL,
    value        TEXT    NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (agent, conversation, key)
);
