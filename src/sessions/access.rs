//! Who may do what in one chat session: the session row, the caller's workspace
//! membership and participation, folded into a [`SessionAccess`]. Called at the REST edge
//! and again inside every write transaction.

use crate::auth::authorize::MemberRow;
use crate::auth::permissions::{Permission, PermissionSet, Role, effective};
use crate::db::schema::{chat_sessions, session_participants, workspace_members};
use crate::error::{AppError, AppResult, ErrorCode};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Who can see a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    /// Participants only (and members with `manage_sessions`).
    Private,
    /// Every member with `view_sessions`.
    Workspace,
}

impl Visibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Private => "private",
            Visibility::Workspace => "workspace",
        }
    }

    pub fn parse(s: &str) -> Self {
        if s == "workspace" {
            Visibility::Workspace
        } else {
            Visibility::Private
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize, Deserialize, utoipa::ToSchema)]
#[diesel(table_name = chat_sessions)]
pub struct SessionRow {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub title: String,
    /// `private` or `workspace` (the table allows nothing else).
    #[schema(value_type = Visibility)]
    pub visibility: String,
    pub default_model: Option<String>,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub archived_at: Option<DateTime<Utc>>,
    /// When the AI answers: `off`, `mention` (messages containing `@ai`), `every_message`.
    pub ai_mode: String,
}

/// The caller's standing in one session.
#[derive(Debug, Clone)]
pub struct SessionAccess {
    pub session: SessionRow,
    pub user_id: Uuid,
    /// The role that applies here: the participant's override, else the workspace role.
    pub role: Role,
    pub permissions: PermissionSet,
    pub participant: bool,
}

impl SessionAccess {
    pub fn visibility(&self) -> Visibility {
        Visibility::parse(&self.session.visibility)
    }

    pub fn can(&self, permission: Permission) -> bool {
        self.permissions.contains(permission)
    }

    pub fn require(&self, permission: Permission) -> AppResult<()> {
        if self.can(permission) {
            Ok(())
        } else {
            Err(AppError::new(
                ErrorCode::PermissionDenied,
                format!("this action requires the `{permission}` permission in this session"),
            ))
        }
    }

    /// May change settings and participants: the creator or `manage_sessions`.
    pub fn require_manage(&self) -> AppResult<()> {
        if self.session.created_by == self.user_id && self.participant || self.can(Permission::ManageSessions) {
            Ok(())
        } else {
            Err(AppError::forbidden(
                "only the session's creator or someone with `manage_sessions` can do this",
            ))
        }
    }

    pub fn require_active(&self) -> AppResult<()> {
        if self.session.archived_at.is_some() {
            return Err(AppError::new(ErrorCode::SessionArchived, "the session is archived"));
        }
        Ok(())
    }
}

fn not_found() -> AppError {
    AppError::new(ErrorCode::SessionNotFound, "session not found")
}

/// The caller's access to a session, or `session_not_found` when they cannot see it.
pub async fn session_access(conn: &mut AsyncPgConnection, session_id: Uuid, user_id: Uuid) -> AppResult<SessionAccess> {
    // One round trip: the session, the caller's membership, their participation. (This runs
    // inside every write transaction; round trips are the cost there.)
    type Row = (SessionRow, MemberRow, Option<Uuid>, Option<String>);
    let row: Option<Row> = chat_sessions::table
        .inner_join(
            workspace_members::table.on(workspace_members::workspace_id
                .eq(chat_sessions::workspace_id)
                .and(workspace_members::user_id.eq(user_id))),
        )
        .left_join(
            session_participants::table.on(session_participants::session_id
                .eq(chat_sessions::id)
                .and(session_participants::user_id.eq(user_id))),
        )
        .filter(chat_sessions::id.eq(session_id))
        .select((
            SessionRow::as_select(),
            MemberRow::as_select(),
            session_participants::user_id.nullable(),
            session_participants::role_override.nullable(),
        ))
        .first(conn)
        .await
        .optional()?;
    let (session, member, participant_id, role_override) = row.ok_or_else(not_found)?;
    resolve(session, &member, participant_id.map(|_| role_override), user_id).ok_or_else(not_found)
}

/// The caller's standing in a session from what was loaded: the session, their membership
/// and their participation (`Some(role_override)` when a participant). `None` when they
/// cannot see it.
pub fn resolve(
    session: SessionRow,
    member: &MemberRow,
    participant: Option<Option<String>>,
    user_id: Uuid,
) -> Option<SessionAccess> {
    let role = participant
        .clone()
        .flatten()
        .and_then(|r| r.parse().ok())
        .unwrap_or(member.role);
    let permissions = if role == member.role {
        member.effective()
    } else {
        effective(
            role,
            PermissionSet::parse_lenient(&member.granted),
            PermissionSet::parse_lenient(&member.revoked),
        )
    };
    let access = SessionAccess {
        session,
        user_id,
        role,
        permissions,
        participant: participant.is_some(),
    };
    let visible = access.participant
        || access.can(Permission::ManageSessions)
        || (access.visibility() == Visibility::Workspace && access.can(Permission::ViewSessions));
    visible.then_some(access)
}
