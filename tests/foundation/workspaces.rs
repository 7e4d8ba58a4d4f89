//! Workspaces and members: create, list, get, rename, delete; roles, custom permissions,
//! removal and leaving; what outsiders and malformed input get.

use crate::common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

/// A JSON array of strings as a vector.
fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// The member's stored role, custom grants and custom revokes.
async fn member_row(app: &TestApp, workspace: Uuid, user: &User) -> Option<(String, Vec<String>, Vec<String>)> {
    let db = app.db.client().await;
    db.query_opt(
        "SELECT role, granted, revoked FROM workspace_members WHERE workspace_id = $1 AND user_id = $2",
        &[&workspace, &user.id],
    )
    .await
    .unwrap()
    .map(|row| (row.get(0), row.get(1), row.get(2)))
}

async fn role_of(app: &TestApp, workspace: Uuid, user: &User) -> Option<String> {
    member_row(app, workspace, user).await.map(|m| m.0)
}

async fn workspace_name(app: &TestApp, workspace: Uuid) -> String {
    let db = app.db.client().await;
    db.query_one("SELECT name FROM workspaces WHERE id = $1", &[&workspace])
        .await
        .unwrap()
        .get(0)
}

async fn set_role(app: &TestApp, actor: &User, workspace: Uuid, target: &User, role: &str) -> (StatusCode, Value) {
    app.call(
        Method::PATCH,
        &format!("/api/workspaces/{workspace}/members/{}", target.id),
        Some(&actor.token),
        Some(json!({ "role": role })),
    )
    .await
}

async fn set_permissions(
    app: &TestApp,
    actor: &User,
    workspace: Uuid,
    target: &User,
    body: Value,
) -> (StatusCode, Value) {
    app.call(
        Method::PUT,
        &format!("/api/workspaces/{workspace}/members/{}/permissions", target.id),
        Some(&actor.token),
        Some(body),
    )
    .await
}

