//! Artifact REST endpoints: create, list, get (with the current text), rename, delete, and
//! connect tokens for the live-editing socket.

use crate::artifacts::store::{self, ArtifactRow};
use crate::auth::secrets::{self, SecretKind};
use crate::auth::{Auth, Permission, UserAuth, authorize};
use crate::db::schema::{artifact_tokens, artifacts, chat_sessions, events as events_table, topics};
use crate::error::{AppError, AppResult, ErrorBody, ErrorCode};
use crate::events;
use crate::state::AppState;
use crate::validate;
use actix_web::{HttpResponse, delete, get, patch, post, web};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How long a connect token stays usable (the provider reconnects with it).
pub const TOKEN_TTL_MINUTES: i64 = 30;

/// An artifact. `content` is the committed text (only in single-artifact responses).
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ArtifactView {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub session_id: Option<Uuid>,
    pub message_id: Option<Uuid>,
    pub kind: String,
    pub title: String,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Set on a branch: the artifact it was forked from.
    pub branch_of: Option<Uuid>,
    pub fork_version_id: Option<Uuid>,
    pub branch_name: Option<String>,
    pub merged_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// The seq of the last committed update included in `content`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<i64>,
}

pub fn view(row: ArtifactRow, content: Option<(String, i64)>) -> ArtifactView {
    let (content, seq) = content.map(|(c, s)| (Some(c), Some(s))).unwrap_or((None, None));
    ArtifactView {
        id: row.id,
        workspace_id: row.workspace_id,
        session_id: row.session_id,
        message_id: row.message_id,
        kind: row.kind,
        title: row.title,
        created_by: row.created_by,
        created_at: row.created_at,
        updated_at: row.updated_at,
        branch_of: row.branch_of,
        fork_version_id: row.fork_version_id,
        branch_name: row.branch_name,
        merged_at: row.merged_at,
        content,
        seq,
    }
}

