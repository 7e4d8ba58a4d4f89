DROP TABLE audit_log;
DROP TABLE email_outbox;
DROP TABLE api_tokens;
DROP TABLE invitations;
DROP TABLE workspace_members;
DROP TABLE workspaces;
DROP TABLE user_sessions;
DROP TABLE users;
