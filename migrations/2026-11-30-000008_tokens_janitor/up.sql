-- Issue 11: revocable artifact connect tokens, credentials tied to the login session that
-- issued them (logout ends them), account disablement, and indexes for the janitor.

-- A token has an id (to list and revoke it) and belongs to the login session that issued
-- it: logging out deletes the session row, and its tokens and tickets with it.
ALTER TABLE artifact_tokens
    ADD COLUMN id               UUID NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    ADD COLUMN login_session_id UUID REFERENCES user_sessions (id) ON DELETE CASCADE,
    ADD COLUMN created_at       TIMESTAMPTZ NOT NULL DEFAULT now();
CREATE INDEX artifact_tokens_user_idx ON artifact_tokens (user_id);
CREATE INDEX artifact_tokens_session_idx ON artifact_tokens (login_session_id);
CREATE INDEX artifact_tokens_expires_idx ON artifact_tokens (expires_at);

ALTER TABLE connect_tickets
    ADD COLUMN login_session_id UUID REFERENCES user_sessions (id) ON DELETE CASCADE;
CREATE INDEX connect_tickets_session_idx ON connect_tickets (login_session_id);
CREATE INDEX connect_tickets_expires_idx ON connect_tickets (expires_at);

-- A disabled account cannot log in; its sessions, tokens and sockets are ended.
ALTER TABLE users ADD COLUMN disabled_at TIMESTAMPTZ;

CREATE INDEX user_sessions_expires_idx ON user_sessions (expires_at);
CREATE INDEX email_outbox_sent_idx ON email_outbox (sent_at) WHERE sent_at IS NOT NULL;
