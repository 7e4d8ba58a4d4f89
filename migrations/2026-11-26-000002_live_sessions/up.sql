-- Live chat sessions: the ordered event log, sessions, participants, messages, reactions,
-- and short-lived WebSocket connect tickets.

-- One row per topic (`session:<id>`, later `artifact:<id>`, …) holding its last sequence
-- number. Taking the next seq locks the row until commit, so seqs are gap-free and commit
-- in order per topic.
CREATE TABLE topics (
    topic    TEXT PRIMARY KEY,
    last_seq BIGINT NOT NULL DEFAULT 0
);

-- The durable event log: what clients replay after a reconnect.
CREATE TABLE events (
    topic      TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    data       JSONB NOT NULL,
    actor_id   UUID,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, seq)
);

CREATE TABLE chat_sessions (
    id            UUID PRIMARY KEY,
    workspace_id  UUID NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    title         TEXT NOT NULL,
    visibility    TEXT NOT NULL CHECK (visibility IN ('private', 'workspace')),
    default_model TEXT,
    created_by    UUID NOT NULL REFERENCES users (id),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    archived_at   TIMESTAMPTZ
);
CREATE INDEX chat_sessions_workspace_idx ON chat_sessions (workspace_id, created_at DESC);

CREATE TABLE session_participants (
    session_id    UUID NOT NULL REFERENCES chat_sessions (id) ON DELETE CASCADE,
    user_id       UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- When set, replaces the member's workspace role inside this session.
    role_override TEXT CHECK (role_override IN ('owner', 'admin', 'editor', 'viewer', 'guest')),
    added_by      UUID REFERENCES users (id),
    added_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, user_id)
);
CREATE INDEX session_participants_user_idx ON session_participants (user_id);

CREATE TABLE messages (
    id         UUID PRIMARY KEY,
    session_id UUID NOT NULL REFERENCES chat_sessions (id) ON DELETE CASCADE,
    -- The seq of the event that created the message: its place in the session.
    seq        BIGINT NOT NULL,
    author_id  UUID REFERENCES users (id) ON DELETE SET NULL,
    role       TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'system')),
    body       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    edited_at  TIMESTAMPTZ,
    deleted_at TIMESTAMPTZ,
    UNIQUE (session_id, seq)
);

CREATE TABLE message_reactions (
    message_id UUID NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    user_id    UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    emoji      TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (message_id, user_id, emoji)
);

-- Single-use, short-lived credentials for browser WebSocket connects (browsers cannot set
-- headers). Only the hash is stored.
CREATE TABLE connect_tickets (
    token_hash BYTEA PRIMARY KEY,
    user_id    UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at TIMESTAMPTZ NOT NULL,
    used_at    TIMESTAMPTZ
);
