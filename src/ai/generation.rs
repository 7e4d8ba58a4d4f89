//! The durable side of an AI reply: the assistant message and its `generations` row are
//! created in one transaction with the `message.created` event, taking the request that
//! owed the reply (`ai::intent`), or end the reply as failed when it cannot start; the
//! partial text is checkpointed while streaming; the end (complete, stopped, failed,
//! interrupted) commits the final text, model and token usage with a `message.completed`
//! event.

use crate::ai::intent;
use crate::ai::provider::ChatMessage;
use crate::cluster::Hub;
use crate::db::schema::{ai_usage, chat_sessions, generations, messages};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::events::{self, Committed, Event};
use crate::sessions::events::{MessageOrigin, SessionEvent, Usage};
use crate::sessions::store::{self, MessageView};
use chrono::Utc;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use scoped_futures::ScopedFutureExt;
use uuid::Uuid;

/// A generation that has started: its message, and what to send the model.
pub struct Started {
    pub message: MessageView,
    pub history: Vec<ChatMessage>,
}

/// How a reply ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    Complete,
    Stopped,
    Failed(String),
    Interrupted,
}

impl Ending {
    pub fn status(&self) -> &'static str {
        match self {
            Ending::Complete => "complete",
            Ending::Stopped => "stopped",
            Ending::Failed(_) => "failed",
            Ending::Interrupted => "interrupted",
        }
    }

    fn error(&self) -> Option<String> {
        match self {
            Ending::Failed(reason) => Some(reason.clone()),
            Ending::Interrupted => Some("the node generating this reply went away".to_owned()),
            _ => None,
        }
    }
}

/// Recent history up to `reply_to`, newest kept first, within a budget of estimated tokens
/// (≈ 4 characters each), in chronological order.
async fn history(
    conn: &mut AsyncPgConnection,
    session_id: Uuid,
    reply_to: &MessageView,
    budget: usize,
) -> AppResult<Vec<ChatMessage>> {
    let rows: Vec<(String, String)> = messages::table
        .filter(messages::session_id.eq(session_id))
        .filter(messages::seq.le(reply_to.seq))
        .filter(messages::deleted_at.is_null())
        .filter(messages::status.eq("complete"))
        .order(messages::seq.desc())
        .limit(100)
        .select((messages::role, messages::body))
        .load(conn)
        .await?;
    let mut used = 0;
    let mut out = Vec::new();
    for (role, content) in rows {
        let cost = content.chars().count() / 4 + 4;
        if used + cost > budget && !out.is_empty() {
            break;
        }
        used += cost;
        out.push(ChatMessage { role, content });
    }
    out.reverse();
    out.insert(
        0,
        ChatMessage {
            role: "system".to_owned(),
            content: "You are the AI participant of a shared team chat on bedda.ai. Several people read your replies."
                .to_owned(),
        },
    );
    Ok(out)
}

/// Starts the reply owed by `request` (see `ai::intent`), run by this node, in one
/// transaction that takes the request: the assistant message, its `generations` row and
/// its `message.created`. `None` when the request is not this node's to start (any more).
pub async fn start(
    conn: &mut AsyncPgConnection,
    hub: &Hub,
    session_id: Uuid,
    request: Uuid,
    model: String,
    history_budget: usize,
) -> AppResult<Committed<Option<Started>>> {
    let node = hub.bus.node_id().0;
    events::commit(conn, hub, |conn| {
        async move {
            let Some(request) = intent::take(conn, request, session_id, node).await? else {
                return Ok((None, Vec::new()));
            };
            let question: MessageView = messages::table
                .find(request.reply_to)
                .filter(messages::session_id.eq(session_id))
                .select(MessageView::as_select())
                .first(conn)
                .await
                .optional()?
                .ok_or_else(|| AppError::new(ErrorCode::MessageNotFound, "no such message to answer"))?;
            let history = history(conn, session_id, &question, history_budget).await?;
            let (message, event) = open_reply(conn, session_id, &request, node, &model, None).await?;
            Ok((Some(Started { message, history }), vec![event]))
        }
        .scope_boxed()
    })
    .await
}

/// Ends the reply owed by `request` as failed before it started, for everyone: the same
/// events as a reply the provider refused at once (`message.created`, then
/// `message.completed` with `status: failed` and the reason), in one transaction that takes
/// the request. `None` when the request is not this node's (any more).
pub async fn fail_to_start(
    conn: &mut AsyncPgConnection,
    hub: &Hub,
    session_id: Uuid,
    request: Uuid,
    model: String,
    reason: String,
) -> AppResult<Committed<()>> {
    let node = hub.bus.node_id().0;
    events::commit(conn, hub, |conn| {
        async move {
            let Some(request) = intent::take(conn, request, session_id, node).await? else {
                return Ok(((), Vec::new()));
            };
            let ending = Ending::Failed(reason);
            let (message, created) = open_reply(conn, session_id, &request, node, &model, Some(&ending)).await?;
            let completed = complete_message(conn, session_id, message.id, "", &ending, None).await?;
            Ok(((), vec![created, completed]))
        }
        .scope_boxed()
    })
    .await
}

