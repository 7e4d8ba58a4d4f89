-- Collaborative artifacts: Yjs documents whose updates are events on the topic
-- `artifact:<id>` (kind `yjs.update`), compacted into a snapshot; named versions; branches.

CREATE TABLE artifacts (
    id              UUID PRIMARY KEY,
    workspace_id    UUID NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    session_id      UUID REFERENCES chat_sessions (id) ON DELETE SET NULL,
    message_id      UUID REFERENCES messages (id) ON DELETE SET NULL,
    kind            TEXT NOT NULL,
    title           TEXT NOT NULL,
    created_by      UUID NOT NULL REFERENCES users (id),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- A branch: the artifact it was forked from, and the version it started at.
    branch_of       UUID REFERENCES artifacts (id) ON DELETE CASCADE,
    fork_version_id UUID,
    branch_name     TEXT,
    merged_at       TIMESTAMPTZ
);
CREATE INDEX artifacts_workspace_idx ON artifacts (workspace_id, created_at DESC);

-- The document state up to `upto_seq` (Yjs update v1 encoding); the update events at or
-- below it are deleted when the snapshot is written.
CREATE TABLE artifact_snapshots (
    artifact_id UUID PRIMARY KEY REFERENCES artifacts (id) ON DELETE CASCADE,
    upto_seq    BIGINT NOT NULL,
    state       BYTEA NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE artifact_versions (
    id          UUID PRIMARY KEY,
    artifact_id UUID NOT NULL REFERENCES artifacts (id) ON DELETE CASCADE,
    number      INTEGER NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('save', 'revert', 'merge')),
    name        TEXT NOT NULL,
    message     TEXT NOT NULL DEFAULT '',
    author_id   UUID REFERENCES users (id) ON DELETE SET NULL,
    parent_id   UUID REFERENCES artifact_versions (id) ON DELETE SET NULL,
    state       BYTEA NOT NULL,
    content     TEXT NOT NULL,
    upto_seq    BIGINT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (artifact_id, number)
);

ALTER TABLE artifacts ADD CONSTRAINT artifacts_fork_version_fk
    FOREIGN KEY (fork_version_id) REFERENCES artifact_versions (id) ON DELETE SET NULL;

-- Connect tokens for the y-websocket endpoint: one artifact, one access level, reusable
-- until expiry (the provider reconnects with the same URL). Only the hash is stored.
CREATE TABLE artifact_tokens (
    token_hash  BYTEA PRIMARY KEY,
    artifact_id UUID NOT NULL REFERENCES artifacts (id) ON DELETE CASCADE,
    user_id     UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    access      TEXT NOT NULL CHECK (access IN ('read', 'write')),
    expires_at  TIMESTAMPTZ NOT NULL
);
