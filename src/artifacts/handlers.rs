//! Artifact REST endpoints: create, list, get (with the current text), rename, delete, and
//! connect tokens for the live-editing socket.

use crate::api::{Call, Reply};
use crate::api::{Json, Path};
use crate::artifacts::store::{self, ArtifactRow};
use crate::audit::{self, Action};
use crate::auth::secrets::{self, SecretKind};
use crate::auth::{AuthUser, Permission};
use crate::db;
use crate::db::schema::{artifact_tokens, artifacts, chat_sessions, events as events_table, topics};
use crate::error::{AppError, AppResult, ErrorBody, ErrorCode};
use crate::events;
use crate::validate;
use actix_web::{HttpResponse, delete, get, patch, post};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use scoped_futures::ScopedFutureExt;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How long a connect token stays usable (the provider reconnects with it).
pub const TOKEN_TTL_MINUTES: i64 = 30;

/// An artifact. `content` is the committed text (only in single-artifact responses).
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ArtifactView {
    #[serde(flatten)]
    pub artifact: ArtifactRow,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// The seq of the last committed update included in `content`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<i64>,
}

pub fn view(artifact: ArtifactRow, content: Option<(String, i64)>) -> ArtifactView {
    let (content, seq) = content.unzip();
    ArtifactView { artifact, content, seq }
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

impl CreateArtifactRequest {
    /// The new row (title and kind checked) and its initial text.
    fn parse(&self, workspace_id: Uuid, created_by: Uuid) -> AppResult<(ArtifactRow, String)> {
        let title = validate::text("title", &self.title, 1, 200)?;
        let kind = validate_kind(self.kind.as_deref().unwrap_or("text"))?;
        if self.content.as_ref().is_some_and(|c| c.len() > 1_000_000) {
            return Err(AppError::validation("`content` must be at most 1 MB"));
        }
        let row = ArtifactRow {
            id: Uuid::new_v4(),
            workspace_id,
            session_id: self.session_id,
            message_id: self.session_id.and(self.message_id),
            kind,
            title,
            created_by,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            branch_of: None,
            fork_version_id: None,
            branch_name: None,
            merged_at: None,
        };
        Ok((row, self.content.clone().unwrap_or_default()))
    }

    /// The session (and message) it is tied to must be in the same workspace.
    async fn check_links(&self, conn: &mut AsyncPgConnection, workspace_id: Uuid) -> AppResult<()> {
        use crate::db::schema::messages;
        let Some(session_id) = self.session_id else {
            return match self.message_id {
                Some(_) => Err(AppError::validation("`message_id` needs `session_id`")),
                None => Ok(()),
            };
        };
        let session = chat_sessions::table.find(session_id);
        if !db::exists(conn, session.filter(chat_sessions::workspace_id.eq(workspace_id))).await? {
            return Err(AppError::new(
                ErrorCode::SessionNotFound,
                "no such session in this workspace",
            ));
        }
        let Some(message_id) = self.message_id else {
            return Ok(());
        };
        let message = messages::table.find(message_id);
        if !db::exists(conn, message.filter(messages::session_id.eq(session_id))).await? {
            return Err(AppError::new(
                ErrorCode::MessageNotFound,
                "no such message in that session",
            ));
        }
        Ok(())
    }
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
pub async fn create_artifact(call: Call<AuthUser>, path: Path<Uuid>, body: Json<CreateArtifactRequest>) -> Reply {
    let (row, text) = body.parse(*path, call.caller.id)?;
    let (mut conn, _) = call.authorized(*path, Permission::EditArtifacts).await?;
    body.check_links(&mut conn, *path).await?;
    let initial = (!text.is_empty()).then(|| store::doc_with_text(&text));
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
pub async fn list_artifacts(call: Call, path: Path<Uuid>) -> Reply {
    let (mut conn, _) = call.authorized(*path, Permission::ViewArtifacts).await?;
    let rows: Vec<ArtifactRow> = artifacts::table
        .filter(artifacts::workspace_id.eq(*path))
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
pub async fn get_artifact(call: Call, path: Path<Uuid>) -> Reply {
    let (mut conn, row, _) = store::authorized(&call, *path, Permission::ViewArtifacts).await?;
    // The live editor's committed text when it runs here; else snapshot + log.
    let (_, text, seq) = crate::artifacts::versions::current(&call.state, &mut conn, row.id).await?;
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
pub async fn rename_artifact(call: Call, path: Path<Uuid>, body: Json<RenameArtifactRequest>) -> Reply {
    let title = validate::text("title", &body.title, 1, 200)?;
    let (mut conn, ..) = store::authorized(&call, *path, Permission::EditArtifacts).await?;
    let row: ArtifactRow = diesel::update(artifacts::table.find(*path))
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
pub async fn delete_artifact(call: Call, path: Path<Uuid>) -> Reply {
    let (mut conn, row, acc) = store::authorized(&call, *path, Permission::EditArtifacts).await?;
    if call.caller.user_id() != Some(row.created_by) {
        acc.require(Permission::ManageArtifacts)?;
    }
    let (id, workspace, title) = (row.id, row.workspace_id, row.title.clone());
    let actor = call.actor();
    audit::commit(&mut conn, &actor, |conn| {
        async move {
            let branches = artifacts::table
                .filter(artifacts::branch_of.eq(id))
                .select(artifacts::id);
            let branches = branches.load::<Uuid>(conn).await?;
            let mut ids = vec![id];
            ids.extend(branches.iter().copied());
            let topic_names: Vec<String> = ids.iter().map(|i| store::topic(*i)).collect();
            diesel::delete(events_table::table.filter(events_table::topic.eq_any(&topic_names)))
                .execute(conn)
                .await?;
            diesel::delete(topics::table.filter(topics::topic.eq_any(&topic_names)))
                .execute(conn)
                .await?;
            diesel::delete(artifacts::table.find(id)).execute(conn).await?;
            let action = Action::ArtifactDelete {
                workspace,
                artifact: id,
                title,
                branches,
            };
            Ok((action, ()))
        }
        .scope_boxed()
    })
    .await?;
    call.state.hub.access_changed(row.workspace_id, None);
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
    /// Names the token to revoke it (`DELETE /api/artifact-tokens/{id}`).
    pub id: Uuid,
    pub token: String,
    pub access: String,
    pub expires_at: DateTime<Utc>,
    /// For `new WebsocketProvider(server_url, room, doc, { params: { token } })`
    /// (`server_url` is relative to this server: prefix `ws://host` or `wss://host`).
    pub server_url: String,
    pub room: Uuid,
}

/// `POST /api/artifacts/{id}/connect-token` — a token for `/ws/artifacts/{id}`: one artifact,
/// one access level, reusable for reconnects until it expires (30 minutes), is revoked, or
/// the login session that asked for it ends.
#[utoipa::path(tag = "artifacts", params(("id" = Uuid, Path)), request_body = ConnectTokenRequest,
    responses((status = 201, body = ArtifactConnectToken), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
#[post("/artifacts/{id}/connect-token")]
pub async fn create_connect_token(call: Call<AuthUser>, path: Path<Uuid>, body: Json<ConnectTokenRequest>) -> Reply {
    let permission = match body.access.as_str() {
        "read" => Permission::ViewArtifacts,
        "write" => Permission::EditArtifacts,
        _ => return Err(AppError::validation("`access` must be `read` or `write`")),
    };
    let (mut conn, row, _) = store::authorized(&call, *path, permission).await?;
    let (token, hash) = secrets::generate(SecretKind::ArtifactToken);
    let expires_at = Utc::now() + chrono::Duration::minutes(TOKEN_TTL_MINUTES);
    let id: Uuid = diesel::insert_into(artifact_tokens::table)
        .values((
            artifact_tokens::token_hash.eq(hash),
            artifact_tokens::artifact_id.eq(row.id),
            artifact_tokens::user_id.eq(call.caller.id),
            artifact_tokens::access.eq(&body.access),
            artifact_tokens::expires_at.eq(expires_at),
            // Logging out of this session ends the token and closes its sockets.
            artifact_tokens::login_session_id.eq(call.caller.session_id),
        ))
        .returning(artifact_tokens::id)
        .get_result(&mut conn)
        .await?;
    Ok(HttpResponse::Created().json(ArtifactConnectToken {
        id,
        token,
        access: body.access.clone(),
        expires_at,
        server_url: "/ws/artifacts".to_owned(),
        room: row.id,
    }))
}
