//! Versions and branches: save a named version, list and read them, diff any two, revert
//! (applied to the live document as ordinary edits), fork a branch from a version into its
//! own live document, and merge it back with a three-way text merge.

use crate::api::Caller;
use crate::api::{Call, Reply};
use crate::api::{Json, Path, Query};
use crate::artifacts::editor::{Current, ReplaceText, Replaced, TextTarget};
use crate::artifacts::handlers::{ArtifactView, insert, view};
use crate::artifacts::registry::Editors;
use crate::artifacts::store::{self, ArtifactRow};
use crate::artifacts::textmerge::{self, Conflict, Resolution};
use crate::audit::{self, Action, Actor};
use crate::auth::{AuthUser, Permission};
use crate::db;
use crate::db::schema::{artifact_versions, artifacts};
use crate::error::{AppError, AppResult, ErrorBody, ErrorCode};
use crate::pagination::Limit;
use crate::state::AppState;
use crate::validate;
use actix_web::{HttpResponse, get, post};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use scoped_futures::ScopedFutureExt;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A version. `content` only when reading one version.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema, Queryable, Selectable)]
#[diesel(table_name = artifact_versions)]
pub struct VersionView {
    pub id: Uuid,
    pub artifact_id: Uuid,
    /// 1, 2, 3… per artifact.
    pub number: i32,
    /// `save`, `revert` or `merge`.
    #[diesel(deserialize_as = String)]
    pub kind: VersionKind,
    pub name: String,
    pub message: String,
    pub author_id: Option<Uuid>,
    pub parent_id: Option<Uuid>,
    /// The seq of the last update the version includes.
    pub upto_seq: i64,
    pub created_at: DateTime<Utc>,
}

/// How a version came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VersionKind {
    /// Saved by someone as a named version.
    Save,
    /// Recorded by a revert to an older version.
    Revert,
    /// Recorded on the target of a merged branch.
    Merge,
}

impl VersionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            VersionKind::Save => "save",
            VersionKind::Revert => "revert",
            VersionKind::Merge => "merge",
        }
    }
}

/// A kind as stored (the table allows only these three).
impl TryFrom<String> for VersionKind {
    type Error = String;

