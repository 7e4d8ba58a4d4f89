//! The audit log: one row per mutation, written in the mutation's own transaction, and
//! `GET /api/workspaces/{id}/audit` to read it.

use crate::feature::Feature;
use crate::routes;

use crate::api::{Call, Reply};
use crate::api::{Path, Query};
use crate::auth::{Permission, Principal, RequestMeta, Role};
use crate::db::schema::{audit_log, users};
use crate::error::{AppError, AppResult, ErrorBody};
use crate::pagination::Limit;
use actix_web::{HttpResponse, get};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use scoped_futures::ScopedBoxFuture;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Who did something and from where.
#[derive(Debug, Clone)]
pub struct Actor {
    pub user_id: Option<Uuid>,
    pub token_id: Option<Uuid>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl Actor {
    pub fn new(principal: &Principal, meta: &RequestMeta) -> Self {
        Self {
            user_id: principal.user_id(),
            token_id: principal.token_id(),
            ip: meta.ip.clone(),
            user_agent: meta.user_agent.clone(),
        }
    }

    pub fn user(user_id: Uuid, meta: &RequestMeta) -> Self {
        Self {
            user_id: Some(user_id),
            token_id: None,
            ip: meta.ip.clone(),
            user_agent: meta.user_agent.clone(),
        }
    }
}

/// An audited action: its wire name (the `action` column, declared here once), what it was
/// done to (the fields marked `skip`), and the details the row keeps (the other fields).
#[derive(Debug, Serialize)]
#[serde(tag = "action")]
pub enum Action {
    #[serde(rename = "user.register")]
    UserRegister {
        #[serde(skip)]
        user: Uuid,
    },
    #[serde(rename = "user.login")]
    UserLogin {
        #[serde(skip)]
        user: Uuid,
    },
    /// A server admin disabled an account (it can no longer log in; its sockets closed).
    #[serde(rename = "user.disable")]
    UserDisable {
        #[serde(skip)]
        user: Uuid,
        email: String,
    },
    #[serde(rename = "user.enable")]
    UserEnable {
        #[serde(skip)]
        user: Uuid,
        email: String,
    },
    #[serde(rename = "workspace.create")]
    WorkspaceCreate {
        #[serde(skip)]
        workspace: Uuid,
        name: String,
    },
    #[serde(rename = "workspace.rename")]
    WorkspaceRename {
        #[serde(skip)]
        workspace: Uuid,
        from: String,
        to: String,
    },
    #[serde(rename = "workspace.delete")]
    WorkspaceDelete {
        #[serde(skip)]
        workspace: Uuid,
        name: String,
    },
    #[serde(rename = "member.role_change")]
    MemberRoleChange {
        #[serde(skip)]
        workspace: Uuid,
        #[serde(skip)]
        user: Uuid,
        from: Role,
        to: Role,
    },
    #[serde(rename = "member.permissions")]
    MemberPermissions {
        #[serde(skip)]
        workspace: Uuid,
        #[serde(skip)]
        user: Uuid,
        granted: Vec<String>,
        revoked: Vec<String>,
        previous_granted: Vec<String>,
        previous_revoked: Vec<String>,
    },
    #[serde(rename = "member.remove")]
    MemberRemove {
        #[serde(skip)]
        workspace: Uuid,
        #[serde(skip)]
        user: Uuid,
        role: Role,
    },
    #[serde(rename = "member.leave")]
    MemberLeave {
        #[serde(skip)]
        workspace: Uuid,
        #[serde(skip)]
        user: Uuid,
        role: Role,
    },
    #[serde(rename = "invitation.create")]
    InvitationCreate {
        #[serde(skip)]
        workspace: Uuid,
        #[serde(skip)]
        invitation: Uuid,
        email: String,
        role: Role,
        permissions: Vec<String>,
    },
    #[serde(rename = "invitation.revoke")]
    InvitationRevoke {
        #[serde(skip)]
        workspace: Uuid,
        #[serde(skip)]
        invitation: Uuid,
        email: String,
    },
    #[serde(rename = "invitation.accept")]
    InvitationAccept {
        #[serde(skip)]
        workspace: Uuid,
        #[serde(skip)]
        invitation: Uuid,
        role: Role,
    },
    #[serde(rename = "api_token.create")]
    ApiTokenCreate {
        #[serde(skip)]
        workspace: Uuid,
        #[serde(skip)]
        token: Uuid,
        name: String,
        permissions: Vec<String>,
    },
    #[serde(rename = "api_token.revoke")]
    ApiTokenRevoke {
        #[serde(skip)]
        workspace: Uuid,
        #[serde(skip)]
        token: Uuid,
    },
    #[serde(rename = "artifact.delete")]
    ArtifactDelete {
        #[serde(skip)]
        workspace: Uuid,
        #[serde(skip)]
        artifact: Uuid,
        title: String,
        /// Branches deleted with it.
        branches: Vec<Uuid>,
    },
    #[serde(rename = "artifact.version")]
    ArtifactVersion {
        #[serde(skip)]
        workspace: Uuid,
        #[serde(skip)]
        artifact: Uuid,
        version: Uuid,
        number: i32,
        name: String,
    },
    #[serde(rename = "artifact.revert")]
    ArtifactRevert {
        #[serde(skip)]
        workspace: Uuid,
        #[serde(skip)]
        artifact: Uuid,
        /// The version reverted to, and the version recording the revert.
        to_version: Uuid,
        version: Uuid,
    },
    #[serde(rename = "artifact.branch")]
    ArtifactBranch {
        #[serde(skip)]
        workspace: Uuid,
        /// The new branch (the target); `from` is the artifact it forks.
        #[serde(skip)]
        artifact: Uuid,
        from: Uuid,
        from_version: Uuid,
        name: String,
    },
    #[serde(rename = "artifact.merge")]
    ArtifactMerge {
        #[serde(skip)]
        workspace: Uuid,
        /// The branch merged (the target) into `into`.
        #[serde(skip)]
        artifact: Uuid,
        into: Uuid,
        version: Uuid,
    },
}

impl Action {
    /// The workspace it happened in; account actions have none.
    fn workspace(&self) -> Option<Uuid> {
        use Action::*;
        match *self {
            UserRegister { .. } | UserLogin { .. } | UserDisable { .. } | UserEnable { .. } => None,
            WorkspaceCreate { workspace, .. }
            | WorkspaceRename { workspace, .. }
            | WorkspaceDelete { workspace, .. }
            | MemberRoleChange { workspace, .. }
            | MemberPermissions { workspace, .. }
            | MemberRemove { workspace, .. }
            | MemberLeave { workspace, .. }
            | InvitationCreate { workspace, .. }
            | InvitationRevoke { workspace, .. }
            | InvitationAccept { workspace, .. }
            | ApiTokenCreate { workspace, .. }
            | ApiTokenRevoke { workspace, .. }
            | ArtifactDelete { workspace, .. }
            | ArtifactVersion { workspace, .. }
            | ArtifactRevert { workspace, .. }
            | ArtifactBranch { workspace, .. }
            | ArtifactMerge { workspace, .. } => Some(workspace),
        }
    }

