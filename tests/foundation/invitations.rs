//! Invitations: invite by email with a role (and extra permissions), list pending ones,
//! revoke, accept by token; every way a token can be wrong; tokens at rest.

use crate::common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

async fn invite(app: &TestApp, inviter: &User, ws: Uuid, body: Value) -> (StatusCode, Value) {
    app.post(&format!("/api/workspaces/{ws}/invitations"), Some(&inviter.token), body)
        .await
}

/// Invites `email` as `role`; returns the creation response.
async fn invited(app: &TestApp, inviter: &User, ws: Uuid, email: &str, role: &str) -> Value {
    let (status, body) = invite(app, inviter, ws, json!({ "email": email, "role": role })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

async fn accept(app: &TestApp, user: &User, token: &str) -> (StatusCode, Value) {
    app.post("/api/invitations/accept", Some(&user.token), json!({ "token": token }))
        .await
}

async fn members(app: &TestApp, ws: Uuid) -> i64 {
    let db = app.db.client().await;
    db.query_one("SELECT count(*) FROM workspace_members WHERE workspace_id = $1", &[&ws])
        .await
        .unwrap()
        .get(0)
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[actix_web::test]
async fn invite_list_and_accept() {
    let app = spawn_app().await;
    let owner = app.register("olga").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let ivy = app.register("ivy").await;

    // The address is normalised, so the invitee's account matches however it was typed.
    let created = invited(&app, &owner, ws, &format!("  {}  ", ivy.email.to_uppercase()), "editor").await;
    let token = created["token"].as_str().unwrap();
    assert!(token.starts_with("bci_"), "{token}");
    assert!(token.len() > 40, "{token}");
    assert_eq!(created["email"], ivy.email);
    assert_eq!(created["role"], "editor");
    assert_eq!(created["workspace_id"], ws.to_string());
    assert_eq!(created["invited_by"], owner.id.to_string());
    assert_eq!(created["email_queued"], false);
    // The token travels in the fragment, which browsers never send to a server.
    let link = created["link"].as_str().unwrap();
    let (base, fragment) = link.split_once('#').expect("link has a fragment");
    assert_eq!(base, format!("{}/invite", app.config.public_url.trim_end_matches('/')));
    assert_eq!(fragment, format!("token={token}"));
    let expires: chrono::DateTime<chrono::Utc> = created["expires_at"].as_str().unwrap().parse().unwrap();
    let days = (expires - chrono::Utc::now()).num_hours() as f64 / 24.0;
    assert!((6.9..=7.0).contains(&days), "expires in {days} days");

    let (status, pending) = app
        .get(&format!("/api/workspaces/{ws}/invitations"), &owner.token)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(pending.as_array().unwrap().len(), 1);
    assert_eq!(pending[0]["id"], created["id"]);
    assert_eq!(pending[0]["email"], ivy.email);
    assert_eq!(pending[0]["role"], "editor");
    assert!(!pending.to_string().contains(token), "{pending}");
    assert!(pending[0].get("token").is_none() && pending[0].get("link").is_none());

    let (status, member) = accept(&app, &ivy, token).await;
    assert_eq!(status, StatusCode::OK, "{member}");
    assert_eq!(member["workspace_id"], ws.to_string());
    assert_eq!(member["user_id"], ivy.id.to_string());
    assert_eq!(member["email"], ivy.email);
    assert_eq!(member["role"], "editor");
    assert_eq!(member["granted"], json!([]));
    let (status, seen) = app.get(&format!("/api/workspaces/{ws}"), &ivy.token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seen["my_role"], "editor");

    // Accepted invitations are no longer pending.
    let (_, pending) = app
        .get(&format!("/api/workspaces/{ws}/invitations"), &owner.token)
        .await;
    assert_eq!(pending, json!([]));
}

#[actix_web::test]
async fn extra_permissions_come_with_the_membership() {
    let app = spawn_app().await;
    let owner = app.register("olga").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let vic = app.register("vic").await;

    let (status, created) = invite(
        &app,
        &owner,
        ws,
        json!({ "email": vic.email, "role": "viewer", "permissions": ["view_analytics", "invite_users"] }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    // Stored and shown in catalogue order.
    assert_eq!(strings(&created["permissions"]), ["invite_users", "view_analytics"]);

    let (status, member) = accept(&app, &vic, created["token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{member}");
    assert_eq!(member["role"], "viewer");
    assert_eq!(strings(&member["granted"]), ["invite_users", "view_analytics"]);
    let perms = strings(&member["permissions"]);
    assert!(perms.contains(&"invite_users".to_owned()) && perms.contains(&"view_analytics".to_owned()));
    // And they work: the new viewer can invite someone.
    invited(&app, &vic, ws, "friend@example.com", "guest").await;
}

#[actix_web::test]
async fn an_expired_invitation_is_refused_and_nothing_is_written() {
    let app = spawn_app().await;
    let owner = app.register("olga").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let late = app.register("late").await;
    let created = invited(&app, &owner, ws, &late.email, "editor").await;
    let id: Uuid = created["id"].as_str().unwrap().parse().unwrap();
    let db = app.db.client().await;
    db.execute(
        "UPDATE invitations SET expires_at = now() - interval '1 minute' WHERE id = $1",
        &[&id],
    )
    .await
    .unwrap();
    let audit_before = app.count("audit_log").await;

    let (_, pending) = app
        .get(&format!("/api/workspaces/{ws}/invitations"), &owner.token)
        .await;
    assert_eq!(pending, json!([]));
    assert_error(
        &accept(&app, &late, created["token"].as_str().unwrap()).await,
        StatusCode::GONE,
        "invitation_expired",
    );
    assert_eq!(members(&app, ws).await, 1);
    assert_eq!(app.count("audit_log").await, audit_before);
    let accepted: Option<chrono::DateTime<chrono::Utc>> = db
        .query_one("SELECT accepted_at FROM invitations WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(accepted, None);
    assert_error(
        &app.get(&format!("/api/workspaces/{ws}"), &late.token).await,
        StatusCode::NOT_FOUND,
        "workspace_not_found",
    );
}

#[actix_web::test]
async fn an_invitation_works_once() {
    let app = spawn_app().await;
    let owner = app.register("olga").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let ivy = app.register("ivy").await;
    let created = invited(&app, &owner, ws, &ivy.email, "viewer").await;
    let token = created["token"].as_str().unwrap();
    assert_eq!(accept(&app, &ivy, token).await.0, StatusCode::OK);

    // Even after leaving, the same link does not bring them back.
    let (status, _) = app
        .call(
            Method::POST,
            &format!("/api/workspaces/{ws}/leave"),
            Some(&ivy.token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let audit_before = app.count("audit_log").await;
    assert_error(&accept(&app, &ivy, token).await, StatusCode::GONE, "invitation_used");
    assert_eq!(members(&app, ws).await, 1);
    assert_eq!(app.count("audit_log").await, audit_before);

    // An accepted invitation cannot be revoked either.
    let res = app
        .call(
            Method::DELETE,
            &format!("/api/workspaces/{ws}/invitations/{}", created["id"].as_str().unwrap()),
            Some(&owner.token),
            None,
        )
        .await;
    assert_error(&res, StatusCode::GONE, "invitation_used");
}

#[actix_web::test]
async fn a_revoked_invitation_is_refused() {
    let app = spawn_app().await;
    let owner = app.register("olga").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let viewer = app.add_member(&owner, ws, "vic", "viewer").await;
    let ivy = app.register("ivy").await;
    let created = invited(&app, &owner, ws, &ivy.email, "editor").await;
    let revoke_path = format!("/api/workspaces/{ws}/invitations/{}", created["id"].as_str().unwrap());

    // Revoking needs invite_users.
    assert_error(
        &app.call(Method::DELETE, &revoke_path, Some(&viewer.token), None).await,
        StatusCode::FORBIDDEN,
        "permission_denied",
    );
    let (status, _) = app.call(Method::DELETE, &revoke_path, Some(&owner.token), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, pending) = app
        .get(&format!("/api/workspaces/{ws}/invitations"), &owner.token)
        .await;
    assert_eq!(pending, json!([]));

    let before = members(&app, ws).await;
    assert_error(
        &accept(&app, &ivy, created["token"].as_str().unwrap()).await,
        StatusCode::GONE,
        "invitation_revoked",
    );
    assert_eq!(members(&app, ws).await, before);
    assert_error(
        &app.call(Method::DELETE, &revoke_path, Some(&owner.token), None).await,
        StatusCode::GONE,
        "invitation_revoked",
    );
    assert_error(
        &app.call(
            Method::DELETE,
            &format!("/api/workspaces/{ws}/invitations/{}", Uuid::new_v4()),
            Some(&owner.token),
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
        "invitation_not_found",
    );
}

#[actix_web::test]
async fn wrong_or_forged_tokens_are_not_found() {
    let app = spawn_app().await;
    let owner = app.register("olga").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let ivy = app.register("ivy").await;
    let created = invited(&app, &owner, ws, &ivy.email, "editor").await;
    let token = created["token"].as_str().unwrap();
    let audit_before = app.count("audit_log").await;

    // One character off, the right shape with random bytes, another kind of secret, junk.
    let mut tampered = token.to_owned();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let (forged, _) = bedda_collab::auth::secrets::generate(bedda_collab::auth::secrets::SecretKind::Invitation);
    let wrong = [
        tampered,
        forged,
        ivy.token.clone(),
        "bci_".to_owned(),
        "garbage".to_owned(),
        format!("bci_{}", "a".repeat(500)),
    ];
    for bad in &wrong {
        assert_error(
            &accept(&app, &ivy, bad).await,
            StatusCode::NOT_FOUND,
            "invitation_not_found",
        );
    }
    assert_eq!(members(&app, ws).await, 1);
    assert_eq!(app.count("audit_log").await, audit_before);
    // The real one still works.
    assert_eq!(accept(&app, &ivy, token).await.0, StatusCode::OK);
}

#[actix_web::test]
async fn only_the_invited_address_can_accept() {
    let app = spawn_app().await;
    let owner = app.register("olga").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let ivy = app.register("ivy").await;
    let mallory = app.register("mallory").await;
    let created = invited(&app, &owner, ws, &ivy.email, "admin").await;
    let token = created["token"].as_str().unwrap();

    assert_error(
        &accept(&app, &mallory, token).await,
        StatusCode::FORBIDDEN,
        "invitation_email_mismatch",
    );
    assert_error(
        &app.get(&format!("/api/workspaces/{ws}"), &mallory.token).await,
        StatusCode::NOT_FOUND,
        "workspace_not_found",
    );
    // The attempt did not use the invitation up.
    let (status, member) = accept(&app, &ivy, token).await;
    assert_eq!(status, StatusCode::OK, "{member}");
    assert_eq!(member["role"], "admin");
}

#[actix_web::test]
async fn inviting_a_member_is_a_conflict() {
    let app = spawn_app().await;
    let owner = app.register("olga").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let editor = app.add_member(&owner, ws, "ed", "editor").await;
    let before = app.count("invitations").await;
    let audit_before = app.count("audit_log").await;

    for email in [editor.email.clone(), editor.email.to_uppercase(), owner.email.clone()] {
        let res = invite(&app, &owner, ws, json!({ "email": email, "role": "viewer" })).await;
        assert_error(&res, StatusCode::CONFLICT, "already_member");
    }
    assert_eq!(app.count("invitations").await, before);
    assert_eq!(app.count("audit_log").await, audit_before);
}

#[actix_web::test]
async fn who_may_invite_whom() {
    let app = spawn_app().await;
    let owner = app.register("olga").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let admin = app.add_member(&owner, ws, "adam", "admin").await;
    let editor = app.add_member(&owner, ws, "ed", "editor").await;
    let before = app.count("invitations").await;

    // Editors cannot invite at all.
    assert_error(
        &invite(&app, &editor, ws, json!({ "email": "a@example.com", "role": "guest" })).await,
        StatusCode::FORBIDDEN,
        "permission_denied",
    );
    // Admins invite, but not owners, and not with extra permissions unless they hold
    // manage_permissions.
    assert_error(
        &invite(&app, &admin, ws, json!({ "email": "b@example.com", "role": "owner" })).await,
        StatusCode::FORBIDDEN,
        "permission_denied",
    );
    assert_error(
        &invite(
            &app,
            &admin,
            ws,
            json!({ "email": "c@example.com", "role": "viewer", "permissions": ["view_analytics"] }),
        )
        .await,
        StatusCode::FORBIDDEN,
        "permission_denied",
    );
    assert_eq!(app.count("invitations").await, before);
    invited(&app, &admin, ws, "d@example.com", "viewer").await;

    let (status, _) = app
        .call(
            Method::PUT,
            &format!("/api/workspaces/{ws}/members/{}/permissions", admin.id),
            Some(&owner.token),
            Some(json!({ "granted": ["manage_permissions"] })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = invite(
        &app,
        &admin,
        ws,
        json!({ "email": "e@example.com", "role": "viewer", "permissions": ["view_analytics"] }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // Still only what the admin holds themselves, and only names that exist.
    assert_error(
        &invite(
            &app,
            &admin,
            ws,
            json!({ "email": "f@example.com", "role": "viewer", "permissions": ["manage_workspace"] }),
        )
        .await,
        StatusCode::FORBIDDEN,
        "permission_denied",
    );
    assert_error(
        &invite(
            &app,
            &owner,
            ws,
            json!({ "email": "g@example.com", "role": "viewer", "permissions": ["teleport"] }),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    assert_error(
        &invite(&app, &owner, ws, json!({ "email": "not-an-address", "role": "viewer" })).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    assert_eq!(app.count("invitations").await, before + 2);

    // Owners invite owners.
    let sue = app.register("sue").await;
    let created = invited(&app, &owner, ws, &sue.email, "owner").await;
    let (status, member) = accept(&app, &sue, created["token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{member}");
    assert_eq!(member["role"], "owner");
}

#[actix_web::test]
async fn only_the_hash_of_an_invitation_token_is_stored() {
    let app = spawn_app().await;
    let owner = app.register("olga").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let ivy = app.register("ivy").await;
    let created = invited(&app, &owner, ws, &ivy.email, "editor").await;
    let token = created["token"].as_str().unwrap().to_owned();
    let id: Uuid = created["id"].as_str().unwrap().parse().unwrap();
    let secret = token.trim_start_matches("bci_");

    let db = app.db.client().await;
    let dump = || async {
        let row = db
            .query_one(
                "SELECT (SELECT string_agg(t::text, '|') FROM invitations t) || '|' || \
                        (SELECT string_agg(t::text, '|') FROM audit_log t)",
                &[],
            )
            .await
            .unwrap();
        row.get::<_, String>(0)
    };
    let before_accept = dump().await;
    assert!(before_accept.contains(&ivy.email), "the dump covers the invitation");
    assert!(!before_accept.contains(secret));
    let stored: Vec<u8> = db
        .query_one("SELECT token_hash FROM invitations WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, bedda_collab::auth::secrets::hash(&token));

    assert_eq!(accept(&app, &ivy, &token).await.0, StatusCode::OK);
    let after_accept = dump().await;
    assert!(after_accept.contains("invitation.accept"));
    assert!(!after_accept.contains(secret));
}

#[actix_web::test]
async fn inviting_cannot_hand_out_a_role_beyond_the_inviters_reach() {
    let app = spawn_app().await;
    let owner = app.register("olga").await;
    let ws = app.create_workspace(&owner, "Team").await;
    // A guest allowed to invite, but not to manage users.
    let guest = app.add_member(&owner, ws, "gus", "guest").await;
    let (status, _) = app
        .call(
            Method::PUT,
            &format!("/api/workspaces/{ws}/members/{}/permissions", guest.id),
            Some(&owner.token),
            Some(json!({ "granted": ["invite_users"] })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let before = app.count("invitations").await;

    // Inviting a second account of their own as admin would be a way up; it is refused.
    for role in ["admin", "editor", "viewer"] {
        let res = invite(&app, &guest, ws, json!({ "email": "alt@example.com", "role": role })).await;
        assert_eq!(res.0, StatusCode::FORBIDDEN, "{role}: {}", res.1);
        assert_error(&res, StatusCode::FORBIDDEN, "permission_denied");
    }
    assert_eq!(app.count("invitations").await, before);
    // Their own level is fine.
    invited(&app, &guest, ws, "friend@example.com", "guest").await;

    // Whoever manages users may give any role but owner, as they could by changing roles.
    let admin = app.add_member(&owner, ws, "adam", "admin").await;
    for role in ["admin", "editor", "viewer", "guest"] {
        invited(&app, &admin, ws, &format!("{role}@example.com"), role).await;
    }
}