async fn my_permissions(app: &TestApp, user: &User, workspace: Uuid) -> Vec<String> {
    let (status, body) = app.get(&format!("/api/workspaces/{workspace}"), &user.token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    strings(&body["my_permissions"])
}

async fn invite(app: &TestApp, ws: Uuid, who: &User, email: &str) -> (StatusCode, Value) {
    app.post(
        &format!("/api/workspaces/{ws}/invitations"),
        Some(&who.token),
        json!({ "email": email, "role": "guest" }),
    )
    .await
}

async fn remove(app: &TestApp, ws: Uuid, actor: &User, target: &User) -> (StatusCode, Value) {
    app.call(
        Method::DELETE,
        &format!("/api/workspaces/{ws}/members/{}", target.id),
        Some(&actor.token),
        None,
    )
    .await
}

async fn leave(app: &TestApp, ws: Uuid, who: &User) -> (StatusCode, Value) {
    app.call(
        Method::POST,
        &format!("/api/workspaces/{ws}/leave"),
        Some(&who.token),
        None,
    )
    .await
}

#[actix_web::test]
async fn create_list_get_and_rename() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;

    let (status, created) = app
        .post("/api/workspaces", Some(&ann.token), json!({ "name": "  Research  " }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["name"], "Research");
    assert_eq!(created["my_role"], "owner");
    assert_eq!(created["created_by"], ann.id.to_string());
    // The owner holds the whole catalogue, deleting the workspace included.
    let (_, catalogue) = app.call(Method::GET, "/api/permissions", None, None).await;
    let all: Vec<String> = catalogue["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(all.contains(&"delete_workspace".to_owned()));
    assert_eq!(strings(&created["my_permissions"]), all);
    let research: Uuid = created["id"].as_str().unwrap().parse().unwrap();
    let ops = app.create_workspace(&ann, "Ops").await;
    app.create_workspace(&bob, "Bob's own").await;

    // "Mine" lists exactly the caller's workspaces, oldest first.
    let (status, mine) = app.get("/api/workspaces", &ann.token).await;
    assert_eq!(status, StatusCode::OK);
    let listed: Vec<(&str, &str)> = mine
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (w["id"].as_str().unwrap(), w["name"].as_str().unwrap()))
        .collect();
    assert_eq!(
        listed,
        [
            (research.to_string().as_str(), "Research"),
            (ops.to_string().as_str(), "Ops")
        ]
    );
    assert!(mine.as_array().unwrap().iter().all(|w| w["my_role"] == "owner"));

    // A member sees their own role and what it lets them do.
    let eve = app.add_member(&ann, research, "eve", "editor").await;
    let (status, seen) = app.get(&format!("/api/workspaces/{research}"), &eve.token).await;
    assert_eq!(status, StatusCode::OK, "{seen}");
    assert_eq!(seen["name"], "Research");
    assert_eq!(seen["my_role"], "editor");
    let perms = strings(&seen["my_permissions"]);
    for expected in ["create_sessions", "send_messages", "edit_artifacts", "view_artifacts"] {
        assert!(
            perms.contains(&expected.to_owned()),
            "editor lacks {expected}: {perms:?}"
        );
    }
    for denied in ["manage_workspace", "invite_users", "delete_workspace", "view_audit_log"] {
        assert!(!perms.contains(&denied.to_owned()), "editor has {denied}: {perms:?}");
    }
    let (_, eves) = app.get("/api/workspaces", &eve.token).await;
    assert_eq!(eves.as_array().unwrap().len(), 1);
    assert_eq!(eves[0]["my_role"], "editor");

    // Rename: owners may, editors may not.
    let (status, renamed) = app
        .call(
            Method::PATCH,
            &format!("/api/workspaces/{research}"),
            Some(&ann.token),
            Some(json!({ "name": " Research & Development " })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{renamed}");
    assert_eq!(renamed["name"], "Research & Development");
    let (_, seen) = app.get(&format!("/api/workspaces/{research}"), &eve.token).await;
    assert_eq!(seen["name"], "Research & Development");
    let denied = app
        .call(
            Method::PATCH,
            &format!("/api/workspaces/{research}"),
            Some(&eve.token),
            Some(json!({ "name": "Mine now" })),
        )
        .await;
    assert_error(&denied, StatusCode::FORBIDDEN, "permission_denied");
    assert_eq!(workspace_name(&app, research).await, "Research & Development");
}

#[actix_web::test]
async fn only_owners_delete_and_deleting_removes_members_but_keeps_the_audit_trail() {
    let app = spawn_app().await;
    let owner = app.register("olga").await;
    let ws = app.create_workspace(&owner, "Doomed").await;
    let admin = app.add_member(&owner, ws, "adam", "admin").await;
    let editor = app.add_member(&owner, ws, "ed", "editor").await;

    for who in [&admin, &editor] {
        let res = app
            .call(Method::DELETE, &format!("/api/workspaces/{ws}"), Some(&who.token), None)
            .await;
        assert_error(&res, StatusCode::FORBIDDEN, "permission_denied");
    }
    assert_eq!(
        app.get(&format!("/api/workspaces/{ws}"), &admin.token).await.0,
        StatusCode::OK
    );

    let (status, _) = app
        .call(
            Method::DELETE,
            &format!("/api/workspaces/{ws}"),
            Some(&owner.token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for who in [&owner, &admin, &editor] {
        assert_error(
            &app.get(&format!("/api/workspaces/{ws}"), &who.token).await,
            StatusCode::NOT_FOUND,
            "workspace_not_found",
        );
        let (_, mine) = app.get("/api/workspaces", &who.token).await;
        assert_eq!(mine, json!([]));
    }

    let db = app.db.client().await;
    let members: i64 = db
        .query_one("SELECT count(*) FROM workspace_members WHERE workspace_id = $1", &[&ws])
        .await
        .unwrap()
        .get(0);
    assert_eq!(members, 0);
    let invitations: i64 = db
        .query_one("SELECT count(*) FROM invitations WHERE workspace_id = $1", &[&ws])
        .await
        .unwrap()
        .get(0);
    assert_eq!(invitations, 0);
    // The trail outlives the workspace: its creation and its deletion are both there.
    let rows = db
        .query(
            "SELECT action, actor_user_id FROM audit_log WHERE workspace_id = $1 \
             AND action IN ('workspace.create', 'workspace.delete') ORDER BY id",
            &[&ws],
        )
        .await
        .unwrap();
    let rows: Vec<(String, Option<Uuid>)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        rows,
        [
            ("workspace.create".to_owned(), Some(owner.id)),
            ("workspace.delete".to_owned(), Some(owner.id))
        ]
    );
}

#[actix_web::test]
async fn members_are_listed_with_their_roles() {
    let app = spawn_app().await;
    let owner = app.register("olga").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let admin = app.add_member(&owner, ws, "adam", "admin").await;
    let viewer = app.add_member(&owner, ws, "vic", "viewer").await;
    let outsider = app.register("otto").await;

    let (status, members) = app.get(&format!("/api/workspaces/{ws}/members"), &viewer.token).await;
    assert_eq!(status, StatusCode::OK, "{members}");
    let listed: Vec<(String, String, String)> = members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["user_id"].as_str().unwrap().to_owned(),
                m["email"].as_str().unwrap().to_owned(),
                m["role"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String, String)> = [(&owner, "owner"), (&admin, "admin"), (&viewer, "viewer")]
        .into_iter()
        .map(|(u, r)| (u.id.to_string(), u.email.clone(), r.to_owned()))
        .collect();
    assert_eq!(listed, expected);
    assert!(strings(&members[1]["permissions"]).contains(&"manage_users".to_owned()));
    assert!(!strings(&members[2]["permissions"]).contains(&"manage_users".to_owned()));

    assert_error(
        &app.get(&format!("/api/workspaces/{ws}/members"), &outsider.token).await,
        StatusCode::NOT_FOUND,
        "workspace_not_found",
    );
}

#[actix_web::test]
async fn role_changes_respect_owners_and_keep_one_owner() {
    let app = spawn_app().await;
    let owner = app.register("olga").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let admin = app.add_member(&owner, ws, "adam", "admin").await;
    let editor = app.add_member(&owner, ws, "ed", "editor").await;

    // An admin manages ordinary members…
    let (status, changed) = set_role(&app, &admin, ws, &editor, "viewer").await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["role"], "viewer");
    assert_eq!(changed["user_id"], editor.id.to_string());
    assert!(!strings(&changed["permissions"]).contains(&"edit_artifacts".to_owned()));
    let (_, seen) = app.get(&format!("/api/workspaces/{ws}"), &editor.token).await;
    assert_eq!(seen["my_role"], "viewer");

    // …but can neither touch an owner nor make anyone an owner (themselves included).
    assert_error(
        &set_role(&app, &admin, ws, &owner, "viewer").await,
        StatusCode::FORBIDDEN,
        "permission_denied",
    );
    assert_error(
        &set_role(&app, &admin, ws, &editor, "owner").await,
        StatusCode::FORBIDDEN,
        "permission_denied",
    );
    assert_error(
        &set_role(&app, &admin, ws, &admin, "owner").await,
        StatusCode::FORBIDDEN,
        "permission_denied",
    );
    assert_eq!(role_of(&app, ws, &owner).await.as_deref(), Some("owner"));
    assert_eq!(role_of(&app, ws, &editor).await.as_deref(), Some("viewer"));
    assert_eq!(role_of(&app, ws, &admin).await.as_deref(), Some("admin"));

    // A member without manage_users cannot change roles at all.
    assert_error(
        &set_role(&app, &editor, ws, &admin, "guest").await,
        StatusCode::FORBIDDEN,
        "permission_denied",
    );
    assert_error(
        &set_role(&app, &owner, ws, &app.register("ghost").await, "viewer").await,
        StatusCode::NOT_FOUND,
        "member_not_found",
    );

    // The last owner cannot step down.
    assert_error(
        &set_role(&app, &owner, ws, &owner, "admin").await,
        StatusCode::CONFLICT,
        "last_owner",
    );
    assert_eq!(role_of(&app, ws, &owner).await.as_deref(), Some("owner"));

    // With a second owner, they can; and the new owner is then the last one.
    let (status, _) = set_role(&app, &owner, ws, &admin, "owner").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = set_role(&app, &owner, ws, &owner, "admin").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(role_of(&app, ws, &owner).await.as_deref(), Some("admin"));
    assert_error(
        &set_role(&app, &owner, ws, &admin, "admin").await,
        StatusCode::FORBIDDEN,
        "permission_denied",
    );
    assert_error(
        &set_role(&app, &admin, ws, &admin, "editor").await,
        StatusCode::CONFLICT,
        "last_owner",
    );
    assert_eq!(role_of(&app, ws, &admin).await.as_deref(), Some("owner"));
}

#[actix_web::test]
async fn custom_permissions_need_manage_permissions_and_only_grant_what_one_holds() {
    let app = spawn_app().await;
    let owner = app.register("olga").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let admin = app.add_member(&owner, ws, "adam", "admin").await;
    let editor = app.add_member(&owner, ws, "ed", "editor").await;

    // Admins do not hold manage_permissions by role.
    assert_error(
        &set_permissions(&app, &admin, ws, &editor, json!({ "granted": ["view_analytics"] })).await,
        StatusCode::FORBIDDEN,
        "permission_denied",
    );
    assert_eq!(member_row(&app, ws, &editor).await.unwrap().1, Vec::<String>::new());

    let (status, view) = set_permissions(&app, &owner, ws, &admin, json!({ "granted": ["manage_permissions"] })).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(strings(&view["granted"]), ["manage_permissions"]);
    assert!(strings(&view["permissions"]).contains(&"manage_permissions".to_owned()));

    // Now the admin may grant what they hold…
    let (status, view) = set_permissions(&app, &admin, ws, &editor, json!({ "granted": ["view_analytics"] })).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert!(
        my_permissions(&app, &editor, ws)
            .await
            .contains(&"view_analytics".to_owned())
    );
    // …but not what they do not hold, and never on an owner.
    assert_error(
        &set_permissions(&app, &admin, ws, &editor, json!({ "granted": ["manage_workspace"] })).await,
        StatusCode::FORBIDDEN,
        "permission_denied",
    );
    assert_error(
        &set_permissions(&app, &admin, ws, &owner, json!({ "revoked": ["view_sessions"] })).await,
        StatusCode::FORBIDDEN,
        "permission_denied",
    );
    assert_eq!(
        member_row(&app, ws, &editor).await.unwrap(),
        ("editor".to_owned(), vec!["view_analytics".to_owned()], vec![])
    );
    assert_eq!(
        member_row(&app, ws, &owner).await.unwrap(),
        ("owner".to_owned(), vec![], vec![])
    );
    assert!(
        !my_permissions(&app, &editor, ws)
            .await
            .contains(&"manage_workspace".to_owned())
    );
}

#[actix_web::test]
async fn unknown_or_ungrantable_permission_names_change_nothing() {
    let app = spawn_app().await;
    let owner = app.register("olga").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let editor = app.add_member(&owner, ws, "ed", "editor").await;
    let (status, _) = set_permissions(&app, &owner, ws, &editor, json!({ "granted": ["view_analytics"] })).await;
    assert_eq!(status, StatusCode::OK);
    let audit_before = app.count("audit_log").await;

    let res = set_permissions(
        &app,
        &owner,
        ws,
        &editor,
        json!({ "granted": ["invite_users", "fly_to_the_moon"] }),
    )
    .await;
    assert_error(&res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert!(
        res.1["message"].as_str().unwrap().contains("fly_to_the_moon"),
        "{}",
        res.1
    );
    let res = set_permissions(&app, &owner, ws, &editor, json!({ "revoked": ["nope"] })).await;
    assert_error(&res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    // Deleting the workspace belongs to owners and cannot be handed out.
    let res = set_permissions(&app, &owner, ws, &editor, json!({ "granted": ["delete_workspace"] })).await;
    assert_error(&res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");

    assert_eq!(
        member_row(&app, ws, &editor).await.unwrap(),
        ("editor".to_owned(), vec!["view_analytics".to_owned()], vec![])
    );
    let perms = my_permissions(&app, &editor, ws).await;
    assert!(!perms.contains(&"invite_users".to_owned()));
    assert!(!perms.contains(&"delete_workspace".to_owned()));
    assert_eq!(app.count("audit_log").await, audit_before);
}

#[actix_web::test]
async fn grants_and_revokes_take_effect_on_the_next_request() {
    let app = spawn_app().await;
    let owner = app.register("olga").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let admin = app.add_member(&owner, ws, "adam", "admin").await;
    let guest = app.add_member(&owner, ws, "gus", "guest").await;
    let audit = format!("/api/workspaces/{ws}/audit");

    // A guest cut down to sending messages only.
    let (status, view) = set_permissions(
        &app,
        &owner,
        ws,
        &guest,
        json!({ "revoked": ["view_sessions", "view_knowledge"] }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(strings(&view["permissions"]), ["send_messages"]);
    assert_eq!(my_permissions(&app, &guest, ws).await, ["send_messages"]);

    // A grant lets them invite at once; taking it back stops them at once.
    assert_error(
        &invite(&app, ws, &guest, "a@example.com").await,
        StatusCode::FORBIDDEN,
        "permission_denied",
    );
    let (status, _) = set_permissions(&app, &owner, ws, &guest, json!({ "granted": ["invite_users"] })).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(invite(&app, ws, &guest, "b@example.com").await.0, StatusCode::CREATED);
    let (status, _) = set_permissions(&app, &owner, ws, &guest, json!({ "granted": [] })).await;
    assert_eq!(status, StatusCode::OK);
    assert_error(
        &invite(&app, ws, &guest, "c@example.com").await,
        StatusCode::FORBIDDEN,
        "permission_denied",
    );

    // Revoking a permission a role carries wins over the role.
    assert_eq!(app.get(&audit, &admin.token).await.0, StatusCode::OK);
    let (status, _) = set_permissions(&app, &owner, ws, &admin, json!({ "revoked": ["view_audit_log"] })).await;
    assert_eq!(status, StatusCode::OK);
    assert_error(
        &app.get(&audit, &admin.token).await,
        StatusCode::FORBIDDEN,
        "permission_denied",
    );
    let (status, _) = set_permissions(&app, &owner, ws, &admin, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.get(&audit, &admin.token).await.0, StatusCode::OK);
}

#[actix_web::test]
async fn members_can_be_removed_by_those_who_manage_users() {
    let app = spawn_app().await;
    let owner = app.register("olga").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let admin = app.add_member(&owner, ws, "adam", "admin").await;
    let editor = app.add_member(&owner, ws, "ed", "editor").await;

    assert_error(
        &remove(&app, ws, &editor, &admin).await,
        StatusCode::FORBIDDEN,
        "permission_denied",
    );
    assert_error(
        &remove(&app, ws, &admin, &owner).await,
        StatusCode::FORBIDDEN,
        "permission_denied",
    );
    assert_eq!(role_of(&app, ws, &owner).await.as_deref(), Some("owner"));
    assert_eq!(role_of(&app, ws, &admin).await.as_deref(), Some("admin"));

    let (status, _) = remove(&app, ws, &admin, &editor).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_error(
        &app.get(&format!("/api/workspaces/{ws}"), &editor.token).await,
        StatusCode::NOT_FOUND,
        "workspace_not_found",
    );
    let (_, members) = app.get(&format!("/api/workspaces/{ws}/members"), &owner.token).await;
    assert!(
        members
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["user_id"] != editor.id.to_string())
    );
    assert_error(
        &remove(&app, ws, &admin, &editor).await,
        StatusCode::NOT_FOUND,
        "member_not_found",
    );

    // The last owner cannot be removed, not even by themselves.
    assert_error(
        &remove(&app, ws, &owner, &owner).await,
        StatusCode::CONFLICT,
        "last_owner",
    );
    assert_eq!(role_of(&app, ws, &owner).await.as_deref(), Some("owner"));
}

#[actix_web::test]
async fn leaving_is_for_everyone_but_the_last_owner() {
    let app = spawn_app().await;
    let owner = app.register("olga").await;
    let ws = app.create_workspace(&owner, "Team").await;

    assert_error(&leave(&app, ws, &owner).await, StatusCode::CONFLICT, "last_owner");
    assert_eq!(
        app.get(&format!("/api/workspaces/{ws}"), &owner.token).await.0,
        StatusCode::OK
    );

    let editor = app.add_member(&owner, ws, "ed", "editor").await;
    assert_eq!(leave(&app, ws, &editor).await.0, StatusCode::NO_CONTENT);
    assert_error(
        &app.get(&format!("/api/workspaces/{ws}"), &editor.token).await,
        StatusCode::NOT_FOUND,
        "workspace_not_found",
    );
    assert_error(
        &leave(&app, ws, &editor).await,
        StatusCode::NOT_FOUND,
        "workspace_not_found",
    );

    // With a second owner the first one may go; then the second is the last.
    let second = app.add_member(&owner, ws, "sue", "owner").await;
    assert_eq!(leave(&app, ws, &owner).await.0, StatusCode::NO_CONTENT);
    assert_eq!(role_of(&app, ws, &owner).await, None);
    assert_error(&leave(&app, ws, &second).await, StatusCode::CONFLICT, "last_owner");
    assert_eq!(role_of(&app, ws, &second).await.as_deref(), Some("owner"));
}

#[actix_web::test]
async fn outsiders_and_unknown_ids_get_workspace_not_found() {
    let app = spawn_app().await;
    let owner = app.register("olga").await;
    let ws = app.create_workspace(&owner, "Secret").await;
    let outsider = app.register("otto").await;
    let audit_before = app.count("audit_log").await;

    let some = Uuid::new_v4();
    let calls = |ws: Uuid| {
        vec![
            (Method::GET, format!("/api/workspaces/{ws}"), None),
            (
                Method::PATCH,
                format!("/api/workspaces/{ws}"),
                Some(json!({ "name": "Taken" })),
            ),
            (Method::DELETE, format!("/api/workspaces/{ws}"), None),
            (Method::GET, format!("/api/workspaces/{ws}/members"), None),
            (
                Method::PATCH,
                format!("/api/workspaces/{ws}/members/{}", owner.id),
                Some(json!({ "role": "guest" })),
            ),
            (
                Method::PUT,
                format!("/api/workspaces/{ws}/members/{}/permissions", owner.id),
                Some(json!({ "revoked": ["view_sessions"] })),
            ),
            (
                Method::DELETE,
                format!("/api/workspaces/{ws}/members/{}", owner.id),
                None,
            ),
            (Method::POST, format!("/api/workspaces/{ws}/leave"), None),
            (Method::GET, format!("/api/workspaces/{ws}/invitations"), None),
            (
                Method::POST,
                format!("/api/workspaces/{ws}/invitations"),
                Some(json!({ "email": "x@example.com", "role": "viewer" })),
            ),
            (Method::DELETE, format!("/api/workspaces/{ws}/invitations/{some}"), None),
            (Method::GET, format!("/api/workspaces/{ws}/tokens"), None),
            (
                Method::POST,
                format!("/api/workspaces/{ws}/tokens"),
                Some(json!({ "name": "t", "permissions": ["view_sessions"] })),
            ),
            (Method::DELETE, format!("/api/workspaces/{ws}/tokens/{some}"), None),
            (Method::GET, format!("/api/workspaces/{ws}/audit"), None),
        ]
    };
    for (method, path, body) in calls(ws) {
        let res = app.call(method.clone(), &path, Some(&outsider.token), body).await;
        assert_eq!(res.0, StatusCode::NOT_FOUND, "{method} {path}: {}", res.1);
        assert_error(&res, StatusCode::NOT_FOUND, "workspace_not_found");
    }
    for (method, path, body) in calls(Uuid::new_v4()) {
        let res = app.call(method.clone(), &path, Some(&owner.token), body).await;
        assert_eq!(res.0, StatusCode::NOT_FOUND, "{method} {path}: {}", res.1);
        assert_error(&res, StatusCode::NOT_FOUND, "workspace_not_found");
    }
    // A member of one workspace learns nothing about another that exists.
    let (_, other) = app
        .get(&format!("/api/workspaces/{}", Uuid::new_v4()), &owner.token)
        .await;
    let (_, hidden) = app.get(&format!("/api/workspaces/{ws}"), &outsider.token).await;
    assert_eq!(other, hidden);

    assert_eq!(workspace_name(&app, ws).await, "Secret");
    assert_eq!(role_of(&app, ws, &owner).await.as_deref(), Some("owner"));
    assert_eq!(app.count("audit_log").await, audit_before);
}

#[actix_web::test]
async fn malformed_ids_in_the_path_are_invalid_path() {
    let app = spawn_app().await;
    let owner = app.register("olga").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let calls = [
        (Method::GET, "/api/workspaces/not-a-uuid".to_owned()),
        (Method::DELETE, "/api/workspaces/123".to_owned()),
        (Method::GET, "/api/workspaces/not-a-uuid/members".to_owned()),
        (Method::DELETE, format!("/api/workspaces/{ws}/members/not-a-uuid")),
        (Method::DELETE, format!("/api/workspaces/{ws}/invitations/zzz")),
        (Method::GET, "/api/workspaces/%20/audit".to_owned()),
    ];
    for (method, path) in calls {
        let res = app.call(method.clone(), &path, Some(&owner.token), None).await;
        assert_eq!(res.0, StatusCode::BAD_REQUEST, "{method} {path}: {}", res.1);
        assert_error(&res, StatusCode::BAD_REQUEST, "invalid_path");
    }
    assert_eq!(app.count("workspaces").await, 1);
    assert_eq!(app.count("workspace_members").await, 1);
}

#[actix_web::test]
async fn over_long_or_empty_names_are_refused_and_nothing_is_written() {
    let app = spawn_app().await;
    let owner = app.register("olga").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let counts = || async {
        (
            app.count("workspaces").await,
            app.count("workspace_members").await,
            app.count("audit_log").await,
        )
    };
    let before = counts().await;

    for name in ["x".repeat(101), "é".repeat(101), String::new(), "   ".to_owned()] {
        let res = app
            .post("/api/workspaces", Some(&owner.token), json!({ "name": name }))
            .await;
        assert_error(&res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        let res = app
            .call(
                Method::PATCH,
                &format!("/api/workspaces/{ws}"),
                Some(&owner.token),
                Some(json!({ "name": name })),
            )
            .await;
        assert_error(&res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    }
    assert_eq!(counts().await, before);
    assert_eq!(workspace_name(&app, ws).await, "Team");

    // The limit is 100 characters, not bytes.
    let (status, body) = app
        .post(
            "/api/workspaces",
            Some(&owner.token),
            json!({ "name": "é".repeat(100) }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}
