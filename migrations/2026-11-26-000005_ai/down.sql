DROP TABLE ai_usage;
DROP TABLE generations;
ALTER TABLE messages DROP COLUMN status, DROP COLUMN model;
ALTER TABLE chat_sessions DROP COLUMN ai_mode;
