//! Session REST endpoints: create, list, get, update settings, archive, participants,
//! message history, and WebSocket connect tickets.

use crate::api::{Call, Reply};
use crate::api::{Json, Path, Query};
use crate::auth::authorize::{MemberRow, find_member};
use crate::auth::{AuthUser, Permission, Principal, Role};
use crate::db::schema::{
    chat_sessions, message_reactions, messages, session_participants, topics, users, workspace_members,
};
use crate::db::{self, DbConn};
use crate::error::{AppError, AppResult, ErrorBody, ErrorCode};
use crate::events::{self, Event};
use crate::pagination::Limit;
use crate::sessions::access::{SessionAccess, SessionRow, Visibility, session_access};
use crate::sessions::events::SessionEvent;
use crate::sessions::registry::LiveSessions;
use crate::sessions::store::{self, MessageView};
use crate::validate;
use actix_web::{HttpResponse, delete, get, patch, post};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use scoped_futures::{ScopedBoxFuture, ScopedFutureExt};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use uuid::Uuid;

/// A chat session as the caller sees it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SessionView {
    #[serde(flatten)]
    pub session: SessionRow,
    /// The session topic's last seq: subscribe with `after_seq` = this to get only new events.
    pub head_seq: i64,
    /// The caller's role in this session (override or workspace role).
    pub my_role: Option<Role>,
    pub my_permissions: Vec<Permission>,
    pub participant: bool,
}

fn session_view(session: SessionRow, head_seq: i64, access: Option<&SessionAccess>) -> SessionView {
    SessionView {
        session,
        head_seq,
        my_role: access.map(|a| a.role),
        my_permissions: access.map(|a| a.permissions.iter().collect()).unwrap_or_default(),
        participant: access.is_some_and(|a| a.participant),
    }
}

fn user_of(principal: &Principal) -> AppResult<Uuid> {
    principal
        .user_id()
        .ok_or_else(|| AppError::new(ErrorCode::UserRequired, "chat sessions are for logged-in users"))
}

/// A pooled connection and the caller's standing in the session (`session_not_found` when
/// they cannot see it).
async fn open(call: &Call, id: Uuid) -> AppResult<(DbConn, SessionAccess)> {
    let mut conn = call.state.pool.get().await?;
    let access = session_access(&mut conn, id, user_of(&call.caller)?).await?;
    Ok((conn, access))
}

/// Runs `work` as the caller in one transaction, with their standing in the session
/// re-checked inside it; the events it returns are published once committed.
async fn commit_as<T, F>(call: &Call, id: Uuid, work: F) -> AppResult<T>
where
    T: Send + 'static,
    F: for<'c> FnOnce(
            &'c mut AsyncPgConnection,
            SessionAccess,
        ) -> ScopedBoxFuture<'static, 'c, AppResult<(T, Vec<Event>)>>
        + Send
        + 'static,
{
    let user = user_of(&call.caller)?;
    let mut conn = call.state.pool.get().await?;
    let hub = &call.state.hub;
    let committed = events::commit(&mut conn, hub, |conn| {
        async move {
            let access = session_access(conn, id, user).await?;
            work(conn, access).await
        }
        .scope_boxed()
    })
    .await?;
    Ok(committed.publish(hub))
}

/// Changes who takes part in the session, as the caller: `work` appends the event (published
/// once committed); then the session's live subscribers re-check `target`'s access.
async fn change_participant<F>(call: &Call, id: Uuid, target: Uuid, work: F) -> AppResult<()>
where
    F: for<'c> FnOnce(&'c mut AsyncPgConnection, SessionAccess) -> ScopedBoxFuture<'static, 'c, AppResult<Event>>
        + Send
        + 'static,
{
    commit_as(call, id, |conn, access| {
        async move { Ok(((), vec![work(conn, access).await?])) }.scope_boxed()
    })
    .await?;
    let sessions = call.state.hub.get::<LiveSessions>();
    sessions.session_access_changed(id, Some(target));
    Ok(())
}

