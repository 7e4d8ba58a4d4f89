-- Foundation: accounts, login sessions, workspaces, members, invitations, API tokens,
-- the email outbox and the audit log.

CREATE TABLE users (
    id            UUID PRIMARY KEY,
    -- Stored lower-cased; compared exactly.
    email         TEXT NOT NULL UNIQUE CHECK (email = lower(email)),
    display_name  TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Login sessions: only the SHA-256 of the bearer token is stored.
CREATE TABLE user_sessions (
    id           UUID PRIMARY KEY,
    user_id      UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash   BYTEA NOT NULL UNIQUE,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at   TIMESTAMPTZ NOT NULL,
    ip           TEXT
);
CREATE INDEX user_sessions_user_idx ON user_sessions (user_id);

CREATE TABLE workspaces (
    id         UUID PRIMARY KEY,
    name       TEXT NOT NULL,
    created_by UUID NOT NULL REFERENCES users (id),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE workspace_members (
    workspace_id UUID NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    user_id      UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role         TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'editor', 'viewer', 'guest')),
    -- Custom per-member adjustments on top of the role (see docs/PERMISSIONS.md).
    granted      TEXT[] NOT NULL DEFAULT '{}',
    revoked      TEXT[] NOT NULL DEFAULT '{}',
    joined_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, user_id)
);
CREATE INDEX workspace_members_user_idx ON workspace_members (user_id);

CREATE TABLE invitations (
    id           UUID PRIMARY KEY,
    workspace_id UUID NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    email        TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'editor', 'viewer', 'guest')),
    permissions  TEXT[] NOT NULL DEFAULT '{}',
    token_hash   BYTEA NOT NULL UNIQUE,
    invited_by   UUID NOT NULL REFERENCES users (id),
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at   TIMESTAMPTZ NOT NULL,
    accepted_at  TIMESTAMPTZ,
    accepted_by  UUID REFERENCES users (id),
    revoked_at   TIMESTAMPTZ
);
CREATE INDEX invitations_workspace_idx ON invitations (workspace_id, created_at);

CREATE TABLE api_tokens (
    id           UUID PRIMARY KEY,
    workspace_id UUID NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    token_hash   BYTEA NOT NULL UNIQUE,
    permissions  TEXT[] NOT NULL,
    created_by   UUID NOT NULL REFERENCES users (id),
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at   TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ,
    last_used_at TIMESTAMPTZ
);
CREATE INDEX api_tokens_workspace_idx ON api_tokens (workspace_id, created_at);

-- Mail waiting to go out; written in the same transaction as what caused it, so an SMTP
-- outage delays mail but never loses it. The body is scrubbed once the mail is sent.
CREATE TABLE email_outbox (
    id              UUID PRIMARY KEY,
    to_address      TEXT NOT NULL,
    subject         TEXT NOT NULL,
    body            TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    sent_at         TIMESTAMPTZ,
    last_error      TEXT
);
CREATE INDEX email_outbox_pending_idx ON email_outbox (next_attempt_at) WHERE sent_at IS NULL;

-- Every mutation writes one row here, in the mutation's own transaction. No foreign keys, so the
-- trail outlives what it describes (a deleted workspace keeps its history).
CREATE TABLE audit_log (
    id            BIGSERIAL PRIMARY KEY,
    workspace_id  UUID,
    actor_user_id UUID,
    actor_token_id UUID,
    action        TEXT NOT NULL,
    target_type   TEXT NOT NULL,
    target_id     TEXT NOT NULL,
    details       JSONB NOT NULL DEFAULT '{}',
    ip            TEXT,
    user_agent    TEXT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_workspace_idx ON audit_log (workspace_id, id DESC);
