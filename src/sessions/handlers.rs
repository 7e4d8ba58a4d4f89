//! Session REST endpoints: create, list, get, update settings, archive, participants,
//! message history, and WebSocket connect tickets.

use crate::auth::authorize::find_member;
use crate::auth::{Auth, Permission, Principal, Role, UserAuth, authorize};
use crate::db::schema::{chat_sessions, message_reactions, messages, session_participants, topics, users};
use crate::error::{AppError, AppResult, ErrorBody, ErrorCode};
use crate::events::{self, Event};
use crate::sessions::access::{SessionAccess, SessionRow, Visibility, session_access};
use crate::sessions::registry::LiveSessions;
use crate::sessions::store::{self, MessageView};
use crate::state::AppState;
use crate::validate;
use actix_web::{HttpResponse, delete, get, patch, post, web};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use scoped_futures::ScopedFutureExt;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A chat session as the caller sees it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SessionView {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub title: String,
    pub visibility: Visibility,
    pub default_model: Option<String>,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub archived_at: Option<DateTime<Utc>>,
    /// When the AI answers: `off`, `mention` (a message containing `@ai`), `every_message`.
    pub ai_mode: String,
    /// The session topic's last seq: subscribe with `after_seq` = this to get only new events.
    pub head_seq: i64,
    /// The caller's role in this session (override or workspace role).
    pub my_role: Option<Role>,
    pub my_permissions: Vec<Permission>,
    pub participant: bool,
}

