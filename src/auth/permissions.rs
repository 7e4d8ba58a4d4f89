//! The permission catalogue, the roles table and how a member's effective permissions are
//! computed. This is the one place roles are defined; docs/PERMISSIONS.md describes it.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

macro_rules! permissions {
    ($( $(#[$doc:meta])* $variant:ident = $wire:literal, )*) => {
        /// One thing a member may be allowed to do in a workspace.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        #[repr(u8)]
        pub enum Permission { $( $(#[$doc])* $variant, )* }

        impl Permission {
            /// The whole catalogue, in a stable order.
            pub const ALL: &'static [Permission] = &[ $( Permission::$variant, )* ];

            pub fn as_str(self) -> &'static str {
                match self { $( Permission::$variant => $wire, )* }
            }
        }

        impl FromStr for Permission {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $( $wire => Ok(Permission::$variant), )*
                    other => Err(format!("unknown permission `{other}`")),
                }
            }
        }
    };
}

permissions! {
    /// Read sessions of the workspace and their history.
    ViewSessions = "view_sessions",
    /// Start new chat sessions.
    CreateSessions = "create_sessions",
    /// Post messages (and ask the AI) in sessions one takes part in.
    SendMessages = "send_messages",
    /// Change any session's settings and participants, archive it, stop any AI reply.
    ManageSessions = "manage_sessions",
    /// Propose and vote on the model a session uses.
    VoteOnModels = "vote_on_models",
    /// Suggest improvements to messages and artifacts.
    CreateSuggestions = "create_suggestions",
    /// Apply (or dismiss) other people's suggestions.
    ApplySuggestions = "apply_suggestions",
    /// Read artifacts and their versions.
    ViewArtifacts = "view_artifacts",
    /// Edit artifacts live, save versions, branch and merge.
    EditArtifacts = "edit_artifacts",
    /// Delete artifacts, revert anyone's work, manage branches.
    ManageArtifacts = "manage_artifacts",
    /// Search and read the team knowledge base.
    ViewKnowledge = "view_knowledge",
    /// Add and edit knowledge-base entries.
    EditKnowledge = "edit_knowledge",
    /// Invite people to the workspace.
    InviteUsers = "invite_users",
    /// Change members' roles and remove members.
    ManageUsers = "manage_users",
    /// Grant and revoke custom permissions of members.
    ManagePermissions = "manage_permissions",
    /// Create and revoke API tokens for integrations.
    ManageApiTokens = "manage_api_tokens",
    /// Read the workspace's audit log.
    ViewAuditLog = "view_audit_log",
    /// Read usage analytics of the workspace.
    ViewAnalytics = "view_analytics",
    /// Rename the workspace and change its settings.
    ManageWorkspace = "manage_workspace",
    /// Delete the workspace. Owners only; cannot be granted.
    DeleteWorkspace = "delete_workspace",
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Permission {
    fn bit(self) -> u32 {
        1 << (self as u8)
    }

    /// Permissions that holding this one implies (one step; [`PermissionSet::closure`]
    /// follows the chain). Keeps the role table literal while making roles coherent:
    /// whoever may manage users may invite them.
    pub fn implies(self) -> &'static [Permission] {
        use Permission::*;
        match self {
            ManageSessions => &[CreateSessions, SendMessages, ViewSessions],
            CreateSessions => &[ViewSessions],
            VoteOnModels => &[ViewSessions],
            ApplySuggestions => &[CreateSuggestions, ViewSessions],
            CreateSuggestions => &[ViewSessions],
            ManageArtifacts => &[EditArtifacts, ApplySuggestions],
            EditArtifacts => &[ViewArtifacts, CreateSuggestions, EditKnowledge],
            EditKnowledge => &[ViewKnowledge],
            ViewArtifacts => &[ViewKnowledge],
            ViewSessions => &[ViewKnowledge],
            ManageUsers => &[InviteUsers, ViewAuditLog, ManageApiTokens],
            _ => &[],
        }
    }

    /// Whether this permission may be handed out as a custom grant or in an invitation.
    pub fn grantable(self) -> bool {
        self != Permission::DeleteWorkspace
    }
}

/// A set of permissions (a bit set over the catalogue).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PermissionSet(u32);

impl PermissionSet {
    pub const EMPTY: PermissionSet = PermissionSet(0);

    pub fn all() -> Self {
        Self::from_iter(Permission::ALL.iter().copied())
    }

    pub fn contains(self, permission: Permission) -> bool {
        self.0 & permission.bit() != 0
    }

    pub fn insert(&mut self, permission: Permission) {
        self.0 |= permission.bit();
    }

    pub fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    pub fn intersection(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }

    pub fn difference(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    pub fn is_subset(self, other: Self) -> bool {
        self.0 & !other.0 == 0
    }

    /// Adds everything the members imply, transitively.
    pub fn closure(self) -> Self {
        let mut set = self;
        loop {
            let mut next = set;
            for p in set.iter() {
                for implied in p.implies() {
                    next.insert(*implied);
                }
            }
            if next == set {
                return set;
            }
            set = next;
        }
    }

    pub fn iter(self) -> impl Iterator<Item = Permission> {
        Permission::ALL.iter().copied().filter(move |p| self.contains(*p))
    }

    /// Wire names, in catalogue order.
    pub fn names(self) -> Vec<String> {
        self.iter().map(|p| p.as_str().to_owned()).collect()
    }

    /// Parses stored or submitted names; unknown names are an error naming them.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Self, String> {
        names
            .iter()
            .map(|n| n.as_ref().parse::<Permission>())
            .collect::<Result<PermissionSet, _>>()
    }

    /// Parses names stored in the database, ignoring any this build no longer knows.
    pub fn parse_lenient<S: AsRef<str>>(names: &[S]) -> Self {
        names
            .iter()
            .filter_map(|n| n.as_ref().parse::<Permission>().ok())
            .collect()
    }
}

impl FromIterator<Permission> for PermissionSet {
    fn from_iter<I: IntoIterator<Item = Permission>>(iter: I) -> Self {
        let mut set = PermissionSet::EMPTY;
        for p in iter {
            set.insert(p);
        }
        set
    }
}

/// A member's role in a workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Owner,
    Admin,
    Editor,
    Viewer,
    Guest,
}

impl Role {
    pub const ALL: &'static [Role] = &[Role::Owner, Role::Admin, Role::Editor, Role::Viewer, Role::Guest];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Editor => "editor",
            Role::Viewer => "viewer",
            Role::Guest => "guest",
        }
    }

    /// The roles table, exactly as the product plan states it (owner: all).
    pub fn base_permissions(self) -> PermissionSet {
        use Permission::*;
        match self {
            Role::Owner => PermissionSet::all(),
            Role::Admin => [ManageUsers, ManageSessions, ManageArtifacts, ViewAnalytics]
                .into_iter()
                .collect(),
            Role::Editor => [CreateSessions, EditArtifacts, SendMessages, VoteOnModels]
                .into_iter()
                .collect(),
            Role::Viewer => [ViewSessions, ViewArtifacts, SendMessages].into_iter().collect(),
            Role::Guest => [ViewSessions, SendMessages].into_iter().collect(),
        }
    }

    /// The role's permissions with implications followed.
    pub fn permissions(self) -> PermissionSet {
        self.base_permissions().closure()
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Role::ALL
            .iter()
            .copied()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role `{s}`"))
    }
}

