//! The audit log: one row per mutation (actor, action, target, address), none for a failed
//! one; `GET /api/workspaces/{id}/audit` pages newest first and is for admins and owners.

use crate::common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

/// One audit row as stored: action, acting user, acting token, target type, target id, ip.
type Row = (String, Option<Uuid>, Option<Uuid>, String, String, Option<String>);

async fn rows(app: &TestApp, ws: Uuid) -> Vec<Row> {
    let db = app.db.client().await;
    db.query(
        "SELECT action, actor_user_id, actor_token_id, target_type, target_id, ip \
         FROM audit_log WHERE workspace_id = $1 ORDER BY id",
        &[&ws],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
    .collect()
}

fn by_user(action: &str, user: &User, target_type: &str, target: impl ToString) -> Row {
    (
        action.to_owned(),
        Some(user.id),
        None,
        target_type.to_owned(),
        target.to_string(),
        Some("127.0.0.1".to_owned()),
    )
}

fn id_of(body: &Value) -> Uuid {
    body["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id: {body}"))
        .parse()
        .unwrap()
}

async fn invite(app: &TestApp, bearer: &str, ws: Uuid, email: &str, role: &str) -> Value {
    let (status, body) = app
        .post(
            &format!("/api/workspaces/{ws}/invitations"),
            Some(bearer),
            json!({ "email": email, "role": role }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

async fn accept(app: &TestApp, user: &User, invitation: &Value) {
    let (status, body) = app
        .post(
            "/api/invitations/accept",
            Some(&user.token),
            json!({ "token": invitation["token"] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[actix_web::test]
async fn every_mutation_writes_one_row_with_actor_action_target_and_address() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let dan = app.register("dan").await;
    let mut expected = Vec::new();

    let ws = app.create_workspace(&ann, "Team").await;
    expected.push(by_user("workspace.create", &ann, "workspace", ws));

    let (status, _) = app
        .call(
            Method::PATCH,
            &format!("/api/workspaces/{ws}"),
            Some(&ann.token),
            Some(json!({ "name": "Team 2" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    expected.push(by_user("workspace.rename", &ann, "workspace", ws));

    let inv = invite(&app, &ann.token, ws, &bob.email, "editor").await;
    expected.push(by_user("invitation.create", &ann, "invitation", id_of(&inv)));
    accept(&app, &bob, &inv).await;
    expected.push(by_user("invitation.accept", &bob, "invitation", id_of(&inv)));

    let member = format!("/api/workspaces/{ws}/members/{}", bob.id);
    let (status, _) = app
        .call(
            Method::PATCH,
            &member,
            Some(&ann.token),
            Some(json!({ "role": "viewer" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    expected.push(by_user("member.role_change", &ann, "user", bob.id));

    let (status, _) = app
        .call(
            Method::PUT,
            &format!("{member}/permissions"),
            Some(&ann.token),
            Some(json!({ "granted": ["view_analytics"] })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    expected.push(by_user("member.permissions", &ann, "user", bob.id));

    let inv2 = invite(&app, &ann.token, ws, "carol@example.com", "guest").await;
    expected.push(by_user("invitation.create", &ann, "invitation", id_of(&inv2)));
    let (status, _) = app
        .call(
            Method::DELETE,
            &format!("/api/workspaces/{ws}/invitations/{}", id_of(&inv2)),
            Some(&ann.token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    expected.push(by_user("invitation.revoke", &ann, "invitation", id_of(&inv2)));

    let (status, token) = app
        .post(
            &format!("/api/workspaces/{ws}/tokens"),
            Some(&ann.token),
            json!({ "name": "bot", "permissions": ["invite_users", "view_sessions", "send_messages", "view_knowledge"] }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{token}");
    let token_id = id_of(&token);
    expected.push(by_user("api_token.create", &ann, "api_token", token_id));
    // What a token does is recorded as the token's doing.
    let inv3 = invite(&app, token["token"].as_str().unwrap(), ws, "erin@example.com", "guest").await;
    expected.push((
        "invitation.create".to_owned(),
        None,
        Some(token_id),
        "invitation".to_owned(),
        id_of(&inv3).to_string(),
        Some("127.0.0.1".to_owned()),
    ));
    let (status, _) = app
        .call(
            Method::DELETE,
            &format!("/api/workspaces/{ws}/tokens/{token_id}"),
            Some(&ann.token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    expected.push(by_user("api_token.revoke", &ann, "api_token", token_id));

    let inv4 = invite(&app, &ann.token, ws, &dan.email, "guest").await;
    expected.push(by_user("invitation.create", &ann, "invitation", id_of(&inv4)));
    accept(&app, &dan, &inv4).await;
    expected.push(by_user("invitation.accept", &dan, "invitation", id_of(&inv4)));
    let (status, _) = app
        .call(
            Method::DELETE,
            &format!("/api/workspaces/{ws}/members/{}", dan.id),
            Some(&ann.token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    expected.push(by_user("member.remove", &ann, "user", dan.id));

    let (status, _) = app
        .call(
            Method::POST,
            &format!("/api/workspaces/{ws}/leave"),
            Some(&bob.token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    expected.push(by_user("member.leave", &bob, "user", bob.id));

    assert_eq!(rows(&app, ws).await, expected);

    // The API shows the same trail, newest first, with names and details.
    let (status, page) = app
        .get(&format!("/api/workspaces/{ws}/audit?limit=200"), &ann.token)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let entries = page["entries"].as_array().unwrap();
    let actions: Vec<&str> = entries.iter().map(|e| e["action"].as_str().unwrap()).collect();
    let mut stored: Vec<&str> = expected.iter().map(|r| r.0.as_str()).collect();
    stored.reverse();
    assert_eq!(actions, stored);
    assert_eq!(page["next_before"], Value::Null);
    let role_change = entries.iter().find(|e| e["action"] == "member.role_change").unwrap();
    assert_eq!(role_change["actor_display_name"], "ann");
    assert_eq!(role_change["details"], json!({ "from": "editor", "to": "viewer" }));
    assert_eq!(role_change["ip"], "127.0.0.1");
    let rename = entries.iter().find(|e| e["action"] == "workspace.rename").unwrap();
    assert_eq!(rename["details"], json!({ "from": "Team", "to": "Team 2" }));
    let leave = entries.iter().find(|e| e["action"] == "member.leave").unwrap();
    assert_eq!(leave["actor_display_name"], "bob");
}

#[actix_web::test]
async fn the_user_agent_is_recorded() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let res = app
        .http
        .post(format!("{}/api/workspaces", app.base))
        .bearer_auth(&ann.token)
        .header("User-Agent", "audit-test/1.0")
        .json(&json!({ "name": "Team" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let ws: Uuid = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let (_, page) = app.get(&format!("/api/workspaces/{ws}/audit"), &ann.token).await;
    assert_eq!(page["entries"][0]["action"], "workspace.create");
    assert_eq!(page["entries"][0]["user_agent"], "audit-test/1.0");
}

#[actix_web::test]
async fn the_log_pages_newest_first() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let ws = app.create_workspace(&ann, "Name 0").await;
    for i in 1..=6 {
        let (status, _) = app
            .call(
                Method::PATCH,
                &format!("/api/workspaces/{ws}"),
                Some(&ann.token),
                Some(json!({ "name": format!("Name {i}") })),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    // Another workspace's history never shows up here.
    app.create_workspace(&ann, "Elsewhere").await;

    let (_, all) = app.get(&format!("/api/workspaces/{ws}/audit"), &ann.token).await;
    let all: Vec<Value> = all["entries"].as_array().unwrap().clone();
    assert_eq!(all.len(), 7);
    assert_eq!(all[0]["details"]["to"], "Name 6");
    assert_eq!(all[6]["action"], "workspace.create");
    assert!(all.windows(2).all(|w| w[0]["id"].as_i64() > w[1]["id"].as_i64()));

    let mut paged = Vec::new();
    let mut sizes = Vec::new();
    let mut before: Option<i64> = None;
    loop {
        let path = match before {
            Some(b) => format!("/api/workspaces/{ws}/audit?limit=3&before={b}"),
            None => format!("/api/workspaces/{ws}/audit?limit=3"),
        };
        let (status, page) = app.get(&path, &ann.token).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let entries = page["entries"].as_array().unwrap();
        sizes.push(entries.len());
        paged.extend(entries.iter().cloned());
        match page["next_before"].as_i64() {
            Some(next) => {
                assert_eq!(Some(next), entries.last().unwrap()["id"].as_i64());
                before = Some(next);
            }
            None => break,
        }
        assert!(sizes.len() < 10, "paging does not end");
    }
    assert_eq!(sizes, [3, 3, 1]);
    assert_eq!(paged, all);

    // A page that ends exactly at the end says so.
    let (_, page) = app
        .get(&format!("/api/workspaces/{ws}/audit?limit=7"), &ann.token)
        .await;
    assert_eq!(page["entries"].as_array().unwrap().len(), 7);
    assert_eq!(page["next_before"], Value::Null);

    for bad in ["limit=0", "limit=201", "limit=-1"] {
        assert_error(
            &app.get(&format!("/api/workspaces/{ws}/audit?{bad}"), &ann.token).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        );
    }
    assert_error(
        &app.get(&format!("/api/workspaces/{ws}/audit?before=yesterday"), &ann.token)
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
    );
}

#[actix_web::test]
async fn only_admins_and_owners_read_the_log() {
    let app = spawn_app().await;
    let owner = app.register("olga").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let admin = app.add_member(&owner, ws, "adam", "admin").await;
    let editor = app.add_member(&owner, ws, "ed", "editor").await;
    let viewer = app.add_member(&owner, ws, "vic", "viewer").await;
    let guest = app.add_member(&owner, ws, "gus", "guest").await;
    let outsider = app.register("otto").await;
    let path = format!("/api/workspaces/{ws}/audit");

    for who in [&owner, &admin] {
        let (status, page) = app.get(&path, &who.token).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(!page["entries"].as_array().unwrap().is_empty());
    }
    for who in [&editor, &viewer, &guest] {
        assert_error(
            &app.get(&path, &who.token).await,
            StatusCode::FORBIDDEN,
            "permission_denied",
        );
    }
    assert_error(
        &app.get(&path, &outsider.token).await,
        StatusCode::NOT_FOUND,
        "workspace_not_found",
    );
    assert_error(
        &app.call(Method::GET, &path, None, None).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    );
}

#[actix_web::test]
async fn a_failed_mutation_writes_no_row() {
    let app = spawn_app().await;
    let owner = app.register("olga").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let admin = app.add_member(&owner, ws, "adam", "admin").await;
    let late = app.register("late").await;
    let expired = invite(&app, &owner.token, ws, &late.email, "viewer").await;
    app.db
        .client()
        .await
        .execute(
            "UPDATE invitations SET expires_at = now() - interval '1 hour' WHERE id = $1",
            &[&id_of(&expired)],
        )
        .await
        .unwrap();
    let before = app.count("audit_log").await;

    let failures = [
        (
            app.call(
                Method::POST,
                &format!("/api/workspaces/{ws}/leave"),
                Some(&owner.token),
                None,
            )
            .await,
            StatusCode::CONFLICT,
            "last_owner",
        ),
        (
            app.call(
                Method::PATCH,
                &format!("/api/workspaces/{ws}/members/{}", owner.id),
                Some(&owner.token),
                Some(json!({ "role": "admin" })),
            )
            .await,
            StatusCode::CONFLICT,
            "last_owner",
        ),
        (
            app.post(
                &format!("/api/workspaces/{ws}/invitations"),
                Some(&owner.token),
                json!({ "email": admin.email, "role": "viewer" }),
            )
            .await,
            StatusCode::CONFLICT,
            "already_member",
        ),
        (
            app.call(
                Method::DELETE,
                &format!("/api/workspaces/{ws}/members/{}", owner.id),
                Some(&admin.token),
                None,
            )
            .await,
            StatusCode::FORBIDDEN,
            "permission_denied",
        ),
        (
            app.call(
                Method::PUT,
                &format!("/api/workspaces/{ws}/members/{}/permissions", admin.id),
                Some(&owner.token),
                Some(json!({ "granted": ["no_such_thing"] })),
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            app.post(
                "/api/invitations/accept",
                Some(&late.token),
                json!({ "token": expired["token"] }),
            )
            .await,
            StatusCode::GONE,
            "invitation_expired",
        ),
        (
            app.call(
                Method::DELETE,
                &format!("/api/workspaces/{ws}/tokens/{}", Uuid::new_v4()),
                Some(&owner.token),
                None,
            )
            .await,
            StatusCode::NOT_FOUND,
            "token_not_found",
        ),
        (
            app.call(
                Method::PATCH,
                &format!("/api/workspaces/{ws}"),
                Some(&owner.token),
                Some(json!({ "name": "n".repeat(101) })),
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
    ];
    for (res, status, code) in &failures {
        assert_error(res, *status, code);
    }
    assert_eq!(app.count("audit_log").await, before);
}
