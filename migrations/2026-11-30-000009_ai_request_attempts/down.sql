DROP INDEX ai_requests_reply_to_key;
ALTER TABLE ai_requests DROP COLUMN attempts;