fn validate_kind(kind: &str) -> AppResult<String> {
    let ok = (1..=32).contains(&kind.len()) && kind.chars().all(|c| c.is_ascii_lowercase() || c == '_' || c == '-');
    if !ok {
        return Err(AppError::validation(
            "`kind` must be 1–32 lower-case letters, `-` or `_` (e.g. text, code, sheet)",
        ));
    }
    Ok(kind.to_owned())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CreateArtifactRequest {
    /// 1 to 200 characters.
    pub title: String,
    /// `text`, `code`, `sheet`, … (default `text`).
    pub kind: Option<String>,
    /// Initial text.
    pub content: Option<String>,
    /// Tie it to a chat session of the same workspace (and optionally one message).
    pub session_id: Option<Uuid>,
    pub message_id: Option<Uuid>,
}

/// Creates the artifact row and, with initial content, its first update; used by branches too.
pub async fn insert(
    conn: &mut diesel_async::AsyncPgConnection,
    row: ArtifactRow,
    initial_state: Option<Vec<u8>>,
) -> AppResult<ArtifactRow> {
    let row: ArtifactRow = diesel::insert_into(artifacts::table)
        .values((
            artifacts::id.eq(row.id),
            artifacts::workspace_id.eq(row.workspace_id),
            artifacts::session_id.eq(row.session_id),
            artifacts::message_id.eq(row.message_id),
            artifacts::kind.eq(&row.kind),
            artifacts::title.eq(&row.title),
            artifacts::created_by.eq(row.created_by),
            artifacts::branch_of.eq(row.branch_of),
            artifacts::fork_version_id.eq(row.fork_version_id),
            artifacts::branch_name.eq(&row.branch_name),
        ))
        .returning(ArtifactRow::as_returning())
        .get_result(conn)
        .await?;
    if let Some(state) = initial_state {
        let topic = store::topic(row.id);
        let seq = events::reserve(conn, &topic, 1).await?;
        let data = store::update_data(&state, Some(row.created_by));
        events::insert(conn, &topic, seq, store::UPDATE_KIND, data, Some(row.created_by)).await?;
    }
    Ok(row)
}

/// `POST /api/workspaces/{id}/artifacts` — create an artifact (`edit_artifacts`).
#[utoipa::path(tag = "artifacts", params(("id" = Uuid, Path)), request_body = CreateArtifactRequest,
    responses((status = 201, body = ArtifactView), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
#[post("/workspaces/{id}/artifacts")]
pub async fn create_artifact(
    UserAuth(user): UserAuth,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    body: web::Json<CreateArtifactRequest>,
) -> AppResult<HttpResponse> {
    let workspace_id = path.into_inner();
    let title = validate::text("title", &body.title, 1, 200)?;
    let kind = validate_kind(body.kind.as_deref().unwrap_or("text"))?;
    if body.content.as_ref().is_some_and(|c| c.len() > 1_000_000) {
        return Err(AppError::validation("`content` must be at most 1 MB"));
    }
    let mut conn = state.pool.get().await?;
    authorize(
        &mut conn,
        &crate::auth::Principal::User(user.clone()),
        workspace_id,
        Permission::EditArtifacts,
    )
    .await?;
    if let Some(session_id) = body.session_id {
        let in_workspace: bool = diesel::select(diesel::dsl::exists(
            chat_sessions::table
                .find(session_id)
                .filter(chat_sessions::workspace_id.eq(workspace_id)),
        ))
        .get_result(&mut conn)
        .await?;
        if !in_workspace {
            return Err(AppError::new(
                ErrorCode::SessionNotFound,
                "no such session in this workspace",
            ));
        }
        if let Some(message_id) = body.message_id {
            use crate::db::schema::messages;
            let in_session: bool = diesel::select(diesel::dsl::exists(
                messages::table
                    .find(message_id)
                    .filter(messages::session_id.eq(session_id)),
            ))
            .get_result(&mut conn)
            .await?;
            if !in_session {
                return Err(AppError::new(
                    ErrorCode::MessageNotFound,
                    "no such message in that session",
                ));
            }
        }
    } else if body.message_id.is_some() {
        return Err(AppError::validation("`message_id` needs `session_id`"));
    }
    let row = ArtifactRow {
        id: Uuid::new_v4(),
        workspace_id,
        session_id: body.session_id,
        message_id: body.session_id.and(body.message_id),
        kind,
        title,
        created_by: user.id,
        created_at: Utc::now(),
        updated_at: Utc::now(),
        branch_of: None,
        fork_version_id: None,
        branch_name: None,
        merged_at: None,
    };
    let initial = body
        .content
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(store::doc_with_text);
    let text = body.content.clone().unwrap_or_default();
    let row = conn
        .transaction::<_, AppError, _>(async |conn| insert(conn, row, initial).await)
        .await?;
    let seq = if text.is_empty() { 0 } else { 1 };
    Ok(HttpResponse::Created().json(view(row, Some((text, seq)))))
}

/// `GET /api/workspaces/{id}/artifacts` — the workspace's artifacts and branches (`view_artifacts`).
#[utoipa::path(tag = "artifacts", params(("id" = Uuid, Path)),
    responses((status = 200, body = Vec<ArtifactView>), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
#[get("/workspaces/{id}/artifacts")]
pub async fn list_artifacts(
    Auth(principal): Auth,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    let workspace_id = path.into_inner();
    let mut conn = state.pool.get().await?;
    authorize(&mut conn, &principal, workspace_id, Permission::ViewArtifacts).await?;
    let rows: Vec<ArtifactRow> = artifacts::table
        .filter(artifacts::workspace_id.eq(workspace_id))
        .order(artifacts::created_at.desc())
        .select(ArtifactRow::as_select())
        .load(&mut conn)
        .await?;
    Ok(HttpResponse::Ok().json(rows.into_iter().map(|r| view(r, None)).collect::<Vec<_>>()))
}

/// `GET /api/artifacts/{id}` — one artifact with its committed text (`view_artifacts`).
#[utoipa::path(tag = "artifacts", params(("id" = Uuid, Path)),
    responses((status = 200, body = ArtifactView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
#[get("/artifacts/{id}")]
pub async fn get_artifact(
    Auth(principal): Auth,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    let id = path.into_inner();
    let mut conn = state.pool.get().await?;
    let (row, _) = store::authorize(&mut conn, &principal, id, Permission::ViewArtifacts).await?;
    // The live editor's committed text when it runs here; else snapshot + log.
    let (_, text, seq) = crate::artifacts::versions::current(&state, &mut conn, id).await?;
    Ok(HttpResponse::Ok().json(view(row, Some((text, seq)))))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct RenameArtifactRequest {
    pub title: String,
}

/// `PATCH /api/artifacts/{id}` — rename (`edit_artifacts`).
#[utoipa::path(tag = "artifacts", params(("id" = Uuid, Path)), request_body = RenameArtifactRequest,
    responses((status = 200, body = ArtifactView), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
#[patch("/artifacts/{id}")]
pub async fn rename_artifact(
    Auth(principal): Auth,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    body: web::Json<RenameArtifactRequest>,
) -> AppResult<HttpResponse> {
    let id = path.into_inner();
    let title = validate::text("title", &body.title, 1, 200)?;
    let mut conn = state.pool.get().await?;
    store::authorize(&mut conn, &principal, id, Permission::EditArtifacts).await?;
    let row: ArtifactRow = diesel::update(artifacts::table.find(id))
        .set((artifacts::title.eq(&title), artifacts::updated_at.eq(Utc::now())))
        .returning(ArtifactRow::as_returning())
        .get_result(&mut conn)
        .await?;
    Ok(HttpResponse::Ok().json(view(row, None)))
}

/// `DELETE /api/artifacts/{id}` — delete with its history and branches (`manage_artifacts`,
/// or `edit_artifacts` for its creator). Live editors are disconnected.
#[utoipa::path(tag = "artifacts", params(("id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
#[delete("/artifacts/{id}")]
pub async fn delete_artifact(
    Auth(principal): Auth,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    let id = path.into_inner();
    let mut conn = state.pool.get().await?;
    let (row, acc) = store::authorize(&mut conn, &principal, id, Permission::EditArtifacts).await?;
    if principal.user_id() != Some(row.created_by) {
        acc.require(Permission::ManageArtifacts)?;
    }
    conn.transaction::<_, AppError, _>(async |conn| {
        async move {
            let mut ids = vec![id];
            ids.extend(
                artifacts::table
                    .filter(artifacts::branch_of.eq(id))
                    .select(artifacts::id)
                    .load::<Uuid>(conn)
                    .await?,
            );
            let topic_names: Vec<String> = ids.iter().map(|i| store::topic(*i)).collect();
            diesel::delete(events_table::table.filter(events_table::topic.eq_any(&topic_names)))
                .execute(conn)
                .await?;
            diesel::delete(topics::table.filter(topics::topic.eq_any(&topic_names)))
                .execute(conn)
                .await?;
            diesel::delete(artifacts::table.find(id)).execute(conn).await?;
            Ok(())
        }
        .await
    })
    .await?;
    state.hub.access_changed(row.workspace_id, None);
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ConnectTokenRequest {
    /// `read` (needs `view_artifacts`) or `write` (needs `edit_artifacts`).
    pub access: String,
}

/// A token for the live-editing socket.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ArtifactConnectToken {
    pub token: String,
    pub access: String,
    pub expires_at: DateTime<Utc>,
    /// For `new WebsocketProvider(server_url, room, doc, { params: { token } })`
    /// (`server_url` is relative to this server: prefix `ws://host` or `wss://host`).
    pub server_url: String,
    pub room: Uuid,
}

/// `POST /api/artifacts/{id}/connect-token` — a token for `/ws/artifacts/{id}`: one artifact,
/// one access level, reusable for reconnects until it expires (30 minutes).
#[utoipa::path(tag = "artifacts", params(("id" = Uuid, Path)), request_body = ConnectTokenRequest,
    responses((status = 201, body = ArtifactConnectToken), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
#[post("/artifacts/{id}/connect-token")]
pub async fn create_connect_token(
    UserAuth(user): UserAuth,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    body: web::Json<ConnectTokenRequest>,
) -> AppResult<HttpResponse> {
    let id = path.into_inner();
    let permission = match body.access.as_str() {
        "read" => Permission::ViewArtifacts,
        "write" => Permission::EditArtifacts,
        _ => return Err(AppError::validation("`access` must be `read` or `write`")),
    };
    let mut conn = state.pool.get().await?;
    store::authorize(&mut conn, &crate::auth::Principal::User(user.clone()), id, permission).await?;
    let (token, hash) = secrets::generate(SecretKind::ArtifactToken);
    let expires_at = Utc::now() + chrono::Duration::minutes(TOKEN_TTL_MINUTES);
    diesel::insert_into(artifact_tokens::table)
        .values((
            artifact_tokens::token_hash.eq(hash),
            artifact_tokens::artifact_id.eq(id),
            artifact_tokens::user_id.eq(user.id),
            artifact_tokens::access.eq(&body.access),
            artifact_tokens::expires_at.eq(expires_at),
        ))
        .execute(&mut conn)
        .await?;
    Ok(HttpResponse::Created().json(ArtifactConnectToken {
        token,
        access: body.access.clone(),
        expires_at,
        server_url: "/ws/artifacts".to_owned(),
        room: id,
    }))
}
