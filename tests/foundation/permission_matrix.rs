//! The permission matrix: every workspace endpoint called by every role, with the expected
//! outcome computed from the server's one roles table. Every operation in the OpenAPI
//! document must appear here, so a new endpoint cannot skip the matrix.

use crate::common::*;
use bedda_collab::auth::permissions::{Permission, PermissionSet, Role, effective};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use uuid::Uuid;

/// What an endpoint requires.
#[derive(Clone, Copy, Debug)]
enum Needs {
    /// No workspace involved (accounts, catalogue, creating workspaces, accepting invitations).
    Account,
    /// Being a member of the workspace.
    Member,
    /// A workspace permission.
    Perm(Permission),
    /// A server administrator (email in `--admin-emails`): no workspace role grants it.
    ServerAdmin,
}

/// A workspace with a member of the role under test, plus things to act on.
struct Fixture {
    workspace: Uuid,
    actor: User,
    target: User,
    invitation: Uuid,
    token: Uuid,
    /// A workspace-visible chat session created by the founder, with `target` in it.
    session: Uuid,
    /// An artifact by the founder, its first version, and a branch forked from it.
    artifact: Uuid,
    version: Uuid,
    branch: Uuid,
    /// An open model proposal by the founder in a second session where `actor` and
    /// `target` take part (so `actor` is an eligible voter when their role votes).
    ballot: Uuid,
}