/// The assistant message of a reply (`streaming`), its `generations` row (`streaming`, or
/// already ended with `ending`) and its `message.created` event.
async fn open_reply(
    conn: &mut AsyncPgConnection,
    session_id: Uuid,
    request: &intent::Request,
    node: Uuid,
    model: &str,
    ending: Option<&Ending>,
) -> AppResult<(MessageView, Event)> {
    let topic = store::topic(session_id);
    let seq = events::reserve(conn, &topic, 1).await?;
    let message: MessageView = diesel::insert_into(messages::table)
        .values((
            messages::id.eq(Uuid::new_v4()),
            messages::session_id.eq(session_id),
            messages::seq.eq(seq),
            messages::role.eq("assistant"),
            messages::body.eq(""),
            messages::model.eq(model),
            messages::status.eq("streaming"),
        ))
        .returning(MessageView::as_returning())
        .get_result(conn)
        .await?;
    diesel::insert_into(generations::table)
        .values((
            generations::message_id.eq(message.id),
            generations::session_id.eq(session_id),
            generations::reply_to.eq(request.reply_to),
            generations::asked_by.eq(request.asked_by),
            generations::node_id.eq(node),
            generations::model.eq(model),
            generations::status.eq(ending.map_or("streaming", Ending::status)),
            generations::error.eq(ending.and_then(Ending::error)),
        ))
        .execute(conn)
        .await?;
    let origin = MessageOrigin::Reply {
        reply_to: request.reply_to,
        asked_by: request.asked_by,
    };
    let created = SessionEvent::MessageCreated {
        message: &message,
        origin,
    };
    let event = created.insert(conn, session_id, seq, request.asked_by).await?;
    Ok((message, event))
}

/// Saves the text so far; returns whether someone asked (on any node) to stop.
pub async fn checkpoint(conn: &mut AsyncPgConnection, message_id: Uuid, partial: &str) -> AppResult<bool> {
    let stop: Option<bool> = diesel::update(
        generations::table
            .find(message_id)
            .filter(generations::status.eq("streaming")),
    )
    .set((generations::partial.eq(partial), generations::updated_at.eq(Utc::now())))
    .returning(generations::stop_requested)
    .get_result(conn)
    .await
    .optional()?;
    Ok(stop.unwrap_or(true))
}

/// Ends a reply: final text, status, usage; the `message.completed` event. Does nothing
/// (no event) when the reply had already ended (e.g. marked interrupted meanwhile).
pub async fn finish(
    conn: &mut AsyncPgConnection,
    hub: &Hub,
    message_id: Uuid,
    text: &str,
    ending: &Ending,
    usage: Option<(u32, u32)>,
) -> AppResult<Committed<()>> {
    let (text, ending) = (text.to_owned(), ending.clone());
    events::commit(conn, hub, |conn| {
        async move {
            let row: Option<(Uuid, Option<Uuid>, String)> = diesel::update(
                generations::table
                    .find(message_id)
                    .filter(generations::status.eq("streaming")),
            )
            .set((
                generations::status.eq(ending.status()),
                generations::partial.eq(&text),
                generations::error.eq(ending.error()),
                generations::prompt_tokens.eq(usage.map(|u| u.0 as i32)),
                generations::completion_tokens.eq(usage.map(|u| u.1 as i32)),
                generations::updated_at.eq(Utc::now()),
            ))
            .returning((generations::session_id, generations::asked_by, generations::model))
            .get_result(conn)
            .await
            .optional()?;
            let Some((session_id, asked_by, model)) = row else {
                return Ok(((), Vec::new()));
            };
            let event = complete_message(conn, session_id, message_id, &text, &ending, usage).await?;
            if let Some(user) = asked_by {
                // Every request counts (a stopped or failed one may still be billed).
                let (prompt, completion) = usage.unwrap_or((0, 0));
                record_usage(conn, session_id, user, &model, prompt, completion).await?;
            }
            Ok(((), vec![event]))
        }
        .scope_boxed()
    })
    .await
}

