-- The cluster: node leases and presence tied to them.

-- Each running server process has a row; it renews its lease by heartbeat. A node whose
-- lease expired is removed by a survivor, which also removes its presences.
CREATE TABLE nodes (
    id               UUID PRIMARY KEY,
    address          TEXT NOT NULL,
    started_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    lease_expires_at TIMESTAMPTZ NOT NULL,
    connections      INTEGER NOT NULL DEFAULT 0
);

-- Who is in which session, through which node (one row per user per node per session).
CREATE TABLE presence (
    session_id   UUID NOT NULL,
    user_id      UUID NOT NULL,
    node_id      UUID NOT NULL,
    display_name TEXT NOT NULL,
    status       TEXT NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, user_id, node_id)
);
CREATE INDEX presence_node_idx ON presence (node_id);