async fn fixture(app: &TestApp, role: Role) -> Fixture {
    let founder = app.register("founder").await;
    let workspace = app.create_workspace(&founder, "Matrix").await;
    let actor = app.add_member(&founder, workspace, "actor", role.as_str()).await;
    let target = app.add_member(&founder, workspace, "target", "editor").await;
    let (status, inv) = app
        .post(
            &format!("/api/workspaces/{workspace}/invitations"),
            Some(&founder.token),
            json!({ "email": "pending@example.com", "role": "viewer" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{inv}");
    let (status, tok) = app
        .post(
            &format!("/api/workspaces/{workspace}/tokens"),
            Some(&founder.token),
            json!({ "name": "ci", "permissions": ["view_sessions"] }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{tok}");
    let (session, _) = app.create_session(&founder, workspace, "workspace").await;
    let (status, body) = app
        .post(
            &format!("/api/sessions/{session}/participants"),
            Some(&founder.token),
            json!({ "user_id": target.id }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, art) = app
        .post(
            &format!("/api/workspaces/{workspace}/artifacts"),
            Some(&founder.token),
            json!({ "title": "Doc", "content": "hello\n" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{art}");
    let artifact: Uuid = art["id"].as_str().unwrap().parse().unwrap();
    let (status, ver) = app
        .post(
            &format!("/api/artifacts/{artifact}/versions"),
            Some(&founder.token),
            json!({ "name": "v1" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ver}");
    let version: Uuid = ver["id"].as_str().unwrap().parse().unwrap();
    let (status, br) = app
        .post(
            &format!("/api/artifacts/{artifact}/branches"),
            Some(&founder.token),
            json!({ "version_id": version, "name": "b" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{br}");
    let branch: Uuid = br["id"].as_str().unwrap().parse().unwrap();
    let (ballot_session, _) = app.create_session(&founder, workspace, "workspace").await;
    for user in [&actor, &target] {
        let (status, body) = app
            .post(
                &format!("/api/sessions/{ballot_session}/participants"),
                Some(&founder.token),
                json!({ "user_id": user.id }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, ballot) = app
        .post(
            &format!("/api/sessions/{ballot_session}/proposals"),
            Some(&founder.token),
            json!({ "model": "offline-echo", "reasoning": "the matrix" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ballot}");
    Fixture {
        ballot: ballot["id"].as_str().unwrap().parse().unwrap(),
        artifact,
        version,
        branch,
        session,
        workspace,
        actor,
        target,
        invitation: inv["id"].as_str().unwrap().parse().unwrap(),
        token: tok["id"].as_str().unwrap().parse().unwrap(),
    }
}

struct Endpoint {
    method: Method,
    /// The path as the OpenAPI document writes it.
    template: &'static str,
    needs: Needs,
    /// Builds the concrete path and body for a fixture.
    request: fn(&Fixture) -> (String, Option<Value>),
}

fn endpoints() -> Vec<Endpoint> {
    use Needs::*;
    use Permission as P;
    vec![
        Endpoint {
            method: Method::POST,
            template: "/api/auth/register",
            needs: Account,
            request: |_| {
                (
                    "/api/auth/register".into(),
                    Some(
                        json!({ "email": format!("n{}@example.com", Uuid::new_v4().simple()), "password": "long enough", "display_name": "N" }),
                    ),
                )
            },
        },
        Endpoint {
            method: Method::POST,
            template: "/api/auth/login",
            needs: Account,
            request: |f| {
                (
                    "/api/auth/login".into(),
                    Some(json!({ "email": f.actor.email, "password": "correct horse battery" })),
                )
            },
        },
        Endpoint {
            method: Method::POST,
            template: "/api/auth/logout",
            needs: Account,
            request: |_| ("/api/auth/logout".into(), None),
        },
        Endpoint {
            method: Method::GET,
            template: "/api/me",
            needs: Account,
            request: |_| ("/api/me".into(), None),
        },
        Endpoint {
            method: Method::GET,
            template: "/api/permissions",
            needs: Account,
            request: |_| ("/api/permissions".into(), None),
        },
        Endpoint {
            method: Method::POST,
            template: "/api/workspaces",
            needs: Account,
            request: |_| ("/api/workspaces".into(), Some(json!({ "name": "Mine" }))),
        },
        Endpoint {
            method: Method::GET,
            template: "/api/workspaces",
            needs: Account,
            request: |_| ("/api/workspaces".into(), None),
        },
        Endpoint {
            method: Method::POST,
            template: "/api/invitations/accept",
            needs: Account,
            request: |_| {
                (
                    "/api/invitations/accept".into(),
                    Some(json!({ "token": "bci_not-a-real-one" })),
                )
            },
        },
        Endpoint {
            method: Method::GET,
            template: "/api/workspaces/{id}",
            needs: Member,
            request: |f| (format!("/api/workspaces/{}", f.workspace), None),
        },
        Endpoint {
            method: Method::PATCH,
            template: "/api/workspaces/{id}",
            needs: Perm(P::ManageWorkspace),
            request: |f| {
                (
                    format!("/api/workspaces/{}", f.workspace),
                    Some(json!({ "name": "Renamed" })),
                )
            },
        },
        Endpoint {
            method: Method::DELETE,
            template: "/api/workspaces/{id}",
            needs: Perm(P::DeleteWorkspace),
            request: |f| (format!("/api/workspaces/{}", f.workspace), None),
        },
        Endpoint {
            method: Method::GET,
            template: "/api/workspaces/{id}/members",
            needs: Member,
            request: |f| (format!("/api/workspaces/{}/members", f.workspace), None),
        },
        Endpoint {
            method: Method::PATCH,
            template: "/api/workspaces/{id}/members/{user_id}",
            needs: Perm(P::ManageUsers),
            request: |f| {
                (
                    format!("/api/workspaces/{}/members/{}", f.workspace, f.target.id),
                    Some(json!({ "role": "viewer" })),
                )
            },
        },
        Endpoint {
            method: Method::PUT,
            template: "/api/workspaces/{id}/members/{user_id}/permissions",
            needs: Perm(P::ManagePermissions),
            request: |f| {
                (
                    format!("/api/workspaces/{}/members/{}/permissions", f.workspace, f.target.id),
                    Some(json!({ "granted": [], "revoked": ["send_messages"] })),
                )
            },
        },
        Endpoint {
            method: Method::DELETE,
            template: "/api/workspaces/{id}/members/{user_id}",
            needs: Perm(P::ManageUsers),
            request: |f| (format!("/api/workspaces/{}/members/{}", f.workspace, f.target.id), None),
        },
        Endpoint {
            method: Method::POST,
            template: "/api/workspaces/{id}/leave",
            needs: Member,
            request: |f| (format!("/api/workspaces/{}/leave", f.workspace), None),
        },
        Endpoint {
            method: Method::POST,
            template: "/api/workspaces/{id}/invitations",
            needs: Perm(P::InviteUsers),
            request: |f| {
                (
                    format!("/api/workspaces/{}/invitations", f.workspace),
                    Some(json!({ "email": "new@example.com", "role": "guest" })),
                )
            },
        },
        Endpoint {
            method: Method::GET,
            template: "/api/workspaces/{id}/invitations",
            needs: Perm(P::InviteUsers),
            request: |f| (format!("/api/workspaces/{}/invitations", f.workspace), None),
        },
        Endpoint {
            method: Method::DELETE,
            template: "/api/workspaces/{id}/invitations/{invitation_id}",
            needs: Perm(P::InviteUsers),
            request: |f| {
                (
                    format!("/api/workspaces/{}/invitations/{}", f.workspace, f.invitation),
                    None,
                )
            },
        },
        Endpoint {
            method: Method::POST,
            template: "/api/workspaces/{id}/tokens",
            needs: Perm(P::ManageApiTokens),
            request: |f| {
                (
                    format!("/api/workspaces/{}/tokens", f.workspace),
                    Some(json!({ "name": "bot", "permissions": ["view_audit_log"] })),
                )
            },
        },
        Endpoint {
            method: Method::GET,
            template: "/api/workspaces/{id}/tokens",
            needs: Perm(P::ManageApiTokens),
            request: |f| (format!("/api/workspaces/{}/tokens", f.workspace), None),
        },
        Endpoint {
            method: Method::DELETE,
            template: "/api/workspaces/{id}/tokens/{token_id}",
            needs: Perm(P::ManageApiTokens),
            request: |f| (format!("/api/workspaces/{}/tokens/{}", f.workspace, f.token), None),
        },
        Endpoint {
            method: Method::GET,
            template: "/api/workspaces/{id}/audit",
            needs: Perm(P::ViewAuditLog),
            request: |f| (format!("/api/workspaces/{}/audit", f.workspace), None),
        },
        Endpoint {
            method: Method::POST,
            template: "/api/workspaces/{id}/artifacts",
            needs: Perm(P::EditArtifacts),
            request: |f| {
                (
                    format!("/api/workspaces/{}/artifacts", f.workspace),
                    Some(json!({ "title": "New" })),
                )
            },
        },
        Endpoint {
            method: Method::GET,
            template: "/api/workspaces/{id}/artifacts",
            needs: Perm(P::ViewArtifacts),
            request: |f| (format!("/api/workspaces/{}/artifacts", f.workspace), None),
        },
        Endpoint {
            method: Method::GET,
            template: "/api/artifacts/{id}",
            needs: Perm(P::ViewArtifacts),
            request: |f| (format!("/api/artifacts/{}", f.artifact), None),
        },
        Endpoint {
            method: Method::PATCH,
            template: "/api/artifacts/{id}",
            needs: Perm(P::EditArtifacts),
            request: |f| {
                (
                    format!("/api/artifacts/{}", f.artifact),
                    Some(json!({ "title": "Renamed" })),
                )
            },
        },
        Endpoint {
            method: Method::DELETE,
            template: "/api/artifacts/{id}",
            needs: Perm(P::ManageArtifacts),
            request: |f| (format!("/api/artifacts/{}", f.artifact), None),
        },
        Endpoint {
            method: Method::POST,
            template: "/api/artifacts/{id}/connect-token",
            needs: Perm(P::ViewArtifacts),
            request: |f| {
                (
                    format!("/api/artifacts/{}/connect-token", f.artifact),
                    Some(json!({ "access": "read" })),
                )
            },
        },
        Endpoint {
            method: Method::POST,
            template: "/api/artifacts/{id}/versions",
            needs: Perm(P::EditArtifacts),
            request: |f| {
                (
                    format!("/api/artifacts/{}/versions", f.artifact),
                    Some(json!({ "name": "v2" })),
                )
            },
        },
        Endpoint {
            method: Method::GET,
            template: "/api/artifacts/{id}/versions",
            needs: Perm(P::ViewArtifacts),
            request: |f| (format!("/api/artifacts/{}/versions", f.artifact), None),
        },
        Endpoint {
            method: Method::GET,
            template: "/api/artifacts/{id}/versions/{version_id}",
            needs: Perm(P::ViewArtifacts),
            request: |f| (format!("/api/artifacts/{}/versions/{}", f.artifact, f.version), None),
        },
        Endpoint {
            method: Method::GET,
            template: "/api/artifacts/{id}/diff",
            needs: Perm(P::ViewArtifacts),
            request: |f| (format!("/api/artifacts/{}/diff?from={}", f.artifact, f.version), None),
        },
        Endpoint {
            method: Method::POST,
            template: "/api/artifacts/{id}/versions/{version_id}/revert",
            needs: Perm(P::EditArtifacts),
            request: |f| {
                (
                    format!("/api/artifacts/{}/versions/{}/revert", f.artifact, f.version),
                    None,
                )
            },
        },
        Endpoint {
            method: Method::POST,
            template: "/api/artifacts/{id}/branches",
            needs: Perm(P::EditArtifacts),
            request: |f| {
                (
                    format!("/api/artifacts/{}/branches", f.artifact),
                    Some(json!({ "version_id": f.version, "name": "x" })),
                )
            },
        },
        Endpoint {
            method: Method::POST,
            template: "/api/artifacts/{id}/merge",
            needs: Perm(P::EditArtifacts),
            request: |f| (format!("/api/artifacts/{}/merge", f.branch), Some(json!({}))),
        },
        Endpoint {
            method: Method::GET,
            template: "/api/models",
            needs: Account,
            request: |_| ("/api/models".into(), None),
        },
        Endpoint {
            method: Method::GET,
            template: "/api/workspaces/{id}/usage",
            needs: Perm(P::ViewAnalytics),
            request: |f| (format!("/api/workspaces/{}/usage", f.workspace), None),
        },
        Endpoint {
            method: Method::GET,
            template: "/api/admin/nodes",
            needs: ServerAdmin,
            request: |_| ("/api/admin/nodes".into(), None),
        },
        Endpoint {
            method: Method::POST,
            template: "/api/admin/users/{id}/disable",
            needs: ServerAdmin,
            request: |f| (format!("/api/admin/users/{}/disable", f.target.id), None),
        },
        Endpoint {
            method: Method::POST,
            template: "/api/admin/users/{id}/enable",
            needs: ServerAdmin,
            request: |f| (format!("/api/admin/users/{}/enable", f.target.id), None),
        },
        Endpoint {
            method: Method::GET,
            template: "/api/artifact-tokens",
            needs: Account,
            request: |_| ("/api/artifact-tokens".into(), None),
        },
        Endpoint {
            method: Method::DELETE,
            template: "/api/artifact-tokens",
            needs: Account,
            request: |_| ("/api/artifact-tokens".into(), None),
        },
        // Someone else's token (the founder's would be found only by its owner): not found
        // for everyone, whatever their role.
        Endpoint {
            method: Method::DELETE,
            template: "/api/artifact-tokens/{id}",
            needs: Account,
            request: |_| (format!("/api/artifact-tokens/{}", Uuid::new_v4()), None),
        },
        Endpoint {
            method: Method::POST,
            template: "/api/artifact-tokens/revoke",
            needs: Account,
            request: |_| {
                (
                    "/api/artifact-tokens/revoke".into(),
                    Some(json!({ "token": "bca_not-yours" })),
                )
            },
        },
        Endpoint {
            method: Method::POST,
            template: "/api/ws-tickets",
            needs: Account,
            request: |_| ("/api/ws-tickets".into(), None),
        },
        Endpoint {
            method: Method::POST,
            template: "/api/workspaces/{id}/sessions",
            needs: Perm(P::CreateSessions),
            request: |f| {
                (
                    format!("/api/workspaces/{}/sessions", f.workspace),
                    Some(json!({ "title": "Mine" })),
                )
            },
        },
        Endpoint {
            method: Method::GET,
            template: "/api/workspaces/{id}/sessions",
            needs: Perm(P::ViewSessions),
            request: |f| (format!("/api/workspaces/{}/sessions", f.workspace), None),
        },
        Endpoint {
            method: Method::GET,
            template: "/api/sessions/{id}",
            needs: Perm(P::ViewSessions),
            request: |f| (format!("/api/sessions/{}", f.session), None),
        },
        Endpoint {
            method: Method::PATCH,
            template: "/api/sessions/{id}",
            needs: Perm(P::ManageSessions),
            request: |f| {
                (
                    format!("/api/sessions/{}", f.session),
                    Some(json!({ "title": "Renamed" })),
                )
            },
        },
        Endpoint {
            method: Method::POST,
            template: "/api/sessions/{id}/archive",
            needs: Perm(P::ManageSessions),
            request: |f| (format!("/api/sessions/{}/archive", f.session), None),
        },
        Endpoint {
            method: Method::POST,
            template: "/api/sessions/{id}/unarchive",
            needs: Perm(P::ManageSessions),
            request: |f| (format!("/api/sessions/{}/unarchive", f.session), None),
        },
        Endpoint {
            method: Method::GET,
            template: "/api/sessions/{id}/participants",
            needs: Perm(P::ViewSessions),
            request: |f| (format!("/api/sessions/{}/participants", f.session), None),
        },
        Endpoint {
            method: Method::POST,
            template: "/api/sessions/{id}/participants",
            needs: Perm(P::ManageSessions),
            request: |f| {
                (
                    format!("/api/sessions/{}/participants", f.session),
                    Some(json!({ "user_id": f.target.id })),
                )
            },
        },
        Endpoint {
            method: Method::DELETE,
            template: "/api/sessions/{id}/participants/{user_id}",
            needs: Perm(P::ManageSessions),
            request: |f| {
                (
                    format!("/api/sessions/{}/participants/{}", f.session, f.target.id),
                    None,
                )
            },
        },
        Endpoint {
            method: Method::GET,
            template: "/api/sessions/{id}/messages",
            needs: Perm(P::ViewSessions),
            request: |f| (format!("/api/sessions/{}/messages", f.session), None),
        },
        Endpoint {
            method: Method::GET,
            template: "/api/sessions/{id}/proposals",
            needs: Perm(P::ViewSessions),
            request: |f| (format!("/api/sessions/{}/proposals", f.session), None),
        },
        Endpoint {
            method: Method::POST,
            template: "/api/sessions/{id}/proposals",
            needs: Perm(P::VoteOnModels),
            request: |f| {
                (
                    format!("/api/sessions/{}/proposals", f.session),
                    Some(json!({ "model": "offline-echo", "reasoning": "cheaper" })),
                )
            },
        },
        Endpoint {
            method: Method::GET,
            template: "/api/proposals/{id}",
            needs: Perm(P::ViewSessions),
            request: |f| (format!("/api/proposals/{}", f.ballot), None),
        },
        Endpoint {
            method: Method::POST,
            template: "/api/proposals/{id}/vote",
            needs: Perm(P::VoteOnModels),
            request: |f| {
                (
                    format!("/api/proposals/{}/vote", f.ballot),
                    Some(json!({ "vote": "approve", "comment": "fine" })),
                )
            },
        },
        Endpoint {
            method: Method::POST,
            template: "/api/proposals/{id}/withdraw",
            needs: Perm(P::ManageSessions),
            request: |f| (format!("/api/proposals/{}/withdraw", f.ballot), None),
        },
    ]
}

#[actix_web::test]
async fn every_openapi_operation_is_in_the_matrix() {
    let app = spawn_app().await;
    let doc = app.openapi().await;
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let covered: BTreeSet<_> = endpoints()
        .iter()
        .map(|e| (e.method.to_string(), e.template.to_owned()))
        .collect();
    let missing: Vec<_> = documented.difference(&covered).collect();
    assert!(
        missing.is_empty(),
        "endpoints missing from the permission matrix: {missing:?}"
    );
    let stale: Vec<_> = covered.difference(&documented).collect();
    assert!(
        stale.is_empty(),
        "matrix entries that are not documented in OpenAPI: {stale:?}"
    );
}

#[actix_web::test]
async fn every_workspace_endpoint_by_every_role() {
    let app = spawn_app().await;
    let mut checked = 0;
    for endpoint in endpoints() {
        for role in Role::ALL.iter().copied() {
            let allowed = match endpoint.needs {
                Needs::Account | Needs::Member => true,
                Needs::Perm(p) => effective(role, PermissionSet::EMPTY, PermissionSet::EMPTY).contains(p),
                Needs::ServerAdmin => false,
            };
            let f = fixture(&app, role).await;
            let (path, body) = (endpoint.request)(&f);
            let token = match endpoint.template {
                "/api/auth/register" | "/api/auth/login" | "/api/permissions" => None,
                _ => Some(f.actor.token.as_str()),
            };
            let (status, response) = app.call(endpoint.method.clone(), &path, token, body).await;
            let label = format!("{} {} as {role}", endpoint.method, endpoint.template);
            match endpoint.needs {
                // Accepting a forged invitation is refused for everyone, but not for lack of a role.
                Needs::Account
                    if matches!(
                        endpoint.template,
                        "/api/invitations/accept" | "/api/artifact-tokens/{id}" | "/api/artifact-tokens/revoke"
                    ) =>
                {
                    assert_eq!(status, StatusCode::NOT_FOUND, "{label}: {response}")
                }
                _ if allowed => assert!(
                    status.is_success(),
                    "{label} should be allowed, got {status}: {response}"
                ),
                _ => {
                    assert_eq!(status, StatusCode::FORBIDDEN, "{label} should be denied: {response}");
                    assert_eq!(response["code"], "permission_denied", "{label}: {response}");
                }
            }
            checked += 1;
        }
    }
    assert_eq!(checked, endpoints().len() * Role::ALL.len());
}

#[actix_web::test]
async fn non_members_get_not_found_on_every_workspace_endpoint() {
    let app = spawn_app().await;
    let stranger = app.register("stranger").await;
    for endpoint in endpoints() {
        if matches!(endpoint.needs, Needs::Account | Needs::ServerAdmin) {
            continue;
        }
        let f = fixture(&app, Role::Editor).await;
        let (path, body) = (endpoint.request)(&f);
        let (status, response) = app
            .call(endpoint.method.clone(), &path, Some(&stranger.token), body)
            .await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "{} {}: {response}",
            endpoint.method,
            endpoint.template
        );
        let expected = if endpoint.template.starts_with("/api/artifacts/") {
            "artifact_not_found"
        } else if endpoint.template.starts_with("/api/proposals/") {
            "proposal_not_found"
        } else if endpoint.template.starts_with("/api/sessions/") {
            "session_not_found"
        } else {
            "workspace_not_found"
        };
        assert_eq!(response["code"], expected, "{} {}", endpoint.method, endpoint.template);
    }
}