/// A role as stored: the tables' CHECK constraints allow only known names, anything else
/// reads as the weakest role.
impl From<String> for Role {
    fn from(stored: String) -> Self {
        stored.parse().unwrap_or(Role::Guest)
    }
}

/// Effective permissions of a member: the role's, plus custom grants, with implications
/// followed, minus custom revokes. Owners always keep everything.
pub fn effective(role: Role, granted: PermissionSet, revoked: PermissionSet) -> PermissionSet {
    if role == Role::Owner {
        return PermissionSet::all();
    }
    role.base_permissions()
        .union(granted)
        .closure()
        .difference(revoked)
        .difference([Permission::DeleteWorkspace].into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_fits_the_bit_set_and_round_trips() {
        assert!(Permission::ALL.len() <= 32);
        for p in Permission::ALL {
            assert_eq!(p.as_str().parse::<Permission>(), Ok(*p));
        }
    }

    #[test]
    fn admins_can_manage_users_and_invite_but_not_delete() {
        let admin = Role::Admin.permissions();
        assert!(admin.contains(Permission::ManageUsers));
        assert!(admin.contains(Permission::InviteUsers));
        assert!(admin.contains(Permission::ViewAuditLog));
        assert!(!admin.contains(Permission::ManagePermissions));
        assert!(!admin.contains(Permission::DeleteWorkspace));
    }

    #[test]
    fn guests_cannot_edit_and_revokes_override_grants() {
        let guest = Role::Guest.permissions();
        assert!(guest.contains(Permission::SendMessages));
        assert!(!guest.contains(Permission::EditArtifacts));
        let granted: PermissionSet = [Permission::EditArtifacts].into_iter().collect();
        let with_grant = effective(Role::Guest, granted, PermissionSet::EMPTY);
        assert!(with_grant.contains(Permission::ViewArtifacts));
        let revoked: PermissionSet = [Permission::SendMessages].into_iter().collect();
        assert!(!effective(Role::Guest, granted, revoked).contains(Permission::SendMessages));
    }
}
