//! API tokens: shown once, stored hashed, scoped to one workspace and to a subset of what
//! their creator may do now; revocable at once.

use crate::common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

async fn create_token(app: &TestApp, user: &User, ws: Uuid, body: Value) -> (StatusCode, Value) {
    app.post(&format!("/api/workspaces/{ws}/tokens"), Some(&user.token), body)
        .await
}

/// Creates a token with `permissions`; returns (id, secret).
async fn token_with(app: &TestApp, user: &User, ws: Uuid, permissions: &[&str]) -> (Uuid, String) {
    let (status, body) = create_token(
        app,
        user,
        ws,
        json!({ "name": "integration", "permissions": permissions }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    (
        body["id"].as_str().unwrap().parse().unwrap(),
        body["token"].as_str().unwrap().to_owned(),
    )
}

async fn invite_with(app: &TestApp, bearer: &str, ws: Uuid, email: &str) -> (StatusCode, Value) {
    app.post(
        &format!("/api/workspaces/{ws}/invitations"),
        Some(bearer),
        json!({ "email": email, "role": "guest" }),
    )
    .await
}

#[actix_web::test]
async fn a_token_is_shown_once_and_only_its_hash_is_stored() {
    let app = spawn_app().await;
    let owner = app.register("olga").await;
    let ws = app.create_workspace(&owner, "Team").await;

    let (status, created) = create_token(
        &app,
        &owner,
        ws,
        json!({ "name": " CI bot ", "permissions": ["view_audit_log", "invite_users"], "expires_in_days": 30 }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["token"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("bct_"), "{secret}");
    assert_eq!(created["name"], "CI bot");
    assert_eq!(created["permissions"], json!(["invite_users", "view_audit_log"]));
    assert_eq!(created["created_by"], owner.id.to_string());
    assert!(created["expires_at"].is_string());
    assert_eq!(created["last_used_at"], Value::Null);

    let (status, list) = app.get(&format!("/api/workspaces/{ws}/tokens"), &owner.token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], created["id"]);
    assert_eq!(list[0]["name"], "CI bot");
    assert!(list[0].get("token").is_none());
    assert!(!list.to_string().contains(&secret[4..]), "{list}");

    let db = app.db.client().await;
    let stored: Vec<u8> = db
        .query_one("SELECT token_hash FROM api_tokens", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, bedda_collab::auth::secrets::hash(&secret));
    let dump: String = db
        .query_one(
            "SELECT (SELECT string_agg(t::text, '|') FROM api_tokens t) || '|' || \
                    (SELECT string_agg(t::text, '|') FROM audit_log t)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(dump.contains("CI bot"), "the dump covers the token row");
    assert!(!dump.contains(&secret[4..]));
}

#[actix_web::test]
async fn a_token_acts_within_its_permissions_in_its_workspace_only() {
    let app = spawn_app().await;
    let owner = app.register("olga").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let other = app.create_workspace(&owner, "Other").await;
    // Inviting a guest hands out a guest's permissions, so the token lists those too.
    let (token_id, token) = token_with(
        &app,
        &owner,
        ws,
        &[
            "view_audit_log",
            "invite_users",
            "view_sessions",
            "send_messages",
            "view_knowledge",
        ],
    )
    .await;

    // Inside its permissions.
    let (status, seen) = app.get(&format!("/api/workspaces/{ws}"), &token).await;
    assert_eq!(status, StatusCode::OK, "{seen}");
    assert_eq!(seen["my_role"], Value::Null);
    assert_eq!(
        seen["my_permissions"],
        json!([
            "view_sessions",
            "send_messages",
            "view_knowledge",
            "invite_users",
            "view_audit_log"
        ])
    );
    let (status, audit) = app.get(&format!("/api/workspaces/{ws}/audit"), &token).await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    let (status, invitation) = invite_with(&app, &token, ws, "new@example.com").await;
    assert_eq!(status, StatusCode::CREATED, "{invitation}");
    assert_eq!(invitation["invited_by"], owner.id.to_string());
    let (status, mine) = app.get("/api/workspaces", &token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(mine.as_array().unwrap().len(), 1);
    assert_eq!(mine[0]["id"], ws.to_string());

    // Outside them.
    let denied = [
        app.call(
            Method::PATCH,
            &format!("/api/workspaces/{ws}"),
            Some(&token),
            Some(json!({ "name": "Hijacked" })),
        )
        .await,
        app.call(Method::DELETE, &format!("/api/workspaces/{ws}"), Some(&token), None)
            .await,
        app.get(&format!("/api/workspaces/{ws}/tokens"), &token).await,
        app.call(
            Method::DELETE,
            &format!("/api/workspaces/{ws}/tokens/{token_id}"),
            Some(&token),
            None,
        )
        .await,
        app.call(
            Method::PATCH,
            &format!("/api/workspaces/{ws}/members/{}", owner.id),
            Some(&token),
            Some(json!({ "role": "guest" })),
        )
        .await,
    ];
    for res in &denied {
        assert_error(res, StatusCode::FORBIDDEN, "permission_denied");
    }
    let name: String = app
        .db
        .client()
        .await
        .query_one("SELECT name FROM workspaces WHERE id = $1", &[&ws])
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, "Team");

    // Another workspace of the same creator does not exist for it.
    assert_error(
        &app.get(&format!("/api/workspaces/{other}"), &token).await,
        StatusCode::NOT_FOUND,
        "workspace_not_found",
    );
    assert_error(
        &invite_with(&app, &token, other, "x@example.com").await,
        StatusCode::NOT_FOUND,
        "workspace_not_found",
    );

    // What only a logged-in person may do.
    let user_only = [
        app.get("/api/me", &token).await,
        app.post("/api/workspaces", Some(&token), json!({ "name": "By a bot" }))
            .await,
        app.post(
            &format!("/api/workspaces/{ws}/tokens"),
            Some(&token),
            json!({ "name": "child", "permissions": ["view_sessions"] }),
        )
        .await,
        app.call(Method::POST, &format!("/api/workspaces/{ws}/leave"), Some(&token), None)
            .await,
        app.post(
            "/api/invitations/accept",
            Some(&token),
            json!({ "token": invitation["token"] }),
        )
        .await,
    ];
    for res in &user_only {
        assert_error(res, StatusCode::FORBIDDEN, "user_required");
    }
    assert_eq!(app.count("workspaces").await, 2);
    assert_eq!(app.count("api_tokens").await, 1);
}

#[actix_web::test]
async fn using_a_token_records_when_it_was_last_used() {
    let app = spawn_app().await;
    let owner = app.register("olga").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let (_, token) = token_with(&app, &owner, ws, &["view_sessions"]).await;
    let (_, list) = app.get(&format!("/api/workspaces/{ws}/tokens"), &owner.token).await;
    assert_eq!(list[0]["last_used_at"], Value::Null);

    assert_eq!(
        app.get(&format!("/api/workspaces/{ws}"), &token).await.0,
        StatusCode::OK
    );
    let (_, list) = app.get(&format!("/api/workspaces/{ws}/tokens"), &owner.token).await;
    let used: chrono::DateTime<chrono::Utc> = list[0]["last_used_at"]
        .as_str()
        .unwrap_or_else(|| panic!("last_used_at not set: {list}"))
        .parse()
        .unwrap();
    let created: chrono::DateTime<chrono::Utc> = list[0]["created_at"].as_str().unwrap().parse().unwrap();
    assert!(used >= created);
}

#[actix_web::test]
async fn a_revoked_token_stops_working_at_once() {
    let app = spawn_app().await;
    let owner = app.register("olga").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let (token_id, token) = token_with(&app, &owner, ws, &["view_sessions"]).await;
    let (keep_id, keep) = token_with(&app, &owner, ws, &["view_sessions"]).await;
    assert_eq!(
        app.get(&format!("/api/workspaces/{ws}"), &token).await.0,
        StatusCode::OK
    );

    let revoke = format!("/api/workspaces/{ws}/tokens/{token_id}");
    let (status, _) = app.call(Method::DELETE, &revoke, Some(&owner.token), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_error(
        &app.get(&format!("/api/workspaces/{ws}"), &token).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    );
    // The other token is untouched; the list shows which one was revoked.
    assert_eq!(app.get(&format!("/api/workspaces/{ws}"), &keep).await.0, StatusCode::OK);
    let (_, list) = app.get(&format!("/api/workspaces/{ws}/tokens"), &owner.token).await;
    for t in list.as_array().unwrap() {
        let revoked = t["revoked_at"].is_string();
        assert_eq!(revoked, t["id"] == token_id.to_string(), "{t}");
        assert!(t["id"] == token_id.to_string() || t["id"] == keep_id.to_string());
    }

    assert_error(
        &app.call(Method::DELETE, &revoke, Some(&owner.token), None).await,
        StatusCode::NOT_FOUND,
        "token_not_found",
    );
    assert_error(
        &app.call(
            Method::DELETE,
            &format!("/api/workspaces/{ws}/tokens/{}", Uuid::new_v4()),
            Some(&owner.token),
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
        "token_not_found",
    );
}

#[actix_web::test]
async fn a_token_cannot_hold_more_than_its_creator() {
    let app = spawn_app().await;
    let owner = app.register("olga").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let admin = app.add_member(&owner, ws, "adam", "admin").await;
    let editor = app.add_member(&owner, ws, "ed", "editor").await;
    let before = app.count("api_tokens").await;
    let audit_before = app.count("audit_log").await;

    // Admins may create tokens, but only with what they hold.
    assert_error(
        &create_token(
            &app,
            &admin,
            ws,
            json!({ "name": "t", "permissions": ["manage_permissions"] }),
        )
        .await,
        StatusCode::FORBIDDEN,
        "permission_denied",
    );
    assert_error(
        &create_token(
            &app,
            &admin,
            ws,
            json!({ "name": "t", "permissions": ["view_analytics", "manage_workspace"] }),
        )
        .await,
        StatusCode::FORBIDDEN,
        "permission_denied",
    );
    // Editors may not create tokens at all.
    assert_error(
        &create_token(
            &app,
            &editor,
            ws,
            json!({ "name": "t", "permissions": ["send_messages"] }),
        )
        .await,
        StatusCode::FORBIDDEN,
        "permission_denied",
    );
    // Malformed requests.
    for body in [
        json!({ "name": "t", "permissions": [] }),
        json!({ "name": "t", "permissions": ["warp_drive"] }),
        json!({ "name": "t", "permissions": ["delete_workspace"] }),
        json!({ "name": "", "permissions": ["view_sessions"] }),
        json!({ "name": "t".repeat(101), "permissions": ["view_sessions"] }),
        json!({ "name": "t", "permissions": ["view_sessions"], "expires_in_days": 0 }),
        json!({ "name": "t", "permissions": ["view_sessions"], "expires_in_days": 3651 }),
    ] {
        let res = create_token(&app, &owner, ws, body.clone()).await;
        assert_eq!(res.0, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {}", res.1);
        assert_error(&res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    }
    assert_eq!(app.count("api_tokens").await, before);
    assert_eq!(app.count("audit_log").await, audit_before);

    let (status, body) = create_token(
        &app,
        &admin,
        ws,
        json!({ "name": "t", "permissions": ["view_analytics"] }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[actix_web::test]
async fn a_token_never_does_more_than_its_creator_may_do_now() {
    let app = spawn_app().await;
    let owner = app.register("olga").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let admin = app.add_member(&owner, ws, "adam", "admin").await;
    let (_, token) = token_with(&app, &admin, ws, &["view_audit_log", "invite_users"]).await;
    let audit = format!("/api/workspaces/{ws}/audit");
    assert_eq!(app.get(&audit, &token).await.0, StatusCode::OK);

    // Demoting the creator narrows the token; promoting them back restores it.
    let path = format!("/api/workspaces/{ws}/members/{}", admin.id);
    let (status, _) = app
        .call(
            Method::PATCH,
            &path,
            Some(&owner.token),
            Some(json!({ "role": "editor" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_error(
        &app.get(&audit, &token).await,
        StatusCode::FORBIDDEN,
        "permission_denied",
    );
    let (status, _) = app
        .call(
            Method::PATCH,
            &path,
            Some(&owner.token),
            Some(json!({ "role": "admin" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.get(&audit, &token).await.0, StatusCode::OK);

    // Once the creator is out of the workspace, the token is of no use there at all.
    let (status, _) = app.call(Method::DELETE, &path, Some(&owner.token), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let before = app.count("invitations").await;
    let refused = [
        app.get(&audit, &token).await,
        invite_with(&app, &token, ws, "late@example.com").await,
        app.get(&format!("/api/workspaces/{ws}"), &token).await,
        app.get(&format!("/api/workspaces/{ws}/members"), &token).await,
        app.get("/api/workspaces", &token).await,
    ];
    for res in &refused {
        assert_error(res, StatusCode::FORBIDDEN, "permission_denied");
    }
    assert_eq!(app.count("invitations").await, before);
}

#[actix_web::test]
async fn a_token_holds_exactly_what_it_lists_without_implications() {
    let app = spawn_app().await;
    let owner = app.register("olga").await;
    let ws = app.create_workspace(&owner, "Team").await;
    // For a member, manage_users brings invite_users; a token's list is taken as is
    // (docs/PERMISSIONS.md: "name every permission the integration needs").
    let (_, token) = token_with(&app, &owner, ws, &["manage_users"]).await;
    let (status, seen) = app.get(&format!("/api/workspaces/{ws}"), &token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seen["my_permissions"], json!(["manage_users"]));
    assert_error(
        &app.get(&format!("/api/workspaces/{ws}/invitations"), &token).await,
        StatusCode::FORBIDDEN,
        "permission_denied",
    );
    let (_, token) = token_with(&app, &owner, ws, &["manage_users", "invite_users"]).await;
    assert_eq!(
        app.get(&format!("/api/workspaces/{ws}/invitations"), &token).await.0,
        StatusCode::OK
    );
}
