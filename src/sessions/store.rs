//! Durable session writes: each action is authorized and applied inside the caller's
//! transaction, together with its event row (next seq on the session's topic).

use crate::auth::Permission;
use crate::db::schema::{message_reactions, messages, session_participants, users};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::events::{self, Event};
use crate::sessions::access::{SessionAccess, Visibility, session_access};
use crate::sessions::events::{MessageOrigin, Reaction, SessionEvent};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Longest message body, in characters.
pub const MAX_MESSAGE_CHARS: usize = 16_000;

/// A write a participant asks for.
#[derive(Debug, Clone)]
pub enum Action {
    Send { body: String },
    Edit { message_id: Uuid, body: String },
    Delete { message_id: Uuid },
    React { message_id: Uuid, emoji: String },
}

/// A message as clients see it (in events and history).
#[derive(Debug, Clone, Serialize, Deserialize, Queryable, Selectable, utoipa::ToSchema)]
#[diesel(table_name = messages)]
pub struct MessageView {
    pub id: Uuid,
    pub session_id: Uuid,
    /// The seq of the event that created it: its place in the session.
    pub seq: i64,
    pub author_id: Option<Uuid>,
    /// `user`, `assistant` or `system`.
    pub role: String,
    /// Empty once deleted.
    pub body: String,
    pub created_at: DateTime<Utc>,
    pub edited_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
    /// The model that wrote an assistant message.
    pub model: Option<String>,
    /// `complete`, or for AI replies `streaming`, `stopped`, `failed`, `interrupted`.
    pub status: String,
}

/// A message a participant sends.
#[derive(Insertable)]
#[diesel(table_name = messages)]
pub struct NewMessage<'a> {
    pub id: Uuid,
    pub session_id: Uuid,
    pub seq: i64,
    pub author_id: Uuid,
    pub role: &'a str,
    pub body: &'a str,
}

impl NewMessage<'_> {
    pub async fn insert(&self, conn: &mut AsyncPgConnection) -> AppResult<MessageView> {
        let query = diesel::insert_into(messages::table).values(self);
        Ok(query.returning(MessageView::as_returning()).get_result(conn).await?)
    }
}

pub fn validate_body(body: &str) -> AppResult<String> {
    if body.trim().is_empty() {
        return Err(AppError::validation("`body` must not be empty"));
    }
    if body.chars().count() > MAX_MESSAGE_CHARS {
        return Err(AppError::validation(format!(
            "`body` must be at most {MAX_MESSAGE_CHARS} characters"
        )));
    }
    Ok(body.to_owned())
}

pub fn validate_emoji(emoji: &str) -> AppResult<String> {
    let n = emoji.chars().count();
    if n == 0 || n > 16 || emoji.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(AppError::validation(
            "`emoji` must be 1 to 16 characters without spaces",
        ));
    }
    Ok(emoji.to_owned())
}

