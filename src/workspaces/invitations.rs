//! Invitations: invite an email with a role, list pending ones, revoke, accept by token.
//! The token is 32 random bytes shown once (in the link); only its hash is stored.

use crate::api::{Call, Reply};
use crate::api::{Json, Path};
use crate::audit::{self, Action};
use crate::auth::secrets::{self, SecretKind};
use crate::auth::{Access, AuthUser, Permission, PermissionSet, Role};
use crate::db;
use crate::db::schema::{invitations, users, workspace_members, workspaces};
use crate::error::{AppError, AppResult, ErrorBody, ErrorCode};
use crate::mail::Mailer;
use crate::validate;
use crate::workspaces::members::{MemberView, add_member, load_member_view};
use crate::workspaces::{lock_workspace, parse_grantable};
use actix_web::{HttpResponse, delete, get, post};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use scoped_futures::ScopedFutureExt;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How long an invitation stays valid.
pub const INVITATION_TTL_DAYS: i64 = 7;

/// An invitation (never with its token, except in the creation response).
#[derive(Debug, Serialize, Deserialize, Queryable, Selectable, utoipa::ToSchema)]
#[diesel(table_name = invitations)]
pub struct InvitationView {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub email: String,
    #[diesel(deserialize_as = String)]
    pub role: Role,
    /// Extra permissions granted on acceptance.
    pub permissions: Vec<String>,
    pub invited_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// An invitation and whether it was used up.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = invitations)]
struct InvitationRow {
    #[diesel(embed)]
    invitation: InvitationView,
    accepted_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

impl InvitationRow {
    /// Fails when the invitation was accepted or revoked, in the caller's words.
    fn require_pending(&self, (used, revoked): (&'static str, &'static str)) -> AppResult<()> {
        match (self.accepted_at, self.revoked_at) {
            (Some(_), _) => Err(AppError::new(ErrorCode::InvitationUsed, used)),
            (_, Some(_)) => Err(AppError::new(ErrorCode::InvitationRevoked, revoked)),
            _ => Ok(()),
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

/// Whether the inviter may hand out `role` and the `extra` permissions.
fn require_may_invite(acc: &Access, role: Role, extra: PermissionSet) -> AppResult<()> {
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
    if extra != PermissionSet::EMPTY {
        acc.require(Permission::ManagePermissions)?;
        if !extra.closure().is_subset(acc.permissions) {
            return Err(AppError::forbidden("you can only grant permissions you hold yourself"));
        }
    }
    Ok(())
}

/// What a new invitation is made of.
struct NewInvitation {
    workspace_id: Uuid,
    email: String,
    role: Role,
    extra: PermissionSet,
    invited_by: Uuid,
}

impl NewInvitation {
    /// Stores the invitation (unless the person is already a member) and queues its mail
    /// when mail is on.
    async fn insert(
        &self,
        conn: &mut AsyncPgConnection,
        hash: Vec<u8>,
        mailer: &Mailer,
        link: &str,
    ) -> AppResult<InvitationView> {
        let id = self.workspace_id;
        lock_workspace(conn, id).await?;
        let members = workspace_members::table.inner_join(users::table);
        let already = members
            .filter(workspace_members::workspace_id.eq(id))
            .filter(users::email.eq(self.email.clone()));
        if db::exists(conn, already).await? {
            return Err(AppError::new(
                ErrorCode::AlreadyMember,
                "that person is already a member",
            ));
        }
        let row = diesel::insert_into(invitations::table)
            .values((
                invitations::id.eq(Uuid::new_v4()),
                invitations::workspace_id.eq(id),
                invitations::email.eq(&self.email),
                invitations::role.eq(self.role.as_str()),
                invitations::permissions.eq(self.extra.names()),
                invitations::token_hash.eq(hash),
                invitations::invited_by.eq(self.invited_by),
                invitations::expires_at.eq(Utc::now() + chrono::Duration::days(INVITATION_TTL_DAYS)),
            ))
            .returning(InvitationView::as_returning())
            .get_result(conn)
            .await?;
        if mailer.enabled {
            self.mail(conn, mailer, link).await?;
        }
        Ok(row)
    }

    /// The audit action of creating `row`.
    fn action(&self, row: &InvitationView) -> Action {
        let (workspace, invitation, permissions) = (row.workspace_id, row.id, self.extra.names());
        let (email, role) = (self.email.clone(), self.role);
        Action::InvitationCreate {
            workspace,
            invitation,
            email,
            role,
            permissions,
        }
    }

    async fn mail(&self, conn: &mut AsyncPgConnection, mailer: &Mailer, link: &str) -> AppResult<()> {
        let (workspace_name, inviter_name): (String, String) = workspaces::table
            .inner_join(users::table.on(users::id.eq(self.invited_by)))
            .filter(workspaces::id.eq(self.workspace_id))
            .select((workspaces::name, users::display_name))
            .first(conn)
            .await?;
        let role = self.role;
        let body = format!(
            "{inviter_name} invited you to the workspace \"{workspace_name}\" on bedda.ai as {role}.\n\n\
             Accept the invitation (valid for {INVITATION_TTL_DAYS} days, usable once):\n{link}\n"
        );
        let subject = format!("Join {workspace_name} on bedda.ai");
        mailer.enqueue(conn, &self.email, &subject, &body).await
    }
}

/// `POST /api/workspaces/{id}/invitations` — invite someone by email (`invite_users`).
#[utoipa::path(tag = "invitations", params(("id" = Uuid, Path)), request_body = CreateInvitationRequest,
    responses((status = 201, body = CreatedInvitation), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
#[post("/workspaces/{id}/invitations")]
pub async fn create_invitation(call: Call, path: Path<Uuid>, body: Json<CreateInvitationRequest>) -> Reply {
    let new = NewInvitation {
        workspace_id: *path,
        email: validate::email(&body.email)?,
        extra: parse_grantable("permissions", &body.permissions)?,
        role: body.role,
        invited_by: call.caller.acting_user(),
    };
    let (token, hash) = secrets::generate(SecretKind::Invitation);
    let public_url = call.state.config.public_url.trim_end_matches('/');
    let (link, mailer) = (format!("{public_url}/invite#token={token}"), &call.state.mailer);
    let (new, invite_link) = (&new, link.as_str());
    let invitation = call
        .audited(new.workspace_id, Permission::InviteUsers, |conn, acc| {
            async move {
                require_may_invite(&acc, new.role, new.extra)?;
                let row = new.insert(conn, hash, mailer, invite_link).await?;
                Ok((new.action(&row), row))
            }
            .scope_boxed()
        })
        .await?;
    if mailer.enabled {
        mailer.wake();
    } else {
        // The link holds the invitation secret: it is in the response, never in the log.
        tracing::info!(invitation_id = %invitation.id, "SMTP not configured; the invitation link is only in the response");
    }
    let email_queued = mailer.enabled;
    Ok(HttpResponse::Created().json(CreatedInvitation {
        invitation,
        token,
        link,
        email_queued,
    }))
}

/// `GET /api/workspaces/{id}/invitations` — pending invitations (`invite_users`).
#[utoipa::path(tag = "invitations", params(("id" = Uuid, Path)),
    responses((status = 200, body = Vec<InvitationView>), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
#[get("/workspaces/{id}/invitations")]
pub async fn list_invitations(call: Call, path: Path<Uuid>) -> Reply {
    let (mut conn, _) = call.authorized(*path, Permission::InviteUsers).await?;
    let open = invitations::expires_at.gt(Utc::now());
    let pending = invitations::table
        .filter(invitations::workspace_id.eq(*path))
        .filter(invitations::accepted_at.is_null())
        .filter(invitations::revoked_at.is_null().and(open))
        .order(invitations::created_at.desc())
        .select(InvitationView::as_select());
    Ok(HttpResponse::Ok().json(pending.load::<InvitationView>(&mut conn).await?))
}

/// `DELETE /api/workspaces/{id}/invitations/{invitation_id}` — revoke a pending invitation.
#[utoipa::path(tag = "invitations", params(("id" = Uuid, Path), ("invitation_id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 410, body = ErrorBody)), security(("bearer" = [])))]
#[delete("/workspaces/{id}/invitations/{invitation_id}")]
pub async fn revoke_invitation(call: Call, path: Path<(Uuid, Uuid)>) -> Reply {
    let (workspace, invitation) = *path;
    call.audited(workspace, Permission::InviteUsers, |conn, _| {
        async move {
            let not_found = || AppError::new(ErrorCode::InvitationNotFound, "no such invitation");
            // Locked for the rest of the transaction; another workspace's is not found.
            let this = invitations::table
                .find(invitation)
                .filter(invitations::workspace_id.eq(workspace));
            let row: Option<InvitationRow> = this
                .select(InvitationRow::as_select())
                .for_update()
                .first(conn)
                .await
                .optional()?;
            let row = row.ok_or_else(not_found)?;
            row.require_pending((
                "the invitation was already accepted",
                "the invitation was already revoked",
            ))?;
            diesel::update(invitations::table.find(invitation))
                .set(invitations::revoked_at.eq(Utc::now()))
                .execute(conn)
                .await?;
            let email = row.invitation.email;
            Ok((
                Action::InvitationRevoke {
                    workspace,
                    invitation,
                    email,
                },
                (),
            ))
        }
        .scope_boxed()
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
pub async fn accept_invitation(call: Call<AuthUser>, body: Json<AcceptInvitationRequest>) -> Reply {
    let not_found = || AppError::new(ErrorCode::InvitationNotFound, "this invitation link is not valid");
    if SecretKind::of(body.token.trim()) != Some(SecretKind::Invitation) || body.token.len() > 128 {
        return Err(not_found());
    }
    let hash = secrets::hash(body.token.trim());
    let mut conn = call.state.pool.get().await?;
    let actor = call.actor();
    let view = audit::commit(&mut conn, &actor, |conn| {
        async move {
            // Locked for the rest of the transaction (accepted once, however many try).
            let by_hash = invitations::table.filter(invitations::token_hash.eq(hash));
            let row: Option<InvitationRow> = by_hash
                .select(InvitationRow::as_select())
                .for_update()
                .first(conn)
                .await
                .optional()?;
            let row = row.ok_or_else(not_found)?;
            row.require_pending(("this invitation was already used", "this invitation was revoked"))?;
            let invitation = row.invitation;
            if invitation.expires_at <= Utc::now() {
                return Err(AppError::new(
                    ErrorCode::InvitationExpired,
                    "this invitation has expired; ask for a new one",
                ));
            }
            if invitation.email != call.caller.email.to_lowercase() {
                return Err(AppError::new(
                    ErrorCode::InvitationEmailMismatch,
                    "this invitation was sent to a different email address",
                ));
            }
            let workspace = invitation.workspace_id;
            lock_workspace(conn, workspace).await?;
            if crate::auth::authorize::find_member(conn, workspace, call.caller.id)
                .await?
                .is_some()
            {
                return Err(AppError::new(
                    ErrorCode::AlreadyMember,
                    "you are already a member of this workspace",
                ));
            }
            add_member(
                conn,
                (workspace, call.caller.id),
                invitation.role,
                &invitation.permissions,
            )
            .await?;
            diesel::update(invitations::table.find(invitation.id))
                .set((
                    invitations::accepted_at.eq(Utc::now()),
                    invitations::accepted_by.eq(call.caller.id),
                ))
                .execute(conn)
                .await?;
            let action = Action::InvitationAccept {
                workspace,
                invitation: invitation.id,
                role: invitation.role,
            };
            Ok((action, load_member_view(conn, workspace, call.caller.id).await?))
        }
        .scope_boxed()
    })
    .await?;
    Ok(HttpResponse::Ok().json(view))
}
