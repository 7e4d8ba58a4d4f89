//! Revoking artifact connect tokens (one by id, one by value, all), logging out and
//! disabling an account: what ends, which sockets close (4403) and which stay open.

use super::*;
use reqwest::{Method, StatusCode};

#[actix_web::test]
async fn a_revoked_artifact_token_closes_its_sockets_and_connects_no_more() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let mallory = app.register("mallory").await;
    let (_, id) = artifact(&app, &owner, "Hello").await;
    let (first, first_secret) = token(&app, &owner, id).await;
    let (_, second_secret) = token(&app, &owner, id).await;
    let (_, third_secret) = token(&app, &owner, id).await;
    let mut a = app.yclient_with(id, &first_secret).await;
    let mut b = app.yclient_with(id, &second_secret).await;

    // Only the owner can see or revoke them.
    let listed = app.get("/api/artifact-tokens", &owner.token).await;
    assert_eq!(listed.1.as_array().unwrap().len(), 3, "{}", listed.1);
    assert!(!listed.1.to_string().contains("bca_"), "the list never shows a secret");
    let (_, others) = app.get("/api/artifact-tokens", &mallory.token).await;
    assert_eq!(others, json!([]));
    let stranger = app
        .call(
            Method::DELETE,
            &format!("/api/artifact-tokens/{first}"),
            Some(&mallory.token),
            None,
        )
        .await;
    assert_error(&stranger, StatusCode::NOT_FOUND, "token_not_found");
    let by_value = app
        .post(
            "/api/artifact-tokens/revoke",
            Some(&mallory.token),
            json!({ "token": first_secret }),
        )
        .await;
    assert_error(&by_value, StatusCode::NOT_FOUND, "token_not_found");

    // Revoked by id: its socket closes with 4403; the other token's socket keeps editing.
    let (status, _) = app
        .call(
            Method::DELETE,
            &format!("/api/artifact-tokens/{first}"),
            Some(&owner.token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(a.closed().await, Some(4403));
    assert_eq!(
        handshake(&app, &format!("/ws/artifacts/{id}?token={first_secret}")).await,
        401
    );
    b.append(", still here").await;
    let mut c = app.yclient_with(id, &third_secret).await;
    c.wait_text("Hello, still here").await;

    // Revoked by value.
    let (status, _) = app
        .post(
            "/api/artifact-tokens/revoke",
            Some(&owner.token),
            json!({ "token": second_secret }),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(b.closed().await, Some(4403));

    // All of them.
    let (status, body) = app
        .call(Method::DELETE, "/api/artifact-tokens", Some(&owner.token), None)
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "revoked": 1 })));
    assert_eq!(c.closed().await, Some(4403));
    assert_eq!(
        handshake(&app, &format!("/ws/artifacts/{id}?token={third_secret}")).await,
        401
    );
    assert_eq!(app.count("artifact_tokens").await, 0);
}

#[actix_web::test]
async fn logout_ends_the_sessions_tokens_tickets_and_sockets_but_not_other_logins() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let (ws_id, id) = artifact(&app, &owner, "Hello").await;
    let (_, topic) = app.create_session(&owner, ws_id, "private").await;
    let laptop = login(&app, &owner).await;

    // On the phone (the registration's session): a /ws socket, an editor, a spare ticket
    // and a spare artifact token.
    let mut phone_ws = app.ws(&owner).await;
    alive(&mut phone_ws, &topic).await;
    let mut phone_editor = app.yclient(&owner, id, "write").await;
    let spare_ticket = app.ticket(&owner).await;
    let (_, spare_token) = token(&app, &owner, id).await;
    // On the laptop: the same.
    let mut laptop_ws = app.ws(&laptop).await;
    let mut laptop_editor = app.yclient(&laptop, id, "write").await;

    let (status, _) = app.post("/api/auth/logout", Some(&owner.token), json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(close_code(&mut phone_ws).await, Some(4403));
    assert_eq!(phone_editor.closed().await, Some(4403));
    assert_eq!(handshake(&app, &format!("/ws?ticket={spare_ticket}")).await, 401);
    assert_eq!(
        handshake(&app, &format!("/ws/artifacts/{id}?token={spare_token}")).await,
        401
    );
    assert_eq!(app.get("/api/me", &owner.token).await.0, StatusCode::UNAUTHORIZED);

    // The laptop's login is untouched: its sockets still answer.
    alive(&mut laptop_ws, &topic).await;
    laptop_editor.append(", laptop").await;
    let mut check = app.yclient(&laptop, id, "read").await;
    check.wait_text("Hello, laptop").await;
}