async fn load_message(conn: &mut AsyncPgConnection, session_id: Uuid, id: Uuid) -> AppResult<MessageView> {
    messages::table
        .find(id)
        .filter(messages::session_id.eq(session_id))
        .select(MessageView::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()?
        .ok_or_else(|| AppError::new(ErrorCode::MessageNotFound, "no such message in this session"))
}

/// Joins a workspace-visible session on first write, recording the event.
async fn ensure_participant(conn: &mut AsyncPgConnection, access: &SessionAccess) -> AppResult<Option<Event>> {
    if access.participant {
        return Ok(None);
    }
    if access.visibility() == Visibility::Private && !access.can(Permission::ManageSessions) {
        return Err(AppError::forbidden("only participants can write in a private session"));
    }
    add_participant(conn, access.session.id, access.user_id, None, access.user_id)
        .await
        .map(Some)
}

/// Adds a participant and appends `participant.added`.
pub async fn add_participant(
    conn: &mut AsyncPgConnection,
    session_id: Uuid,
    user_id: Uuid,
    role_override: Option<&str>,
    added_by: Uuid,
) -> AppResult<Event> {
    diesel::insert_into(session_participants::table)
        .values((
            session_participants::session_id.eq(session_id),
            session_participants::user_id.eq(user_id),
            session_participants::role_override.eq(role_override),
            session_participants::added_by.eq(added_by),
        ))
        .on_conflict((session_participants::session_id, session_participants::user_id))
        .do_update()
        .set(session_participants::role_override.eq(role_override))
        .execute(conn)
        .await?;
    let display_name: String = users::table
        .find(user_id)
        .select(users::display_name)
        .first(conn)
        .await?;
    let added = SessionEvent::ParticipantAdded {
        user_id,
        display_name: &display_name,
        role_override,
    };
    added.append(conn, session_id, Some(added_by)).await
}

/// A session's topic name, as the event log stores it.
pub fn topic(session_id: Uuid) -> String {
    crate::sessions::registry::topic(session_id).to_string()
}

/// Authorizes and applies one action; returns the events it appended (the last one is
/// the action's own, whose seq is acknowledged). A message that asks the AI also records
/// the request for its reply, owed by `node` (`ai::intent`).
pub async fn apply(
    conn: &mut AsyncPgConnection,
    session_id: Uuid,
    user_id: Uuid,
    action: Action,
    node: Uuid,
) -> AppResult<Vec<Event>> {
    let access = session_access(conn, session_id, user_id).await?;
    access.require_active()?;
    let mut out = Vec::new();
    match action {
        Action::Send { body } => {
            access.require(Permission::SendMessages)?;
            let body = validate_body(&body)?;
            out.extend(ensure_participant(conn, &access).await?);
            let topic = topic(session_id);
            let seq = events::reserve(conn, &topic, 1).await?;
            let new = NewMessage {
                id: Uuid::new_v4(),
                session_id,
                seq,
                author_id: user_id,
                role: "user",
                body: &body,
            };
            let message: MessageView = new.insert(conn).await?;
            // By the mode the access check read at the start of this transaction (one round
            // trip less per message than reading it again; DECISIONS.md record 29).
            let asks_ai = crate::ai::asks_ai(&access.session.ai_mode, &body);
            if asks_ai {
                crate::ai::intent::record(conn, message.id, session_id, message.id, Some(user_id), node).await?;
            }
            let created = SessionEvent::MessageCreated {
                message: &message,
                origin: MessageOrigin::User { asks_ai },
            };
            out.push(created.insert(conn, session_id, seq, Some(user_id)).await?);
        }
        Action::Edit { message_id, body } => {
            let body = validate_body(&body)?;
            let message = load_message(conn, session_id, message_id).await?;
            if message.author_id != Some(user_id) {
                return Err(AppError::forbidden("only the author can edit a message"));
            }
            access.require(Permission::SendMessages)?;
            if message.deleted_at.is_some() {
                return Err(AppError::new(ErrorCode::MessageNotFound, "the message was deleted"));
            }
            let message: MessageView = diesel::update(messages::table.find(message_id))
                .set((messages::body.eq(&body), messages::edited_at.eq(Utc::now())))
                .returning(MessageView::as_returning())
                .get_result(conn)
                .await?;
            let edited = SessionEvent::MessageEdited { message: &message };
            out.push(edited.append(conn, session_id, Some(user_id)).await?);
        }
        Action::Delete { message_id } => {
            let message = load_message(conn, session_id, message_id).await?;
            let own = message.author_id == Some(user_id) && access.can(Permission::SendMessages);
            if !own && !access.can(Permission::ManageSessions) {
                return Err(AppError::forbidden(
                    "only the author or someone with `manage_sessions` can delete a message",
                ));
            }
            if message.status == "streaming" {
                // Deleting a reply that is still streaming stops it too.
                use crate::db::schema::generations;
                diesel::update(generations::table.find(message_id))
                    .set(generations::stop_requested.eq(true))
                    .execute(conn)
                    .await?;
            }
            if message.deleted_at.is_some() {
                return Err(AppError::new(
                    ErrorCode::MessageNotFound,
                    "the message was already deleted",
                ));
            }
            // A tombstone: the row stays (history keeps its place), the text goes.
            diesel::update(messages::table.find(message_id))
                .set((messages::body.eq(""), messages::deleted_at.eq(Utc::now())))
                .execute(conn)
                .await?;
            diesel::delete(message_reactions::table.filter(message_reactions::message_id.eq(message_id)))
                .execute(conn)
                .await?;
            let deleted = SessionEvent::MessageDeleted { message_id };
            out.push(deleted.append(conn, session_id, Some(user_id)).await?);
        }
        Action::React { message_id, emoji } => {
            access.require(Permission::SendMessages)?;
            let emoji = validate_emoji(&emoji)?;
            let message = load_message(conn, session_id, message_id).await?;
            if message.deleted_at.is_some() {
                return Err(AppError::new(ErrorCode::MessageNotFound, "the message was deleted"));
            }
            let removed = diesel::delete(message_reactions::table.find((message_id, user_id, &emoji)))
                .execute(conn)
                .await?;
            if removed == 0 {
                diesel::insert_into(message_reactions::table)
                    .values((
                        message_reactions::message_id.eq(message_id),
                        message_reactions::user_id.eq(user_id),
                        message_reactions::emoji.eq(&emoji),
                    ))
                    .execute(conn)
                    .await?;
            }
            let reaction = Reaction {
                message_id,
                user_id,
                emoji: &emoji,
                added: removed == 0,
            };
            let event = if reaction.added {
                SessionEvent::ReactionAdded(reaction)
            } else {
                SessionEvent::ReactionRemoved(reaction)
            };
            out.push(event.append(conn, session_id, Some(user_id)).await?);
        }
    }
    Ok(out)
}
