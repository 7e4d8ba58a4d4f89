DROP TABLE connect_tickets;
DROP TABLE message_reactions;
DROP TABLE messages;
DROP TABLE session_participants;
DROP TABLE chat_sessions;
DROP TABLE events;
DROP TABLE topics;