async fn complete_message(
    conn: &mut AsyncPgConnection,
    session_id: Uuid,
    message_id: Uuid,
    text: &str,
    ending: &Ending,
    usage: Option<(u32, u32)>,
) -> AppResult<Event> {
    // A reply deleted while it streamed stays a tombstone.
    let deleted: bool = messages::table
        .find(message_id)
        .select(messages::deleted_at.is_not_null())
        .first(conn)
        .await?;
    let text = if deleted { "" } else { text };
    let message: MessageView = diesel::update(messages::table.find(message_id))
        .set((messages::body.eq(text), messages::status.eq(ending.status())))
        .returning(MessageView::as_returning())
        .get_result(conn)
        .await?;
    let completed = SessionEvent::MessageCompleted {
        message: &message,
        status: ending.status(),
        error: ending.error(),
        usage: usage.map(|(prompt_tokens, completion_tokens)| Usage {
            prompt_tokens,
            completion_tokens,
        }),
    };
    completed.append(conn, session_id, None).await
}

async fn record_usage(
    conn: &mut AsyncPgConnection,
    session_id: Uuid,
    user: Uuid,
    model: &str,
    prompt: u32,
    completion: u32,
) -> AppResult<()> {
    let workspace: Uuid = chat_sessions::table
        .find(session_id)
        .select(chat_sessions::workspace_id)
        .first(conn)
        .await?;
    diesel::insert_into(ai_usage::table)
        .values((
            ai_usage::workspace_id.eq(workspace),
            ai_usage::user_id.eq(user),
            ai_usage::model.eq(model),
            ai_usage::day.eq(Utc::now().date_naive()),
            ai_usage::requests.eq(1),
            ai_usage::prompt_tokens.eq(prompt as i64),
            ai_usage::completion_tokens.eq(completion as i64),
        ))
        .on_conflict((
            ai_usage::workspace_id,
            ai_usage::user_id,
            ai_usage::model,
            ai_usage::day,
        ))
        .do_update()
        .set((
            ai_usage::requests.eq(ai_usage::requests + 1),
            ai_usage::prompt_tokens.eq(ai_usage::prompt_tokens + prompt as i64),
            ai_usage::completion_tokens.eq(ai_usage::completion_tokens + completion as i64),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Marks every reply still streaming on `nodes` as interrupted (their node is gone),
/// keeping the checkpointed text: one transaction, one NOTIFY for all their sessions.
pub async fn interrupt_nodes(conn: &mut AsyncPgConnection, hub: &Hub, nodes: &[Uuid]) -> AppResult<Committed<()>> {
    let nodes = nodes.to_vec();
    events::commit(conn, hub, |conn| {
        async move {
            let rows: Vec<(Uuid, Uuid, String)> = diesel::update(
                generations::table
                    .filter(generations::node_id.eq_any(&nodes))
                    .filter(generations::status.eq("streaming")),
            )
            .set((
                generations::status.eq("interrupted"),
                generations::error.eq(Ending::Interrupted.error()),
                generations::updated_at.eq(Utc::now()),
            ))
            .returning((generations::message_id, generations::session_id, generations::partial))
            .get_results(conn)
            .await?;
            let mut out = Vec::new();
            for (message_id, session_id, partial) in rows {
                let event =
                    complete_message(conn, session_id, message_id, &partial, &Ending::Interrupted, None).await?;
                out.push(event);
            }
            Ok(((), out))
        }
        .scope_boxed()
    })
    .await
}

/// Asks for a reply to stop (the generating node sees it at its next checkpoint or at
/// once through the bus). Returns the session's id and who asked for the reply.
pub async fn request_stop(conn: &mut AsyncPgConnection, message_id: Uuid) -> AppResult<Option<(Uuid, Option<Uuid>)>> {
    Ok(diesel::update(
        generations::table
            .find(message_id)
            .filter(generations::status.eq("streaming")),
    )
    .set(generations::stop_requested.eq(true))
    .returning((generations::session_id, generations::asked_by))
    .get_result(conn)
    .await
    .optional()?)
}

/// The replies streaming in a session now, with their checkpointed text.
pub async fn streaming(conn: &mut AsyncPgConnection, session_id: Uuid) -> AppResult<Vec<(Uuid, String, String)>> {
    Ok(generations::table
        .filter(generations::session_id.eq(session_id))
        .filter(generations::status.eq("streaming"))
        .select((generations::message_id, generations::model, generations::partial))
        .load(conn)
        .await?)
}

/// Who asked for a reply and what it answered (for stop and regenerate).
pub async fn find(
    conn: &mut AsyncPgConnection,
    message_id: Uuid,
) -> AppResult<Option<(Uuid, Option<Uuid>, Option<Uuid>, String)>> {
    Ok(generations::table
        .find(message_id)
        .select((
            generations::session_id,
            generations::asked_by,
            generations::reply_to,
            generations::status,
        ))
        .first(conn)
        .await
        .optional()?)
}