    fn try_from(stored: String) -> Result<Self, String> {
        let kinds = [VersionKind::Save, VersionKind::Revert, VersionKind::Merge];
        kinds.into_iter().find(|k| k.as_str() == stored).ok_or(stored)
    }
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VersionWithContent {
    #[serde(flatten)]
    pub version: VersionView,
    pub content: String,
}

/// The committed document now: from the live editor on this node when there is one (it
/// holds exactly what was committed), else from the log.
pub(crate) async fn current(
    state: &AppState,
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> AppResult<(Vec<u8>, String, i64)> {
    if let Some(editor) = state.hub.get::<Editors>().get(id)
        && let Ok(result) = editor.send(Current).await
    {
        return result;
    }
    let (doc, seq) = store::load(conn, id).await?;
    Ok((store::state_of(&doc), store::text_of(&doc), seq))
}

/// Records a version of the given state: its kind, name and message, by `author`, with the
/// audit row of the change it records (`audited` names it from the new version).
async fn record(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    (kind, name, message): (VersionKind, &str, &str),
    (author, actor): (Uuid, &Actor),
    (state, content, seq): (Vec<u8>, String, i64),
    audited: impl FnOnce(&VersionView) -> Action + Send,
) -> AppResult<VersionView> {
    let (name, message) = (name.to_owned(), message.to_owned());
    // The document's text as `text`: a NUL typed into the document cannot be stored.
    let content = crate::validate::storable(&content).into_owned();
    conn.transaction::<_, AppError, _>(async |conn| {
        async move {
            // Serialize version numbering per artifact.
            artifacts::table
                .find(id)
                .select(artifacts::id)
                .for_update()
                .first::<Uuid>(conn)
                .await?;
            let last: Option<(Uuid, i32)> = artifact_versions::table
                .filter(artifact_versions::artifact_id.eq(id))
                .order(artifact_versions::number.desc())
                .select((artifact_versions::id, artifact_versions::number))
                .first(conn)
                .await
                .optional()?;
            let version = diesel::insert_into(artifact_versions::table)
                .values((
                    artifact_versions::id.eq(Uuid::new_v4()),
                    artifact_versions::artifact_id.eq(id),
                    artifact_versions::number.eq(last.map(|l| l.1 + 1).unwrap_or(1)),
                    artifact_versions::kind.eq(kind.as_str()),
                    artifact_versions::name.eq(&name),
                    artifact_versions::message.eq(&message),
                    artifact_versions::author_id.eq(author),
                    artifact_versions::parent_id.eq(last.map(|l| l.0)),
                    artifact_versions::state.eq(&state),
                    artifact_versions::content.eq(&content),
                    artifact_versions::upto_seq.eq(seq),
                ))
                .returning(VersionView::as_returning())
                .get_result(conn)
                .await?;
            audit::record(conn, actor, audited(&version)).await?;
            Ok(version)
        }
        .await
    })
    .await
}

async fn find_version(
    conn: &mut AsyncPgConnection,
    artifact: Uuid,
    version: Uuid,
) -> AppResult<(VersionView, Vec<u8>, String)> {
    artifact_versions::table
        .find(version)
        .filter(artifact_versions::artifact_id.eq(artifact))
        .select((
            VersionView::as_select(),
            artifact_versions::state,
            artifact_versions::content,
        ))
        .first(conn)
        .await
        .optional()?
        .ok_or_else(|| AppError::new(ErrorCode::VersionNotFound, "no such version of this artifact"))
}

/// Edits the live document into `text` through the artifact's editor (committed before it
/// returns) and gives back the committed state.
async fn apply_text(
    state: &AppState,
    row: &ArtifactRow,
    target: TextTarget,
    author: Uuid,
) -> AppResult<Result<(Vec<u8>, String, i64), Vec<Conflict>>> {
    let editor = state.hub.get::<Editors>().get_or_spawn(row.id, row.workspace_id);
    let (tx, rx) = tokio::sync::oneshot::channel();
    editor.do_send(ReplaceText {
        target,
        author,
        reply: tx,
    });
    match rx.await.map_err(AppError::internal)?? {
        Replaced::Conflicts(conflicts) => Ok(Err(conflicts)),
        Replaced::Committed(_) => Ok(Ok(editor.send(Current).await.map_err(AppError::internal)??)),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SaveVersionRequest {
    /// 1 to 200 characters.
    pub name: String,
    /// Up to 2000 characters.
    #[serde(default)]
    pub message: String,
}

impl SaveVersionRequest {
    /// The name, once name and message are checked.
    fn name(&self) -> AppResult<String> {
        let name = validate::text("name", &self.name, 1, 200)?;
        if self.message.chars().count() > 2000 {
            return Err(AppError::validation("`message` must be at most 2000 characters"));
        }
        Ok(name)
    }
}

/// `POST /api/artifacts/{id}/versions` — save the current document as a named version.
#[utoipa::path(tag = "artifact versions", params(("id" = Uuid, Path)), request_body = SaveVersionRequest,
    responses((status = 201, body = VersionView), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
#[post("/artifacts/{id}/versions")]
pub async fn save_version(call: Call<AuthUser>, path: Path<Uuid>, body: Json<SaveVersionRequest>) -> Reply {
    let name = body.name()?;
    let (mut conn, row, _) = store::authorized(&call, *path, Permission::EditArtifacts).await?;
    let now = current(&call.state, &mut conn, row.id).await?;
    let (workspace, artifact) = (row.workspace_id, row.id);
    let version = record(
        &mut conn,
        row.id,
        (VersionKind::Save, &name, &body.message),
        (call.caller.id, &call.actor()),
        now,
        |v| Action::ArtifactVersion {
            workspace,
            artifact,
            version: v.id,
            number: v.number,
            name: v.name.clone(),
        },
    )
    .await?;
    Ok(HttpResponse::Created().json(version))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct VersionsQuery {
    /// Versions numbered below this one.
    pub before: Option<i32>,
    /// 1–200, default 50.
    pub limit: Option<i64>,
}

/// `GET /api/artifacts/{id}/versions` — history, newest first, paginated.
#[utoipa::path(tag = "artifact versions", params(("id" = Uuid, Path), VersionsQuery),
    responses((status = 200, body = Vec<VersionView>)), security(("bearer" = [])))]
#[get("/artifacts/{id}/versions")]
pub async fn list_versions(call: Call, path: Path<Uuid>, query: Query<VersionsQuery>) -> Reply {
    let limit = Limit::parse(query.limit)?;
    let (mut conn, ..) = store::authorized(&call, *path, Permission::ViewArtifacts).await?;
    let mut q = artifact_versions::table
        .filter(artifact_versions::artifact_id.eq(*path))
        .order(artifact_versions::number.desc())
        .limit(limit.get())
        .select(VersionView::as_select())
        .into_boxed();
    if let Some(before) = query.before {
        q = q.filter(artifact_versions::number.lt(before));
    }
    Ok(HttpResponse::Ok().json(q.load::<VersionView>(&mut conn).await?))
}

/// `GET /api/artifacts/{id}/versions/{version_id}` — one version with its text.
#[utoipa::path(tag = "artifact versions", params(("id" = Uuid, Path), ("version_id" = Uuid, Path)),
    responses((status = 200, body = VersionWithContent), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
#[get("/artifacts/{id}/versions/{version_id}")]
pub async fn get_version(call: Call, path: Path<(Uuid, Uuid)>) -> Reply {
    let (mut conn, ..) = store::authorized(&call, path.0, Permission::ViewArtifacts).await?;
    let (version, _, content) = find_version(&mut conn, path.0, path.1).await?;
    Ok(HttpResponse::Ok().json(VersionWithContent { version, content }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct DiffQuery {
    /// A version id, or `current`.
    pub from: String,
    /// A version id, or `current` (default).
    pub to: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DiffView {
    pub from: String,
    pub to: String,
    /// A unified diff (empty when the texts are equal).
    pub diff: String,
}

/// `GET /api/artifacts/{id}/diff?from=…&to=…` — unified diff between two versions (or the
/// current text).
#[utoipa::path(tag = "artifact versions", params(("id" = Uuid, Path), DiffQuery),
    responses((status = 200, body = DiffView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
#[get("/artifacts/{id}/diff")]
pub async fn diff_versions(call: Call, path: Path<Uuid>, query: Query<DiffQuery>) -> Reply {
    let id = *path;
    let (mut conn, ..) = store::authorized(&call, id, Permission::ViewArtifacts).await?;
    let to = query.to.clone().unwrap_or_else(|| "current".to_owned());
    let mut texts = Vec::new();
    for which in [&query.from, &to] {
        let text = if which == "current" {
            current(&call.state, &mut conn, id).await?.1
        } else {
            let vid: Uuid = which
                .parse()
                .map_err(|_| AppError::new(ErrorCode::InvalidQuery, "versions are ids or `current`"))?;
            find_version(&mut conn, id, vid).await?.2
        };
        texts.push(text);
    }
    let diff = textmerge::unified_diff(&texts[0], &texts[1], &query.from, &to, 3);
    Ok(HttpResponse::Ok().json(DiffView {
        from: query.from.clone(),
        to,
        diff,
    }))
}

/// `POST /api/artifacts/{id}/versions/{version_id}/revert` — make the live document read as
/// that version again, with ordinary edits (people editing now converge on it), and record
/// the result as a `revert` version.
#[utoipa::path(tag = "artifact versions", params(("id" = Uuid, Path), ("version_id" = Uuid, Path)),
    responses((status = 201, body = VersionView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
#[post("/artifacts/{id}/versions/{version_id}/revert")]
pub async fn revert_version(call: Call<AuthUser>, path: Path<(Uuid, Uuid)>) -> Reply {
    let (mut conn, row, _) = store::authorized(&call, path.0, Permission::EditArtifacts).await?;
    let (target, _, content) = find_version(&mut conn, row.id, path.1).await?;
    let user = call.caller.id;
    let now = apply_text(&call.state, &row, TextTarget::Exactly(content), user)
        .await?
        .map_err(|_| AppError::internal(anyhow::anyhow!("a revert reported conflicts")))?;
    let name = format!("Revert to version {}", target.number);
    let (workspace, artifact, to_version) = (row.workspace_id, row.id, target.id);
    let kind = (VersionKind::Revert, name.as_str(), target.name.as_str());
    let version = record(&mut conn, row.id, kind, (user, &call.actor()), now, |v| {
        Action::ArtifactRevert {
            workspace,
            artifact,
            to_version,
            version: v.id,
        }
    })
    .await?;
    Ok(HttpResponse::Created().json(version))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CreateBranchRequest {
    /// The version to fork from.
    pub version_id: Uuid,
    /// 1 to 100 characters.
    pub name: String,
}

/// `POST /api/artifacts/{id}/branches` — fork a version into a new live document.
#[utoipa::path(tag = "artifact versions", params(("id" = Uuid, Path)), request_body = CreateBranchRequest,
    responses((status = 201, body = ArtifactView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
#[post("/artifacts/{id}/branches")]
pub async fn create_branch(call: Call<AuthUser>, path: Path<Uuid>, body: Json<CreateBranchRequest>) -> Reply {
    let name = validate::text("name", &body.name, 1, 100)?;
    let (mut conn, parent, _) = store::authorized(&call, *path, Permission::EditArtifacts).await?;
    let (version, state_bytes, content) = find_version(&mut conn, parent.id, body.version_id).await?;
    let row = ArtifactRow {
        id: Uuid::new_v4(),
        workspace_id: parent.workspace_id,
        session_id: parent.session_id,
        message_id: parent.message_id,
        kind: parent.kind.clone(),
        title: format!("{} ({name})", parent.title),
        created_by: call.caller.id,
        created_at: Utc::now(),
        updated_at: Utc::now(),
        branch_of: Some(parent.id),
        fork_version_id: Some(version.id),
        branch_name: Some(name),
        merged_at: None,
    };
    let action = Action::ArtifactBranch {
        workspace: row.workspace_id,
        artifact: row.id,
        from: parent.id,
        from_version: version.id,
        name: row.branch_name.clone().unwrap_or_default(),
    };
    let actor = call.actor();
    let row = audit::commit(&mut conn, &actor, |conn| {
        async move { Ok((action, insert(conn, row, Some(state_bytes)).await?)) }.scope_boxed()
    })
    .await?;
    Ok(HttpResponse::Created().json(view(row, Some((content, 1)))))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct MergeRequest {
    /// One per conflict, in order, when a previous attempt reported conflicts.
    #[serde(default)]
    pub resolutions: Vec<Resolution>,
}

/// The result of a merge.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MergeView {
    /// The merge version recorded on the target.
    pub version: VersionView,
    pub content: String,
}

/// The body of a merge's 409: `merge_conflict` lists the conflicts; `not_a_branch` (not a
/// branch, or already merged) is a plain error body without `conflicts`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MergeConflictBody {
    pub code: String,
    pub message: String,
    /// Every conflict, in document order; present only when `code` is `merge_conflict`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflicts: Option<Vec<Conflict>>,
}

/// `POST /api/artifacts/{id}/merge` — merge branch `{id}` into the artifact it was forked
/// from: three-way, base = the fork version. Clean: applied to the target's live document
/// as edits and recorded as a `merge` version. Conflicting: nothing changes; `409` lists
/// every conflict; send `resolutions` to merge anyway.
#[utoipa::path(tag = "artifact versions", params(("id" = Uuid, Path)), request_body = MergeRequest,
    responses((status = 201, body = MergeView), (status = 409, body = MergeConflictBody)), security(("bearer" = [])))]
#[post("/artifacts/{id}/merge")]
pub async fn merge_branch(call: Call<AuthUser>, path: Path<Uuid>, body: Json<MergeRequest>) -> Reply {
    let (mut conn, branch, _) = store::authorized(&call, *path, Permission::EditArtifacts).await?;
    let (branch_id, user) = (branch.id, call.caller.id);
    let (Some(target_id), Some(fork)) = (branch.branch_of, branch.fork_version_id) else {
        return Err(AppError::new(ErrorCode::NotABranch, "this artifact is not a branch"));
    };
    let merged = || AppError::new(ErrorCode::NotABranch, "this branch was already merged");
    if branch.merged_at.is_some() {
        return Err(merged());
    }
    let (target, _) = store::authorize(
        &mut conn,
        &call.caller.principal(),
        target_id,
        Permission::EditArtifacts,
    )
    .await?;
    let base = find_version(&mut conn, target_id, fork).await?.2;
    let theirs = current(&call.state, &mut conn, branch_id).await?.1;
    // Claim the branch, so two merges at once cannot both apply it.
    let claimed = diesel::update(artifacts::table.find(branch_id).filter(artifacts::merged_at.is_null()))
        .set(artifacts::merged_at.eq(Utc::now()))
        .execute(&mut conn)
        .await?;
    db::touched(claimed, merged)?;
    let unclaim = diesel::update(artifacts::table.find(branch_id)).set(artifacts::merged_at.eq(None::<DateTime<Utc>>));
    // The merge is computed by the target's editor against its text at that moment.
    let target_text = TextTarget::Merge {
        base,
        theirs,
        resolutions: body.resolutions.clone(),
    };
    let now = match apply_text(&call.state, &target, target_text, user).await {
        Ok(Ok(now)) => now,
        Ok(Err(conflicts)) => {
            unclaim.execute(&mut conn).await?;
            return Ok(HttpResponse::Conflict().json(MergeConflictBody {
                code: ErrorCode::MergeConflict.as_str().to_owned(),
                message: format!("{} conflicting change(s); nothing was changed", conflicts.len()),
                conflicts: Some(conflicts),
            }));
        }
        Err(err) => {
            unclaim.execute(&mut conn).await?;
            return Err(err);
        }
    };
    let name = format!("Merge branch {}", branch.branch_name.as_deref().unwrap_or("?"));
    let workspace = target.workspace_id;
    let kind = (VersionKind::Merge, name.as_str(), "");
    let version = record(&mut conn, target_id, kind, (user, &call.actor()), now.clone(), |v| {
        Action::ArtifactMerge {
            workspace,
            artifact: branch_id,
            into: target_id,
            version: v.id,
        }
    })
    .await?;
    Ok(HttpResponse::Created().json(MergeView {
        version,
        content: now.1,
    }))
}
