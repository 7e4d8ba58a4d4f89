//! The session topic's durable events, one variant per kind with its payload typed (the
//! wire shape of each is in docs/PROTOCOL.md, "event"). The log stores the kind and the
//! payload as `kind` and `data`; [`SessionEvent::append`] writes one at the next seq.

use crate::error::AppResult;
use crate::events::{self, Event};
use crate::sessions::access::SessionRow;
use crate::sessions::store::{self, MessageView};
use diesel_async::AsyncPgConnection;
use serde::Serialize;
use uuid::Uuid;

#[derive(Debug, Serialize)]
#[serde(tag = "kind", content = "data")]
pub enum SessionEvent<'a> {
    #[serde(rename = "session.created")]
    SessionCreated { session: &'a SessionRow },
    #[serde(rename = "session.updated")]
    SessionUpdated { session: &'a SessionRow },
    #[serde(rename = "session.archived")]
    SessionArchived { session: &'a SessionRow },
    #[serde(rename = "session.unarchived")]
    SessionUnarchived { session: &'a SessionRow },
    #[serde(rename = "participant.added")]
    ParticipantAdded {
        user_id: Uuid,
        display_name: &'a str,
        role_override: Option<&'a str>,
    },
    #[serde(rename = "participant.removed")]
    ParticipantRemoved {
        user_id: Uuid,
        /// `left_workspace` when leaving (or removal from) the workspace removed them.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'static str>,
    },
    #[serde(rename = "message.created")]
    MessageCreated {
        message: &'a MessageView,
        #[serde(flatten)]
        origin: MessageOrigin,
    },
    #[serde(rename = "message.edited")]
    MessageEdited { message: &'a MessageView },
    #[serde(rename = "message.deleted")]
    MessageDeleted { message_id: Uuid },
    #[serde(rename = "reaction.added")]
    ReactionAdded(Reaction<'a>),
    #[serde(rename = "reaction.removed")]
    ReactionRemoved(Reaction<'a>),
    #[serde(rename = "message.completed")]
    MessageCompleted {
        message: &'a MessageView,
        status: &'static str,
        error: Option<String>,
        usage: Option<Usage>,
    },
}

/// Who a new message comes from: a participant (and whether it asks the AI), or the AI
/// answering a question.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum MessageOrigin {
    User { asks_ai: bool },
    Reply { reply_to: Uuid, asked_by: Option<Uuid> },
}

#[derive(Debug, Serialize)]
pub struct Reaction<'a> {
    pub message_id: Uuid,
    pub user_id: Uuid,
    pub emoji: &'a str,
    pub added: bool,
}

/// Tokens a reply used.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

impl SessionEvent<'_> {
    /// Appends the event to the session's log at its next seq.
    pub async fn append(
        &self,
        conn: &mut AsyncPgConnection,
        session_id: Uuid,
        actor: Option<Uuid>,
    ) -> AppResult<Event> {
        let (kind, data) = events::parts(self)?;
        events::append(conn, &store::topic(session_id), &kind, data, actor).await
    }

    /// Writes the event at a seq already reserved (a row that carries the seq itself, such
    /// as a message, was written with it).
    pub async fn insert(
        &self,
        conn: &mut AsyncPgConnection,
        session_id: Uuid,
        seq: i64,
        actor: Option<Uuid>,
    ) -> AppResult<Event> {
        let (kind, data) = events::parts(self)?;
        events::insert(conn, &store::topic(session_id), seq, &kind, data, actor).await
    }
}
