-- AI replies: the session setting that decides when the AI answers, the state of each
-- generation (tied to the node that runs it), and token usage for analytics.

ALTER TABLE chat_sessions
    ADD COLUMN ai_mode TEXT NOT NULL DEFAULT 'mention' CHECK (ai_mode IN ('off', 'mention', 'every_message'));

-- Messages written by the AI carry the model and how the reply ended.
ALTER TABLE messages
    ADD COLUMN model TEXT,
    ADD COLUMN status TEXT NOT NULL DEFAULT 'complete'
        CHECK (status IN ('complete', 'streaming', 'stopped', 'failed', 'interrupted'));

CREATE TABLE generations (
    message_id        UUID PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
    session_id        UUID NOT NULL REFERENCES chat_sessions (id) ON DELETE CASCADE,
    reply_to          UUID REFERENCES messages (id) ON DELETE SET NULL,
    asked_by          UUID REFERENCES users (id) ON DELETE SET NULL,
    -- The node streaming it; when its lease expires the reply is marked interrupted.
    node_id           UUID NOT NULL,
    model             TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('streaming', 'complete', 'stopped', 'failed', 'interrupted')),
    -- The text so far, checkpointed while streaming (late joiners resume from it).
    partial           TEXT NOT NULL DEFAULT '',
    stop_requested    BOOLEAN NOT NULL DEFAULT false,
    error             TEXT,
    prompt_tokens     INTEGER,
    completion_tokens INTEGER,
    started_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX generations_streaming_idx ON generations (node_id) WHERE status = 'streaming';
CREATE INDEX generations_session_idx ON generations (session_id) WHERE status = 'streaming';

CREATE TABLE ai_usage (
    workspace_id      UUID NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    user_id           UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    model             TEXT NOT NULL,
    day               DATE NOT NULL,
    requests          INTEGER NOT NULL DEFAULT 0,
    prompt_tokens     BIGINT NOT NULL DEFAULT 0,
    completion_tokens BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (workspace_id, user_id, model, day)
);
