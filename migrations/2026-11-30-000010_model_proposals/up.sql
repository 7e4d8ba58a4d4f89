-- Model proposals (issue 13, seed 2.2): a participant proposes the model a session uses,
-- the eligible voters (a snapshot taken when it opens) vote, and the rules decide once, in
-- the transaction that locks the proposal row. Changes are events on the session's log.
CREATE TABLE model_proposals (
    id          UUID PRIMARY KEY,
    session_id  UUID NOT NULL REFERENCES chat_sessions (id) ON DELETE CASCADE,
    proposed_by UUID REFERENCES users (id) ON DELETE SET NULL,
    model       TEXT NOT NULL,
    reasoning   TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'open'
                CHECK (status IN ('open', 'approved', 'rejected', 'withdrawn', 'cancelled', 'expired')),
    -- Who may vote: the participants holding `vote_on_models` when it opened.
    eligible    UUID[] NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- By the database's clock.
    expires_at  TIMESTAMPTZ NOT NULL,
    resolved_at TIMESTAMPTZ,
    resolved_by UUID REFERENCES users (id) ON DELETE SET NULL,
    -- The node whose actor holds the expiry timer (no foreign key: it outlives its node;
    -- any node's heartbeat expires an overdue proposal).
    owner_node  UUID NOT NULL
);
-- At most one open proposal per session.
CREATE UNIQUE INDEX model_proposals_one_open ON model_proposals (session_id) WHERE status = 'open';
CREATE INDEX model_proposals_session_idx ON model_proposals (session_id, created_at);
CREATE INDEX model_proposals_open_expiry_idx ON model_proposals (expires_at) WHERE status = 'open';

CREATE TABLE model_proposal_votes (
    proposal_id UUID NOT NULL REFERENCES model_proposals (id) ON DELETE CASCADE,
    user_id     UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    vote        TEXT NOT NULL CHECK (vote IN ('approve', 'reject', 'abstain')),
    comment     TEXT,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (proposal_id, user_id)
);