#[actix_web::test]
async fn a_disabled_account_is_shut_out_everywhere_until_enabled() {
    let admin_email = format!("root-{}@example.com", Uuid::new_v4().simple());
    let email = admin_email.clone();
    let app = spawn_app_with(move |c| c.admin_emails = vec![email]).await;
    let (status, body) = app
        .post(
            "/api/auth/register",
            None,
            json!({ "email": admin_email, "password": "correct horse battery", "display_name": "root" }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let root = body["token"].as_str().unwrap().to_owned();
    let owner = app.register("owner").await;
    let bob = app.register("bob").await;
    let (ws_id, id) = artifact(&app, &owner, "Hello").await;
    let second = login(&app, &owner).await;
    let (status, api) = app
        .post(
            &format!("/api/workspaces/{ws_id}/tokens"),
            Some(&owner.token),
            json!({ "name": "ci", "permissions": ["view_artifacts"] }),
        )
        .await;
    assert_eq!(status, 201, "{api}");
    let api_token = api["token"].as_str().unwrap().to_owned();
    let mut socket = app.ws(&owner).await;
    let mut other_login = app.ws(&second).await;
    let mut editor = app.yclient(&owner, id, "write").await;
    let mut bystander = app.ws(&bob).await;

    // Only server admins may disable, and not themselves.
    let refused = app
        .post(
            &format!("/api/admin/users/{}/disable", owner.id),
            Some(&bob.token),
            json!({}),
        )
        .await;
    assert_error(&refused, StatusCode::FORBIDDEN, "permission_denied");
    let (status, body) = app
        .post(
            &format!("/api/admin/users/{}/disable", owner.id),
            Some(&root),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["disabled_at"].is_string(), "{body}");

    // Every socket of every login closes; nothing the account held works.
    assert_eq!(close_code(&mut socket).await, Some(4403));
    assert_eq!(close_code(&mut other_login).await, Some(4403));
    assert_eq!(editor.closed().await, Some(4403));
    for token in [&owner.token, &second.token, &api_token] {
        assert_eq!(app.get("/api/me", token).await.0, StatusCode::UNAUTHORIZED);
    }
    let api_call = app.get(&format!("/api/workspaces/{ws_id}/artifacts"), &api_token).await;
    assert_error(&api_call, StatusCode::UNAUTHORIZED, "unauthenticated");
    let login_again = app
        .post(
            "/api/auth/login",
            None,
            json!({ "email": owner.email, "password": "correct horse battery" }),
        )
        .await;
    assert_error(&login_again, StatusCode::UNAUTHORIZED, "invalid_credentials");
    // A bystander's socket is not touched.
    let (_, bobs_topic) = {
        let ws = app.create_workspace(&bob, "Bob's").await;
        app.create_session(&bob, ws, "private").await
    };
    alive(&mut bystander, &bobs_topic).await;

    // It is audited; enabling lets the owner log in again (the API token works again too).
    let db = app.db.client().await;
    let actions: Vec<String> = db
        .query(
            "SELECT action FROM audit_log WHERE target_id = $1 AND action LIKE 'user.%able' ORDER BY id",
            &[&owner.id.to_string()],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(actions, ["user.disable"]);
    let (status, body) = app
        .post(&format!("/api/admin/users/{}/enable", owner.id), Some(&root), json!({}))
        .await;
    assert_eq!((status, body["disabled_at"].clone()), (StatusCode::OK, Value::Null));
    login(&app, &owner).await;
    assert_eq!(
        app.get(&format!("/api/workspaces/{ws_id}/artifacts"), &api_token)
            .await
            .0,
        200
    );
    let missing = app
        .post(
            &format!("/api/admin/users/{}/disable", Uuid::new_v4()),
            Some(&root),
            json!({}),
        )
        .await;
    assert_error(&missing, StatusCode::NOT_FOUND, "member_not_found");
}