fn session_view(row: SessionRow, head_seq: i64, access: Option<&SessionAccess>) -> SessionView {
    SessionView {
        id: row.id,
        workspace_id: row.workspace_id,
        title: row.title,
        visibility: Visibility::parse(&row.visibility),
        default_model: row.default_model,
        created_by: row.created_by,
        created_at: row.created_at,
        updated_at: row.updated_at,
        archived_at: row.archived_at,
        ai_mode: row.ai_mode,
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
    /// Default `private`.
    pub visibility: Option<Visibility>,
    pub default_model: Option<String>,
    /// `off`, `mention` (default) or `every_message`.
    pub ai_mode: Option<String>,
}

/// `POST /api/workspaces/{id}/sessions` — start a chat session (`create_sessions`).
#[utoipa::path(tag = "sessions", params(("id" = Uuid, Path)), request_body = CreateSessionRequest,
    responses((status = 201, body = SessionView), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
#[post("/workspaces/{id}/sessions")]
pub async fn create_session(
    UserAuth(user): UserAuth,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    body: web::Json<CreateSessionRequest>,
) -> AppResult<HttpResponse> {
    let workspace_id = path.into_inner();
    let title = validate::text("title", &body.title, 1, 200)?;
    let model = validate_model(&body.default_model)?;
    let visibility = body.visibility.unwrap_or(Visibility::Private);
    let ai_mode = validate_ai_mode(body.ai_mode.as_deref().unwrap_or("mention"))?;
    let mut conn = state.pool.get().await?;
    authorize(
        &mut conn,
        &Principal::User(user.clone()),
        workspace_id,
        Permission::CreateSessions,
    )
    .await?;
    let (row, events) = events::commit(&mut conn, &state.hub, |conn| {
        async move {
            let row: SessionRow = diesel::insert_into(chat_sessions::table)
                .values((
                    chat_sessions::id.eq(Uuid::new_v4()),
                    chat_sessions::workspace_id.eq(workspace_id),
                    chat_sessions::title.eq(&title),
                    chat_sessions::visibility.eq(visibility.as_str()),
                    chat_sessions::default_model.eq(&model),
                    chat_sessions::ai_mode.eq(&ai_mode),
                    chat_sessions::created_by.eq(user.id),
                ))
                .returning(SessionRow::as_returning())
                .get_result(conn)
                .await?;
            let created = store::append(
                conn,
                row.id,
                "session.created",
                serde_json::json!({ "session": row }),
                Some(user.id),
            )
            .await?;
            let joined = store::add_participant(conn, row.id, user.id, None, user.id).await?;
            let events = vec![created, joined];
            Ok(((row, events.clone()), events))
        }
        .scope_boxed()
    })
    .await?
    .publish(&state.hub);
    let head = events.last().map(|e| e.seq).unwrap_or(0);
    let access = session_access(&mut conn, row.id, user.id).await?;
    Ok(HttpResponse::Created().json(session_view(row, head, Some(&access))))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ListSessionsQuery {
    /// Include archived sessions (default false).
    pub archived: Option<bool>,
}

/// `GET /api/workspaces/{id}/sessions` — the sessions the caller can see.
#[utoipa::path(tag = "sessions", params(("id" = Uuid, Path), ListSessionsQuery),
    responses((status = 200, body = Vec<SessionView>)), security(("bearer" = [])))]
#[get("/workspaces/{id}/sessions")]
pub async fn list_sessions(
    Auth(principal): Auth,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    query: web::Query<ListSessionsQuery>,
) -> AppResult<HttpResponse> {
    let workspace_id = path.into_inner();
    let mut conn = state.pool.get().await?;
    let acc = authorize(&mut conn, &principal, workspace_id, Permission::ViewSessions).await?;
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
            .filter(session_participants::user_id.nullable().eq(principal.user_id()))
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
    let heads: std::collections::HashMap<String, i64> = topics::table
        .filter(topics::topic.eq_any(&names))
        .select((topics::topic, topics::last_seq))
        .load::<(String, i64)>(&mut conn)
        .await?
        .into_iter()
        .collect();
    let caller = match principal.user_id() {
        Some(user) => {
            let member = find_member(&mut conn, workspace_id, user).await?;
            let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
            let joined: std::collections::HashMap<Uuid, Option<String>> = session_participants::table
                .filter(session_participants::user_id.eq(user))
                .filter(session_participants::session_id.eq_any(&ids))
                .select((session_participants::session_id, session_participants::role_override))
                .load::<(Uuid, Option<String>)>(&mut conn)
                .await?
                .into_iter()
                .collect();
            member.map(|m| (user, m, joined))
        }
        None => None,
    };
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

/// `GET /api/sessions/{id}` — one session.
#[utoipa::path(tag = "sessions", params(("id" = Uuid, Path)),
    responses((status = 200, body = SessionView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
#[get("/sessions/{id}")]
pub async fn get_session(
    Auth(principal): Auth,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    let id = path.into_inner();
    let mut conn = state.pool.get().await?;
    let access = session_access(&mut conn, id, user_of(&principal)?).await?;
    let head = events::last_seq(&mut conn, &store::topic(id)).await?;
    Ok(HttpResponse::Ok().json(session_view(access.session.clone(), head, Some(&access))))
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

/// Runs a settings change: authorize (creator or `manage_sessions`), update, append the
/// event, publish it to live subscribers after commit.
async fn change_session<F>(
    state: &AppState,
    principal: &Principal,
    id: Uuid,
    kind: &'static str,
    change: F,
) -> AppResult<(SessionAccess, Event)>
where
    F: for<'c> FnOnce(
            &'c mut AsyncPgConnection,
        ) -> scoped_futures::ScopedBoxFuture<'static, 'c, AppResult<serde_json::Value>>
        + Send
        + 'static,
{
    let user = user_of(principal)?;
    let mut conn = state.pool.get().await?;
    let (access, event) = events::commit(&mut conn, &state.hub, |conn| {
        async move {
            let access = session_access(conn, id, user).await?;
            access.require_manage()?;
            let data = change(conn).await?;
            let event = store::append(conn, id, kind, data, Some(user)).await?;
            Ok(((access, event.clone()), vec![event]))
        }
        .scope_boxed()
    })
    .await?
    .publish(&state.hub);
    Ok((access, event))
}

/// `PATCH /api/sessions/{id}` — change title, visibility or default model (creator or
/// `manage_sessions`).
#[utoipa::path(tag = "sessions", params(("id" = Uuid, Path)), request_body = UpdateSessionRequest,
    responses((status = 200, body = SessionView), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
#[patch("/sessions/{id}")]
pub async fn update_session(
    Auth(principal): Auth,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    body: web::Json<UpdateSessionRequest>,
) -> AppResult<HttpResponse> {
    let id = path.into_inner();
    let title = body
        .title
        .as_deref()
        .map(|t| validate::text("title", t, 1, 200))
        .transpose()?;
    let model = match body.default_model.as_deref() {
        Some("") => Some(None),
        Some(m) => Some(Some(validate::text("default_model", m, 1, 200)?)),
        None => None,
    };
    let visibility = body.visibility;
    let ai_mode = body.ai_mode.as_deref().map(validate_ai_mode).transpose()?;
    let (_, event) = change_session(&state, &principal, id, "session.updated", move |conn| {
        async move {
            if let Some(title) = &title {
                diesel::update(chat_sessions::table.find(id))
                    .set(chat_sessions::title.eq(title))
                    .execute(conn)
                    .await?;
            }
            if let Some(visibility) = visibility {
                diesel::update(chat_sessions::table.find(id))
                    .set(chat_sessions::visibility.eq(visibility.as_str()))
                    .execute(conn)
                    .await?;
            }
            if let Some(mode) = &ai_mode {
                diesel::update(chat_sessions::table.find(id))
                    .set(chat_sessions::ai_mode.eq(mode))
                    .execute(conn)
                    .await?;
            }
            if let Some(model) = &model {
                diesel::update(chat_sessions::table.find(id))
                    .set(chat_sessions::default_model.eq(model))
                    .execute(conn)
                    .await?;
            }
            let row: SessionRow = diesel::update(chat_sessions::table.find(id))
                .set(chat_sessions::updated_at.eq(Utc::now()))
                .returning(SessionRow::as_returning())
                .get_result(conn)
                .await?;
            Ok(serde_json::json!({ "session": row }))
        }
        .scope_boxed()
    })
    .await?;
    if visibility == Some(Visibility::Private) {
        state.hub.get::<LiveSessions>().session_access_changed(id, None);
    }
    respond_session(&state, &principal, id, event.seq).await
}

async fn respond_session(state: &AppState, principal: &Principal, id: Uuid, head: i64) -> AppResult<HttpResponse> {
    let mut conn = state.pool.get().await?;
    let access = session_access(&mut conn, id, user_of(principal)?).await?;
    let head = head.max(events::last_seq(&mut conn, &store::topic(id)).await?);
    Ok(HttpResponse::Ok().json(session_view(access.session.clone(), head, Some(&access))))
}

async fn set_archived(state: &AppState, principal: &Principal, id: Uuid, archived: bool) -> AppResult<HttpResponse> {
    let kind = if archived {
        "session.archived"
    } else {
        "session.unarchived"
    };
    let (_, event) = change_session(state, principal, id, kind, move |conn| {
        async move {
            let at = archived.then(Utc::now);
            let row: SessionRow = diesel::update(chat_sessions::table.find(id))
                .set((
                    chat_sessions::archived_at.eq(at),
                    chat_sessions::updated_at.eq(Utc::now()),
                ))
                .returning(SessionRow::as_returning())
                .get_result(conn)
                .await?;
            Ok(serde_json::json!({ "session": row }))
        }
        .scope_boxed()
    })
    .await?;
    respond_session(state, principal, id, event.seq).await
}

/// `POST /api/sessions/{id}/archive` — archive: readable, no longer writable.
#[utoipa::path(tag = "sessions", params(("id" = Uuid, Path)),
    responses((status = 200, body = SessionView), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
#[post("/sessions/{id}/archive")]
pub async fn archive_session(
    Auth(principal): Auth,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    set_archived(&state, &principal, path.into_inner(), true).await
}

/// `POST /api/sessions/{id}/unarchive` — make an archived session writable again.
#[utoipa::path(tag = "sessions", params(("id" = Uuid, Path)),
    responses((status = 200, body = SessionView), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
#[post("/sessions/{id}/unarchive")]
pub async fn unarchive_session(
    Auth(principal): Auth,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    set_archived(&state, &principal, path.into_inner(), false).await
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
pub async fn list_participants(
    Auth(principal): Auth,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    participants(&state, &principal, path.into_inner()).await
}

async fn participants(state: &AppState, principal: &Principal, id: Uuid) -> AppResult<HttpResponse> {
    let mut conn = state.pool.get().await?;
    let access = session_access(&mut conn, id, user_of(principal)?).await?;
    use crate::db::schema::workspace_members;
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
pub async fn add_participant(
    Auth(principal): Auth,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    body: web::Json<AddParticipantRequest>,
) -> AppResult<HttpResponse> {
    let id = path.into_inner();
    let user = user_of(&principal)?;
    let (target, role_override) = (body.user_id, body.role_override);
    let mut conn = state.pool.get().await?;
    events::commit(&mut conn, &state.hub, |conn| {
        async move {
            let access = session_access(conn, id, user).await?;
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
            if role_override.is_some() && target != user && !member.effective().is_subset(access.permissions) {
                return Err(AppError::forbidden(
                    "you cannot override the role of someone with more permissions than yours",
                ));
            }

            let event = store::add_participant(conn, id, target, role_override.map(|r| r.as_str()), user).await?;
            Ok(((), vec![event]))
        }
        .scope_boxed()
    })
    .await?
    .publish(&state.hub);
    state.hub.get::<LiveSessions>().session_access_changed(id, Some(target));
    participants(&state, &principal, id).await
}

/// `DELETE /api/sessions/{id}/participants/{user_id}` — remove a participant (creator or
/// `manage_sessions`; anyone may remove themselves).
#[utoipa::path(tag = "sessions", params(("id" = Uuid, Path), ("user_id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
#[delete("/sessions/{id}/participants/{user_id}")]
pub async fn remove_participant(
    Auth(principal): Auth,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
) -> AppResult<HttpResponse> {
    let (id, target) = path.into_inner();
    let user = user_of(&principal)?;
    let mut conn = state.pool.get().await?;
    events::commit(&mut conn, &state.hub, |conn| {
        async move {
            let access = session_access(conn, id, user).await?;
            if target != user {
                access.require_manage()?;
            }
            let removed = diesel::delete(session_participants::table.find((id, target)))
                .execute(conn)
                .await?;
            if removed == 0 {
                return Err(AppError::new(
                    ErrorCode::MemberNotFound,
                    "that user is not a participant",
                ));
            }
            let event = store::append(
                conn,
                id,
                "participant.removed",
                serde_json::json!({ "user_id": target }),
                Some(user),
            )
            .await?;
            Ok(((), vec![event]))
        }
        .scope_boxed()
    })
    .await?
    .publish(&state.hub);
    state.hub.get::<LiveSessions>().session_access_changed(id, Some(target));
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
pub async fn list_messages(
    Auth(principal): Auth,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    query: web::Query<HistoryQuery>,
) -> AppResult<HttpResponse> {
    let id = path.into_inner();
    let limit = query.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(AppError::validation("`limit` must be between 1 and 200"));
    }
    let mut conn = state.pool.get().await?;
    let access = session_access(&mut conn, id, user_of(&principal)?).await?;
    access
        .require(Permission::ViewSessions)
        .or_else(|e| if access.participant { Ok(()) } else { Err(e) })?;
    let head_seq = events::last_seq(&mut conn, &store::topic(id)).await?;
    let mut q = messages::table
        .filter(messages::session_id.eq(id))
        .select(MessageView::as_select())
        .limit(limit + 1)
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
    let mut rows: Vec<MessageView> = q.load(&mut conn).await?;
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    if backwards {
        rows.reverse();
    }
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
        .load(&mut conn)
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
    Ok(HttpResponse::Ok().json(HistoryPage {
        messages,
        has_more,
        head_seq,
    }))
}