fn validate_ai_mode(mode: &str) -> AppResult<String> {
    match mode {
        "off" | "mention" | "every_message" => Ok(mode.to_owned()),
        _ => Err(AppError::validation(
            "`ai_mode` must be `off`, `mention` or `every_message`",
        )),
    }
}

fn validate_model(model: &Option<String>) -> AppResult<Option<String>> {
    model
        .as_deref()
        .map(|m| validate::text("default_model", m, 1, 200))
        .transpose()
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CreateSessionRequest {
    /// 1 to 200 characters.
    pub title: String,
    /// Default `workspace` (every member with `view_sessions` sees it); `private` limits it
    /// to its participants and session managers.
    pub visibility: Option<Visibility>,
    pub default_model: Option<String>,
    /// `off`, `mention` (default) or `every_message`.
    pub ai_mode: Option<String>,
}

/// A new session's settings, checked.
#[derive(Insertable)]
#[diesel(table_name = chat_sessions)]
struct NewSession {
    id: Uuid,
    workspace_id: Uuid,
    title: String,
    visibility: &'static str,
    default_model: Option<String>,
    ai_mode: String,
    created_by: Uuid,
}

impl CreateSessionRequest {
    fn parse(&self, workspace_id: Uuid, created_by: Uuid) -> AppResult<NewSession> {
        Ok(NewSession {
            id: Uuid::new_v4(),
            workspace_id,
            title: validate::text("title", &self.title, 1, 200)?,
            default_model: validate_model(&self.default_model)?,
            visibility: self.visibility.unwrap_or(Visibility::Workspace).as_str(),
            ai_mode: validate_ai_mode(self.ai_mode.as_deref().unwrap_or("mention"))?,
            created_by,
        })
    }
}

/// `POST /api/workspaces/{id}/sessions` — start a chat session (`create_sessions`).
#[utoipa::path(tag = "sessions", params(("id" = Uuid, Path)), request_body = CreateSessionRequest,
    responses((status = 201, body = SessionView), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
#[post("/workspaces/{id}/sessions")]
pub async fn create_session(call: Call<AuthUser>, path: Path<Uuid>, body: Json<CreateSessionRequest>) -> Reply {
    let user = call.caller.id;
    let new = body.parse(*path, user)?;
    let (mut conn, _) = call.authorized(*path, Permission::CreateSessions).await?;
    let (row, head) = events::commit(&mut conn, &call.state.hub, |conn| {
        async move {
            let row: SessionRow = diesel::insert_into(chat_sessions::table)
                .values(new)
                .returning(SessionRow::as_returning())
                .get_result(conn)
                .await?;
            let created = SessionEvent::SessionCreated { session: &row };
            let created = created.append(conn, row.id, Some(user)).await?;
            let joined = store::add_participant(conn, row.id, user, None, user).await?;
            Ok(((row, joined.seq), vec![created, joined]))
        }
        .scope_boxed()
    })
    .await?
    .publish(&call.state.hub);
    let access = session_access(&mut conn, row.id, user).await?;
    Ok(HttpResponse::Created().json(session_view(row, head, Some(&access))))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ListSessionsQuery {
    /// Include archived sessions (default false).
    pub archived: Option<bool>,
}

/// The caller's workspace membership and the sessions they joined (with their role
/// override), among `ids`; `None` for callers that are no member (API tokens).
type Standing = Option<(Uuid, MemberRow, HashMap<Uuid, Option<String>>)>;

async fn standing(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    user: Option<Uuid>,
    ids: &[Uuid],
) -> AppResult<Standing> {
    let Some(user) = user else { return Ok(None) };
    let Some(member) = find_member(conn, workspace_id, user).await? else {
        return Ok(None);
    };
    let joined = session_participants::table
        .filter(session_participants::user_id.eq(user))
        .filter(session_participants::session_id.eq_any(ids))
        .select((session_participants::session_id, session_participants::role_override));
    Ok(Some((
        user,
        member,
        joined.load::<(Uuid, Option<String>)>(conn).await?.into_iter().collect(),
    )))
}

/// The last seq of each topic.
async fn heads(conn: &mut AsyncPgConnection, names: &[String]) -> AppResult<HashMap<String, i64>> {
    let query = topics::table
        .filter(topics::topic.eq_any(names))
        .select((topics::topic, topics::last_seq));
    Ok(query.load::<(String, i64)>(conn).await?.into_iter().collect())
}

/// `GET /api/workspaces/{id}/sessions` — the sessions the caller can see.
#[utoipa::path(tag = "sessions", params(("id" = Uuid, Path), ListSessionsQuery),
    responses((status = 200, body = Vec<SessionView>)), security(("bearer" = [])))]
#[get("/workspaces/{id}/sessions")]
pub async fn list_sessions(call: Call, path: Path<Uuid>, query: Query<ListSessionsQuery>) -> Reply {
    let workspace_id = *path;
    let (mut conn, acc) = call.authorized(workspace_id, Permission::ViewSessions).await?;
    let mut q = chat_sessions::table
        .filter(chat_sessions::workspace_id.eq(workspace_id))
        .order(chat_sessions::created_at.desc())
        .select(SessionRow::as_select())
        .into_boxed();
    if !query.archived.unwrap_or(false) {
        q = q.filter(chat_sessions::archived_at.is_null());
    }
    if !acc.permissions.contains(Permission::ManageSessions) {
        let mine = session_participants::table
            .filter(session_participants::user_id.nullable().eq(call.caller.user_id()))
            .select(session_participants::session_id);
        q = q.filter(
            chat_sessions::visibility
                .eq("workspace")
                .or(chat_sessions::id.eq_any(mine)),
        );
    }
    let rows: Vec<SessionRow> = q.load(&mut conn).await?;
    // Three queries however many sessions: heads, then the caller's membership and
    // participations.
    let names: Vec<String> = rows.iter().map(|r| store::topic(r.id)).collect();
    let heads = heads(&mut conn, &names).await?;
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let caller = standing(&mut conn, workspace_id, call.caller.user_id(), &ids).await?;
    let views: Vec<SessionView> = rows
        .into_iter()
        .zip(names)
        .map(|(row, name)| {
            let head = heads.get(&name).copied().unwrap_or(0);
            let access = caller.as_ref().and_then(|(user, member, joined)| {
                crate::sessions::access::resolve(row.clone(), member, joined.get(&row.id).cloned(), *user)
            });
            session_view(row, head, access.as_ref())
        })
        .collect();
    Ok(HttpResponse::Ok().json(views))
}

/// The session as the caller sees it now; `head` is at least the seq the caller's change got.
async fn respond_session(call: &Call, id: Uuid, head: i64) -> Reply {
    let (mut conn, access) = open(call, id).await?;
    let head = head.max(events::last_seq(&mut conn, &store::topic(id)).await?);
    Ok(HttpResponse::Ok().json(session_view(access.session.clone(), head, Some(&access))))
}

/// `GET /api/sessions/{id}` — one session.
#[utoipa::path(tag = "sessions", params(("id" = Uuid, Path)),
    responses((status = 200, body = SessionView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
#[get("/sessions/{id}")]
pub async fn get_session(call: Call, path: Path<Uuid>) -> Reply {
    respond_session(&call, *path, 0).await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct UpdateSessionRequest {
    pub title: Option<String>,
    pub visibility: Option<Visibility>,
    /// Set to a model id; send an empty string to clear.
    pub default_model: Option<String>,
    /// `off`, `mention` or `every_message`.
    pub ai_mode: Option<String>,
}

/// A change to a session's settings: the columns that are `Some` are set.
#[derive(AsChangeset, Default)]
#[diesel(table_name = chat_sessions)]
struct SessionChanges {
    title: Option<String>,
    visibility: Option<&'static str>,
    ai_mode: Option<String>,
    default_model: Option<Option<String>>,
    archived_at: Option<Option<DateTime<Utc>>>,
    updated_at: Option<DateTime<Utc>>,
}

impl UpdateSessionRequest {
    fn parse(&self) -> AppResult<SessionChanges> {
        let title = self
            .title
            .as_deref()
            .map(|t| validate::text("title", t, 1, 200))
            .transpose()?;
        let default_model = match self.default_model.as_deref() {
            Some("") => Some(None),
            Some(m) => Some(Some(validate::text("default_model", m, 1, 200)?)),
            None => None,
        };
        let visibility = self.visibility.map(Visibility::as_str);
        let ai_mode = self.ai_mode.as_deref().map(validate_ai_mode).transpose()?;
        Ok(SessionChanges {
            title,
            visibility,
            ai_mode,
            default_model,
            ..SessionChanges::default()
        })
    }
}

/// The event a settings change writes, made from the updated row.
type ChangeEvent = for<'r> fn(&'r SessionRow) -> SessionEvent<'r>;

/// Changes a session's settings as the caller (its creator or `manage_sessions`): the
/// update and its event in one transaction, published after commit. Returns the event's
/// seq.
async fn change_session(call: &Call, id: Uuid, event: ChangeEvent, changes: SessionChanges) -> AppResult<i64> {
    let changes = SessionChanges {
        updated_at: Some(Utc::now()),
        ..changes
    };
    commit_as(call, id, move |conn, access| {
        async move {
            access.require_manage()?;
            let row: SessionRow = diesel::update(chat_sessions::table.find(id))
                .set(changes)
                .returning(SessionRow::as_returning())
                .get_result(conn)
                .await?;
            let event = event(&row).append(conn, id, Some(access.user_id)).await?;
            Ok((event.seq, vec![event]))
        }
        .scope_boxed()
    })
    .await
}

/// `PATCH /api/sessions/{id}` — change title, visibility or default model (creator or
/// `manage_sessions`).
#[utoipa::path(tag = "sessions", params(("id" = Uuid, Path)), request_body = UpdateSessionRequest,
    responses((status = 200, body = SessionView), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
#[patch("/sessions/{id}")]
pub async fn update_session(call: Call, path: Path<Uuid>, body: Json<UpdateSessionRequest>) -> Reply {
    let changes = body.parse()?;
    let private = changes.visibility == Some(Visibility::Private.as_str());
    let updated: ChangeEvent = |session| SessionEvent::SessionUpdated { session };
    let head = change_session(&call, *path, updated, changes).await?;
    if private {
        call.state.hub.get::<LiveSessions>().session_access_changed(*path, None);
    }
    respond_session(&call, *path, head).await
}

/// `POST /api/sessions/{id}/archive` — archive: readable, no longer writable.
#[utoipa::path(tag = "sessions", params(("id" = Uuid, Path)),
    responses((status = 200, body = SessionView), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
#[post("/sessions/{id}/archive")]
pub async fn archive_session(call: Call, path: Path<Uuid>) -> Reply {
    set_archived(&call, *path, Some(Utc::now())).await
}

/// `POST /api/sessions/{id}/unarchive` — make an archived session writable again.
#[utoipa::path(tag = "sessions", params(("id" = Uuid, Path)),
    responses((status = 200, body = SessionView), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
#[post("/sessions/{id}/unarchive")]
pub async fn unarchive_session(call: Call, path: Path<Uuid>) -> Reply {
    set_archived(&call, *path, None).await
}

/// Archives the session (`at` is when) or makes it writable again (`None`).
async fn set_archived(call: &Call, id: Uuid, at: Option<DateTime<Utc>>) -> Reply {
    let event: ChangeEvent = if at.is_some() {
        |session| SessionEvent::SessionArchived { session }
    } else {
        |session| SessionEvent::SessionUnarchived { session }
    };
    let changes = SessionChanges {
        archived_at: Some(at),
        ..SessionChanges::default()
    };
    let head = change_session(call, id, event, changes).await?;
    respond_session(call, id, head).await
}

/// A participant of a session.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ParticipantView {
    pub user_id: Uuid,
    pub display_name: String,
    /// The role that applies in the session.
    pub role: Role,
    /// Set when the role is overridden for this session.
    pub role_override: Option<Role>,
    pub added_at: DateTime<Utc>,
}

/// `GET /api/sessions/{id}/participants`
#[utoipa::path(tag = "sessions", params(("id" = Uuid, Path)),
    responses((status = 200, body = Vec<ParticipantView>)), security(("bearer" = [])))]
#[get("/sessions/{id}/participants")]
pub async fn list_participants(call: Call, path: Path<Uuid>) -> Reply {
    participants(&call, *path).await
}

async fn participants(call: &Call, id: Uuid) -> Reply {
    let (mut conn, access) = open(call, id).await?;
    type Row = (Uuid, String, Option<String>, DateTime<Utc>, Option<String>);
    let rows: Vec<Row> = session_participants::table
        .inner_join(users::table)
        .left_join(
            workspace_members::table.on(workspace_members::user_id
                .eq(session_participants::user_id)
                .and(workspace_members::workspace_id.eq(access.session.workspace_id))),
        )
        .filter(session_participants::session_id.eq(id))
        .order(session_participants::added_at.asc())
        .select((
            session_participants::user_id,
            users::display_name,
            session_participants::role_override,
            session_participants::added_at,
            workspace_members::role.nullable(),
        ))
        .load(&mut conn)
        .await?;
    let views: Vec<ParticipantView> = rows
        .into_iter()
        .map(|(user_id, display_name, role_override, added_at, ws_role)| {
            let role_override: Option<Role> = role_override.and_then(|r| r.parse().ok());
            let role = role_override
                .or_else(|| ws_role.and_then(|r| r.parse().ok()))
                .unwrap_or(Role::Guest);
            ParticipantView {
                user_id,
                display_name,
                role,
                role_override,
                added_at,
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(views))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct AddParticipantRequest {
    pub user_id: Uuid,
    /// Replace the member's workspace role inside this session (never beyond the caller's own
    /// permissions).
    pub role_override: Option<Role>,
}

/// `POST /api/sessions/{id}/participants` — add a workspace member (creator or
/// `manage_sessions`).
#[utoipa::path(tag = "sessions", params(("id" = Uuid, Path)), request_body = AddParticipantRequest,
    responses((status = 200, body = Vec<ParticipantView>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
#[post("/sessions/{id}/participants")]
pub async fn add_participant(call: Call, path: Path<Uuid>, body: Json<AddParticipantRequest>) -> Reply {
    let (id, target, role_override) = (*path, body.user_id, body.role_override);
    change_participant(&call, id, target, move |conn, access| {
        async move {
            access.require_manage()?;
            if let Some(role) = role_override
                && !role.permissions().is_subset(access.permissions)
            {
                return Err(AppError::forbidden(
                    "you cannot give a role with more permissions than your own",
                ));
            }
            let Some(member) = find_member(conn, access.session.workspace_id, target).await? else {
                return Err(AppError::new(
                    ErrorCode::MemberNotFound,
                    "that user is not a member of the workspace",
                ));
            };
            // Nor change the standing of someone who can do more than you.
            let mightier = !member.effective().is_subset(access.permissions);
            if role_override.is_some() && target != access.user_id && mightier {
                return Err(AppError::forbidden(
                    "you cannot override the role of someone with more permissions than yours",
                ));
            }
            let role_override = role_override.map(|r| r.as_str());
            store::add_participant(conn, id, target, role_override, access.user_id).await
        }
        .scope_boxed()
    })
    .await?;
    participants(&call, id).await
}

/// `DELETE /api/sessions/{id}/participants/{user_id}` — remove a participant (creator or
/// `manage_sessions`; anyone may remove themselves).
#[utoipa::path(tag = "sessions", params(("id" = Uuid, Path), ("user_id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
#[delete("/sessions/{id}/participants/{user_id}")]
pub async fn remove_participant(call: Call, path: Path<(Uuid, Uuid)>) -> Reply {
    let (id, target) = *path;
    change_participant(&call, id, target, move |conn, access| {
        async move {
            if target != access.user_id {
                access.require_manage()?;
            }
            let removed = diesel::delete(session_participants::table.find((id, target)))
                .execute(conn)
                .await?;
            db::touched(removed, || {
                AppError::new(ErrorCode::MemberNotFound, "that user is not a participant")
            })?;
            let removed = SessionEvent::ParticipantRemoved {
                user_id: target,
                reason: None,
            };
            removed.append(conn, id, Some(access.user_id)).await
        }
        .scope_boxed()
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct HistoryQuery {
    /// Messages created before this seq (newest page first when only this is given).
    pub before_seq: Option<i64>,
    /// Messages created after this seq.
    pub after_seq: Option<i64>,
    /// 1–200, default 50.
    pub limit: Option<i64>,
}

/// A reaction summary of one emoji on a message.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReactionView {
    pub emoji: String,
    pub user_ids: Vec<Uuid>,
}

/// A message with its reactions.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistoryMessage {
    #[serde(flatten)]
    pub message: MessageView,
    pub reactions: Vec<ReactionView>,
}

/// A page of history, oldest first.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistoryPage {
    pub messages: Vec<HistoryMessage>,
    /// Whether more messages lie beyond this page in the requested direction.
    pub has_more: bool,
    /// The topic's last seq when the page was read: subscribe with `after_seq` = this.
    pub head_seq: i64,
}

/// `GET /api/sessions/{id}/messages` — message history, paginated by seq.
#[utoipa::path(tag = "sessions", params(("id" = Uuid, Path), HistoryQuery),
    responses((status = 200, body = HistoryPage), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
#[get("/sessions/{id}/messages")]
pub async fn list_messages(call: Call, path: Path<Uuid>, query: Query<HistoryQuery>) -> Reply {
    let (id, limit) = (*path, Limit::parse(query.limit)?);
    let (mut conn, access) = open(&call, id).await?;
    access
        .require(Permission::ViewSessions)
        .or_else(|e| if access.participant { Ok(()) } else { Err(e) })?;
    let head_seq = events::last_seq(&mut conn, &store::topic(id)).await?;
    let mut q = messages::table
        .filter(messages::session_id.eq(id))
        .select(MessageView::as_select())
        .limit(limit.probe())
        .into_boxed();
    if let Some(after) = query.after_seq {
        q = q.filter(messages::seq.gt(after));
    }
    if let Some(before) = query.before_seq {
        q = q.filter(messages::seq.lt(before));
    }
    // Only `before_seq` (or nothing): the newest page; otherwise read forward.
    let backwards = query.after_seq.is_none();
    q = if backwards {
        q.order(messages::seq.desc())
    } else {
        q.order(messages::seq.asc())
    };
    let (mut rows, has_more) = limit.page(q.load(&mut conn).await?);
    if backwards {
        rows.reverse();
    }
    let messages = with_reactions(&mut conn, rows).await?;
    Ok(HttpResponse::Ok().json(HistoryPage {
        messages,
        has_more,
        head_seq,
    }))
}

/// The messages with their reactions, grouped by emoji in the order they were given.
async fn with_reactions(conn: &mut AsyncPgConnection, rows: Vec<MessageView>) -> AppResult<Vec<HistoryMessage>> {
    let ids: Vec<Uuid> = rows.iter().map(|m| m.id).collect();
    let reactions: Vec<(Uuid, String, Uuid)> = message_reactions::table
        .filter(message_reactions::message_id.eq_any(&ids))
        .order((
            message_reactions::message_id,
            message_reactions::emoji,
            message_reactions::created_at,
        ))
        .select((
            message_reactions::message_id,
            message_reactions::emoji,
            message_reactions::user_id,
        ))
        .load(conn)
        .await?;
    let messages = rows
        .into_iter()
        .map(|message| {
            let mut summary: Vec<ReactionView> = Vec::new();
            for (_, emoji, user) in reactions.iter().filter(|r| r.0 == message.id) {
                match summary.iter_mut().find(|r| &r.emoji == emoji) {
                    Some(r) => r.user_ids.push(*user),
                    None => summary.push(ReactionView {
                        emoji: emoji.clone(),
                        user_ids: vec![*user],
                    }),
                }
            }
            HistoryMessage {
                message,
                reactions: summary,
            }
        })
        .collect();
    Ok(messages)
}
