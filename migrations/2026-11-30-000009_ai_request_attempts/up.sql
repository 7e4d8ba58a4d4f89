-- How many times the start of an AI reply has been tried (issue 11, leftovers): the
-- transaction that writes a request counts the first try, each adoption by a heartbeat
-- (`ai::intent::adopt`) one more. Past `--ai-start-attempts` the request ends `failed`.
ALTER TABLE ai_requests ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1;

-- At most one reply owed per question at a time: two `regenerate`s of the same reply (on
-- one node or two) cannot both start one. Rows doubled before this index are dropped,
-- keeping the oldest.
DELETE FROM ai_requests a
 USING ai_requests b
 WHERE a.reply_to = b.reply_to
   AND (a.created_at, a.id) > (b.created_at, b.id);
CREATE UNIQUE INDEX ai_requests_reply_to_key ON ai_requests (reply_to);