    /// What it was done to: the target type and id.
    fn target(&self) -> (&'static str, Uuid) {
        use Action::*;
        match *self {
            WorkspaceCreate { workspace, .. }
            | WorkspaceRename { workspace, .. }
            | WorkspaceDelete { workspace, .. } => ("workspace", workspace),
            UserRegister { user }
            | UserLogin { user }
            | UserDisable { user, .. }
            | UserEnable { user, .. }
            | MemberRoleChange { user, .. }
            | MemberPermissions { user, .. }
            | MemberRemove { user, .. }
            | MemberLeave { user, .. } => ("user", user),
            InvitationCreate { invitation, .. }
            | InvitationRevoke { invitation, .. }
            | InvitationAccept { invitation, .. } => ("invitation", invitation),
            ApiTokenCreate { token, .. } | ApiTokenRevoke { token, .. } => ("api_token", token),
            ArtifactDelete { artifact, .. }
            | ArtifactVersion { artifact, .. }
            | ArtifactRevert { artifact, .. }
            | ArtifactBranch { artifact, .. }
            | ArtifactMerge { artifact, .. } => ("artifact", artifact),
        }
    }
}

#[derive(Insertable)]
#[diesel(table_name = audit_log)]
struct NewAuditRow<'a> {
    workspace_id: Option<Uuid>,
    actor_user_id: Option<Uuid>,
    actor_token_id: Option<Uuid>,
    action: String,
    target_type: &'a str,
    target_id: String,
    details: serde_json::Value,
    ip: Option<&'a str>,
    user_agent: Option<&'a str>,
}

