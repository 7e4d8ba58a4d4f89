//! Invitations: invite an email with a role, list pending ones, revoke, accept by token.
//! The token is 32 random bytes shown once (in the link); only its hash is stored.

use crate::audit::{self, Actor};
use crate::auth::secrets::{self, SecretKind};
use crate::auth::{Auth, Permission, RequestMeta, Role, UserAuth, authorize};
use crate::db::schema::{invitations, users, workspace_members, workspaces};
use crate::error::{AppError, AppResult, ErrorBody, ErrorCode};
use crate::state::AppState;
use crate::validate;
use crate::workspaces::members::{MemberView, load_member_view};
use crate::workspaces::{lock_workspace, parse_grantable};
use actix_web::{HttpResponse, delete, get, post, web};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How long an invitation stays valid.
pub const INVITATION_TTL_DAYS: i64 = 7;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = invitations)]
struct InvitationRow {
    id: Uuid,
    workspace_id: Uuid,
    email: String,
    role: String,
    permissions: Vec<String>,
    invited_by: Uuid,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    accepted_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

/// An invitation (never with its token, except in the creation response).
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InvitationView {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub email: String,
    pub role: Role,
    /// Extra permissions granted on acceptance.
    pub permissions: Vec<String>,
    pub invited_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl From<InvitationRow> for InvitationView {
    fn from(r: InvitationRow) -> Self {
        Self {
            id: r.id,
            workspace_id: r.workspace_id,
            email: r.email,
            role: r.role.parse().unwrap_or(Role::Guest),
            permissions: r.permissions,
            invited_by: r.invited_by,
            created_at: r.created_at,
            expires_at: r.expires_at,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CreateInvitationRequest {
    pub email: String,
    pub role: Role,
    /// Extra permissions (needs `manage_permissions`, and only ones the inviter holds).
    #[serde(default)]
    pub permissions: Vec<String>,
}

/// The new invitation with its secret. `link` is for "copy invite link"; the token is in
/// the URL fragment so it never reaches a server log.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreatedInvitation {
    #[serde(flatten)]
    pub invitation: InvitationView,
    pub token: String,
    pub link: String,
    /// Whether an email was queued (SMTP configured).
    pub email_queued: bool,
}

/// `POST /api/workspaces/{id}/invitations` — invite someone by email (`invite_users`).
#[utoipa::path(tag = "invitations", params(("id" = Uuid, Path)), request_body = CreateInvitationRequest,
    responses((status = 201, body = CreatedInvitation), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
#[post("/workspaces/{id}/invitations")]
pub async fn create_invitation(
    Auth(principal): Auth,
    state: web::Data<AppState>,
    meta: RequestMeta,
    path: web::Path<Uuid>,
    body: web::Json<CreateInvitationRequest>,
) -> AppResult<HttpResponse> {
    let id = path.into_inner();
    let email = validate::email(&body.email)?;
    let extra = parse_grantable("permissions", &body.permissions)?;
    let role = body.role;
    let mut conn = state.pool.get().await?;
    let acc = authorize(&mut conn, &principal, id, Permission::InviteUsers).await?;
    if role == Role::Owner && !acc.is_owner() {
        return Err(AppError::forbidden("only an owner can invite another owner"));
    }
    // Inviting someone with a role hands out that role's permissions: without
    // `manage_users` (which could set the role anyway) only a role within one's own reach.
    if !acc.permissions.contains(Permission::ManageUsers) && !role.permissions().is_subset(acc.permissions) {
        return Err(AppError::forbidden(format!(
            "without `manage_users` you can only invite as a role whose permissions you hold; `{role}` has more"
        )));
    }
    if extra != crate::auth::PermissionSet::EMPTY {
        acc.require(Permission::ManagePermissions)?;
        if !extra.closure().is_subset(acc.permissions) {
            return Err(AppError::forbidden("you can only grant permissions you hold yourself"));
        }
    }
    let Some(inviter) = principal.user_id().or(match &principal {
        crate::auth::Principal::Token(t) => Some(t.created_by),
        _ => None,
    }) else {
        return Err(AppError::internal(anyhow::anyhow!("principal without a user")));
    };
    let (token, hash) = secrets::generate(SecretKind::Invitation);
    let link = format!(
        "{}/invite#token={}",
        state.config.public_url.trim_end_matches('/'),
        token
    );
    let actor = Actor::new(&principal, &meta);
    let mailer = state.mailer.clone();
    let link2 = link.clone();
    let row = conn
        .transaction::<_, AppError, _>(async |conn| {
            async move {
                lock_workspace(conn, id).await?;
                let already: bool = diesel::select(diesel::dsl::exists(
                    workspace_members::table
                        .inner_join(users::table)
                        .filter(workspace_members::workspace_id.eq(id))
                        .filter(users::email.eq(&email)),
                ))
                .get_result(conn)
                .await?;
                if already {
                    return Err(AppError::new(
                        ErrorCode::AlreadyMember,
                        "that person is already a member",
                    ));
                }
                let row: InvitationRow = diesel::insert_into(invitations::table)
                    .values((
                        invitations::id.eq(Uuid::new_v4()),
                        invitations::workspace_id.eq(id),
                        invitations::email.eq(&email),
                        invitations::role.eq(role.as_str()),
                        invitations::permissions.eq(extra.names()),
                        invitations::token_hash.eq(hash),
                        invitations::invited_by.eq(inviter),
                        invitations::expires_at.eq(Utc::now() + chrono::Duration::days(INVITATION_TTL_DAYS)),
                    ))
                    .returning(InvitationRow::as_returning())
                    .get_result(conn)
                    .await?;
                if mailer.enabled {
                    let (workspace_name, inviter_name): (String, String) = workspaces::table
                        .inner_join(users::table.on(users::id.eq(inviter)))
                        .filter(workspaces::id.eq(id))
                        .select((workspaces::name, users::display_name))
                        .first(conn)
                        .await?;
                    let body = format!(
                        "{inviter_name} invited you to the workspace \"{workspace_name}\" on bedda.ai as {role}.\n\n\
                         Accept the invitation (valid for {INVITATION_TTL_DAYS} days, usable once):\n{link2}\n"
                    );
                    mailer
                        .enqueue(conn, &email, &format!("Join {workspace_name} on bedda.ai"), &body)
                        .await?;
                }
                audit::record(
                    conn,
                    &actor,
                    Some(id),
                    "invitation.create",
                    ("invitation", row.id.to_string()),
                    serde_json::json!({ "email": email, "role": role, "permissions": extra.names() }),
                )
                .await?;
                Ok(row)
            }
            .await
        })
        .await?;
    if state.mailer.enabled {
        state.mailer.wake();
    } else {
        tracing::info!(invitation_id = %row.id, email = %row.email, %link, "SMTP not configured; invitation link");
    }
    Ok(HttpResponse::Created().json(CreatedInvitation {
        invitation: row.into(),
        token,
        link,
        email_queued: state.mailer.enabled,
    }))
}

/// `GET /api/workspaces/{id}/invitations` — pending invitations (`invite_users`).
#[utoipa::path(tag = "invitations", params(("id" = Uuid, Path)),
    responses((status = 200, body = Vec<InvitationView>), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
#[get("/workspaces/{id}/invitations")]
pub async fn list_invitations(
    Auth(principal): Auth,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    let id = path.into_inner();
    let mut conn = state.pool.get().await?;
    authorize(&mut conn, &principal, id, Permission::InviteUsers).await?;
    let rows: Vec<InvitationRow> = invitations::table
        .filter(invitations::workspace_id.eq(id))
        .filter(invitations::accepted_at.is_null())
        .filter(invitations::revoked_at.is_null())
        .filter(invitations::expires_at.gt(Utc::now()))
        .order(invitations::created_at.desc())
        .select(InvitationRow::as_select())
        .load(&mut conn)
        .await?;
    Ok(HttpResponse::Ok().json(rows.into_iter().map(InvitationView::from).collect::<Vec<_>>()))
}

/// `DELETE /api/workspaces/{id}/invitations/{invitation_id}` — revoke a pending invitation.
#[utoipa::path(tag = "invitations", params(("id" = Uuid, Path), ("invitation_id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 410, body = ErrorBody)), security(("bearer" = [])))]
#[delete("/workspaces/{id}/invitations/{invitation_id}")]
pub async fn revoke_invitation(
    Auth(principal): Auth,
    state: web::Data<AppState>,
    meta: RequestMeta,
    path: web::Path<(Uuid, Uuid)>,
) -> AppResult<HttpResponse> {
    let (id, invitation_id) = path.into_inner();
    let mut conn = state.pool.get().await?;
    authorize(&mut conn, &principal, id, Permission::InviteUsers).await?;
    let actor = Actor::new(&principal, &meta);
    conn.transaction::<_, AppError, _>(async |conn| {
        async move {
            let row: InvitationRow = invitations::table
                .filter(invitations::id.eq(invitation_id))
                .filter(invitations::workspace_id.eq(id))
                .select(InvitationRow::as_select())
                .for_update()
                .first(conn)
                .await
                .optional()?
                .ok_or_else(|| AppError::new(ErrorCode::InvitationNotFound, "no such invitation"))?;
            if row.accepted_at.is_some() {
                return Err(AppError::new(
                    ErrorCode::InvitationUsed,
                    "the invitation was already accepted",
                ));
            }
            if row.revoked_at.is_some() {
                return Err(AppError::new(
                    ErrorCode::InvitationRevoked,
                    "the invitation was already revoked",
                ));
            }
            diesel::update(invitations::table.find(invitation_id))
                .set(invitations::revoked_at.eq(Utc::now()))
                .execute(conn)
                .await?;
            audit::record(
                conn,
                &actor,
                Some(id),
                "invitation.revoke",
                ("invitation", invitation_id.to_string()),
                serde_json::json!({ "email": row.email }),
            )
            .await
        }
        .await
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct AcceptInvitationRequest {
    /// The token from the invitation link.
    pub token: String,
}

/// `POST /api/invitations/accept` — join the workspace as the logged-in user, whose email
/// must be the invited one. Returns the new membership.
#[utoipa::path(tag = "invitations", request_body = AcceptInvitationRequest,
    responses((status = 200, body = MemberView), (status = 404, body = ErrorBody), (status = 410, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
#[post("/invitations/accept")]
pub async fn accept_invitation(
    UserAuth(user): UserAuth,
    state: web::Data<AppState>,
    meta: RequestMeta,
    body: web::Json<AcceptInvitationRequest>,
) -> AppResult<HttpResponse> {
    let not_found = || AppError::new(ErrorCode::InvitationNotFound, "this invitation link is not valid");
    if SecretKind::of(body.token.trim()) != Some(SecretKind::Invitation) || body.token.len() > 128 {
        return Err(not_found());
    }
    let hash = secrets::hash(body.token.trim());
    let mut conn = state.pool.get().await?;
    let actor = Actor::user(user.id, &meta);
    let view = conn
        .transaction::<_, AppError, _>(async |conn| {
            async move {
                let row: InvitationRow = invitations::table
                    .filter(invitations::token_hash.eq(&hash))
                    .select(InvitationRow::as_select())
                    .for_update()
                    .first(conn)
                    .await
                    .optional()?
                    .ok_or_else(not_found)?;
                if row.revoked_at.is_some() {
                    return Err(AppError::new(
                        ErrorCode::InvitationRevoked,
                        "this invitation was revoked",
                    ));
                }
                if row.accepted_at.is_some() {
                    return Err(AppError::new(
                        ErrorCode::InvitationUsed,
                        "this invitation was already used",
                    ));
                }
                if row.expires_at <= Utc::now() {
                    return Err(AppError::new(
                        ErrorCode::InvitationExpired,
                        "this invitation has expired; ask for a new one",
                    ));
                }
                if row.email != user.email.to_lowercase() {
                    return Err(AppError::new(
                        ErrorCode::InvitationEmailMismatch,
                        "this invitation was sent to a different email address",
                    ));
                }
                lock_workspace(conn, row.workspace_id).await?;
                if crate::auth::authorize::find_member(conn, row.workspace_id, user.id)
                    .await?
                    .is_some()
                {
                    return Err(AppError::new(
                        ErrorCode::AlreadyMember,
                        "you are already a member of this workspace",
                    ));
                }
                diesel::insert_into(workspace_members::table)
                    .values((
                        workspace_members::workspace_id.eq(row.workspace_id),
                        workspace_members::user_id.eq(user.id),
                        workspace_members::role.eq(&row.role),
                        workspace_members::granted.eq(&row.permissions),
                    ))
                    .execute(conn)
                    .await?;
                diesel::update(invitations::table.find(row.id))
                    .set((
                        invitations::accepted_at.eq(Utc::now()),
                        invitations::accepted_by.eq(user.id),
                    ))
                    .execute(conn)
                    .await?;
                audit::record(
                    conn,
                    &actor,
                    Some(row.workspace_id),
                    "invitation.accept",
                    ("invitation", row.id.to_string()),
                    serde_json::json!({ "role": row.role }),
                )
                .await?;
                load_member_view(conn, row.workspace_id, user.id).await
            }
            .await
        })
        .await?;
    Ok(HttpResponse::Ok().json(view))
}
