-- The durable intent of an AI reply. A question that asks the AI (decided in the
-- transaction that commits it) and a `regenerate` write one row; the transaction that
-- starts the reply, or ends it as failed, deletes it. So a reply is owed from the commit
-- of the question on, whatever happens to the node in between, and it is started once.
CREATE TABLE ai_requests (
    -- For a question, the question's message id; for a regenerate, a fresh id.
    id         UUID PRIMARY KEY,
    session_id UUID NOT NULL REFERENCES chat_sessions (id) ON DELETE CASCADE,
    -- The question to answer.
    reply_to   UUID NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    asked_by   UUID REFERENCES users (id) ON DELETE SET NULL,
    -- The node that owes the start (no foreign key: it outlives its node). When that
    -- node's lease is gone, a surviving node claims the row and starts the reply.
    node_id    UUID NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- When `node_id` took it (a row its own node has not started for long is retried).
    claimed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX ai_requests_node_idx ON ai_requests (node_id);