/// Appends one audit row; call it inside the transaction of the change it records.
pub async fn record(conn: &mut AsyncPgConnection, actor: &Actor, action: Action) -> AppResult<()> {
    let (target_type, target_id) = action.target();
    let workspace_id = action.workspace();
    // The tag is the action's name; the other fields are its details.
    let mut details = serde_json::to_value(&action).map_err(AppError::internal)?;
    let name = details.as_object_mut().and_then(|fields| fields.remove("action"));
    let Some(serde_json::Value::String(name)) = name else {
        return Err(AppError::internal(anyhow::anyhow!("audit action without a name")));
    };
    diesel::insert_into(audit_log::table)
        .values(NewAuditRow {
            workspace_id,
            actor_user_id: actor.user_id,
            actor_token_id: actor.token_id,
            action: name,
            target_type,
            target_id: target_id.to_string(),
            details,
            ip: actor.ip.as_deref(),
            user_agent: actor.user_agent.as_deref(),
        })
        .execute(conn)
        .await?;
    Ok(())
}

/// Runs `work` in a transaction together with the audit row of the action it returns: the
/// usual shape of an audited change.
pub async fn commit<'a, T, F>(conn: &mut AsyncPgConnection, actor: &'a Actor, work: F) -> AppResult<T>
where
    F: for<'r> FnOnce(&'r mut AsyncPgConnection) -> ScopedBoxFuture<'a, 'r, AppResult<(Action, T)>> + Send + 'a,
    T: Send + 'a,
{
    conn.transaction::<_, AppError, _>(async |conn| {
        async move {
            let (action, value) = work(conn).await?;
            record(conn, actor, action).await?;
            Ok(value)
        }
        .await
    })
    .await
}

/// A page of audit entries, newest first.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// Pass as `before` to get the next (older) page; absent on the last page.
    pub next_before: Option<i64>,
}

/// One audit entry.
#[derive(Debug, Serialize, Deserialize, Queryable, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub actor_user_id: Option<Uuid>,
    pub actor_display_name: Option<String>,
    pub actor_token_id: Option<Uuid>,
    pub details: serde_json::Value,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct AuditQuery {
    /// Only entries with an id below this one.
    pub before: Option<i64>,
    /// Page size, 1–200 (default 50).
    pub limit: Option<i64>,
}

/// `GET /api/workspaces/{id}/audit` — the workspace's audit log, newest first.
#[utoipa::path(
    tag = "audit",
    params(("id" = Uuid, Path, description = "workspace id"), AuditQuery),
    responses((status = 200, body = AuditPage), (status = 403, body = ErrorBody)),
    security(("bearer" = []))
)]
#[get("/workspaces/{id}/audit")]
pub async fn list_audit(call: Call, path: Path<Uuid>, query: Query<AuditQuery>) -> Reply {
    let limit = Limit::parse(query.limit)?;
    let (mut conn, _) = call.authorized(*path, Permission::ViewAuditLog).await?;
    let mut q = audit_log::table
        .left_join(users::table.on(users::id.nullable().eq(audit_log::actor_user_id)))
        .filter(audit_log::workspace_id.eq(*path))
        .select((
            audit_log::id,
            audit_log::action,
            audit_log::target_type,
            audit_log::target_id,
            audit_log::actor_user_id,
            users::display_name.nullable(),
            audit_log::actor_token_id,
            audit_log::details,
            audit_log::ip,
            audit_log::user_agent,
            audit_log::created_at,
        ))
        .order(audit_log::id.desc())
        .limit(limit.probe())
        .into_boxed();
    if let Some(before) = query.before {
        q = q.filter(audit_log::id.lt(before));
    }
    let (entries, more) = limit.page(q.load::<AuditEntry>(&mut conn).await?);
    let next_before = if more { entries.last().map(|e| e.id) } else { None };
    Ok(HttpResponse::Ok().json(AuditPage { entries, next_before }))
}

/// The audit log.
pub const FEATURE: Feature = Feature::new("audit", routes! { list_audit });
