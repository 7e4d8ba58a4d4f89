//! The session REST API: create, list, get, settings, archive, participants and history,
//! against the real server and Postgres — and how its changes reach live WebSocket clients.

use crate::common::ws::{WAIT, WsClient};
use crate::common::*;
use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use uuid::Uuid;

async fn patch(app: &TestApp, path: &str, user: &User, body: Value) -> (StatusCode, Value) {
    app.call(Method::PATCH, path, Some(&user.token), Some(body)).await
}

async fn delete(app: &TestApp, path: &str, user: &User) -> (StatusCode, Value) {
    app.call(Method::DELETE, path, Some(&user.token), None).await
}

/// `GET /api/sessions/{id}` as `user`, expecting success.
async fn session_as(app: &TestApp, user: &User, session: Uuid) -> Value {
    let (status, body) = app.get(&format!("/api/sessions/{session}"), &user.token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Titles of the sessions `user` sees in the workspace listing (with `query`, e.g. `?archived=true`).
async fn listed_titles(app: &TestApp, user: &User, workspace: Uuid, query: &str) -> BTreeSet<String> {
    let (status, body) = app
        .get(&format!("/api/workspaces/{workspace}/sessions{query}"), &user.token)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body.as_array()
        .unwrap()
        .iter()
        .map(|s| s["title"].as_str().unwrap().to_owned())
        .collect()
}

/// Creates a session titled `title`; returns its JSON view.
async fn create(app: &TestApp, user: &User, workspace: Uuid, body: Value) -> Value {
    let (status, session) = app
        .post(
            &format!("/api/workspaces/{workspace}/sessions"),
            Some(&user.token),
            body,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    session
}

fn id_of(session: &Value) -> Uuid {
    session["id"].as_str().unwrap().parse().unwrap()
}

async fn add_participant(
    app: &TestApp,
    caller: &User,
    session: Uuid,
    target: Uuid,
    role_override: Option<&str>,
) -> (StatusCode, Value) {
    app.post(
        &format!("/api/sessions/{session}/participants"),
        Some(&caller.token),
        json!({ "user_id": target, "role_override": role_override }),
    )
    .await
}

/// The participant list as (user_id, role, role_override).
async fn participants(app: &TestApp, user: &User, session: Uuid) -> Vec<(Uuid, String, Value)> {
    let (status, body) = app
        .get(&format!("/api/sessions/{session}/participants"), &user.token)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    rows_of(&body)
}

fn rows_of(list: &Value) -> Vec<(Uuid, String, Value)> {
    list.as_array()
        .unwrap_or_else(|| panic!("a list: {list}"))
        .iter()
        .map(|p| {
            (
                p["user_id"].as_str().unwrap().parse().unwrap(),
                p["role"].as_str().unwrap().to_owned(),
                p["role_override"].clone(),
            )
        })
        .collect()
}

fn permissions(view: &Value) -> BTreeSet<String> {
    view["my_permissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

/// Waits for `wait`, failing after [`WAIT`] even while server pings keep the socket busy.
async fn within<T>(what: &str, wait: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, wait)
        .await
        .unwrap_or_else(|_| panic!("{what} did not arrive in time"))
}

/// Frames until `user`'s client gets an answer to `reference`; that answer is last.
async fn answer(client: &mut WsClient, reference: &str) -> Vec<Value> {
    within(
        reference,
        client.until(|f| (f["type"] == "ack" || f["type"] == "error") && f["ref"] == reference),
    )
    .await
}

async fn message_count(app: &TestApp, session: Uuid) -> i64 {
    app.db
        .client()
        .await
        .query_one("SELECT count(*) FROM messages WHERE session_id = $1", &[&session])
        .await
        .unwrap()
        .get(0)
}

async fn event_count(app: &TestApp, session: Uuid) -> i64 {
    app.db
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM events WHERE topic = $1",
            &[&format!("session:{session}")],
        )
        .await
        .unwrap()
        .get(0)
}

#[actix_web::test]
async fn creating_a_session_shares_it_with_the_workspace_and_its_creator_takes_part() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let bob = app.add_member(&owner, ws, "bob", "editor").await;
    let vic = app.add_member(&owner, ws, "vic", "viewer").await;
    let outsider = app.register("outsider").await;

    let created = create(&app, &bob, ws, json!({ "title": "  Roadmap  " })).await;
    let session = id_of(&created);
    assert_eq!(created["title"], "Roadmap");
    // A team product: without `visibility` a session is the workspace's, so a teammate sees it.
    assert_eq!(created["visibility"], "workspace");
    assert_eq!(session_as(&app, &vic, id_of(&created)).await["title"], "Roadmap");
    assert_eq!(created["workspace_id"], json!(ws));
    assert_eq!(created["created_by"], json!(bob.id));
    assert_eq!(created["default_model"], Value::Null);
    assert_eq!(created["archived_at"], Value::Null);
    assert_eq!(created["participant"], true);
    assert_eq!(created["my_role"], "editor");
    let head = created["head_seq"].as_i64().unwrap();
    assert!(head > 0, "{created}");
    let db = app.db.client().await;
    let last: i64 = db
        .query_one(
            "SELECT max(seq) FROM events WHERE topic = $1",
            &[&format!("session:{session}")],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(head, last, "head_seq is the session's last event");

    // The creator is a participant and can read it back; the head has not moved.
    assert_eq!(
        participants(&app, &bob, session).await,
        [(bob.id, "editor".to_owned(), Value::Null)]
    );
    let got = session_as(&app, &bob, session).await;
    assert_eq!(got["head_seq"].as_i64().unwrap(), head);
    assert_eq!(got["title"], "Roadmap");

    // A workspace session with a default model.
    let open = create(
        &app,
        &owner,
        ws,
        json!({ "title": "Open", "visibility": "workspace", "default_model": "model-a" }),
    )
    .await;
    assert_eq!(open["visibility"], "workspace");
    assert_eq!(open["default_model"], "model-a");
    assert_eq!(open["my_role"], "owner");

    // A viewer may not start sessions; a stranger cannot even find the workspace.
    let res = app
        .post(
            &format!("/api/workspaces/{ws}/sessions"),
            Some(&vic.token),
            json!({ "title": "Mine" }),
        )
        .await;
    assert_error(&res, StatusCode::FORBIDDEN, "permission_denied");
    let res = app
        .post(
            &format!("/api/workspaces/{ws}/sessions"),
            Some(&outsider.token),
            json!({ "title": "Mine" }),
        )
        .await;
    assert_error(&res, StatusCode::NOT_FOUND, "workspace_not_found");
    assert_eq!(app.count("chat_sessions").await, 2);
}

#[actix_web::test]
async fn the_list_shows_only_what_the_caller_may_see_and_hides_archived_sessions() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let admin = app.add_member(&owner, ws, "admin", "admin").await;
    let bob = app.add_member(&owner, ws, "bob", "editor").await;
    let cat = app.add_member(&owner, ws, "cat", "editor").await;

    let bobs = id_of(
        &create(
            &app,
            &bob,
            ws,
            json!({ "title": "bob private", "visibility": "private" }),
        )
        .await,
    );
    let cats = id_of(
        &create(
            &app,
            &cat,
            ws,
            json!({ "title": "cat open", "visibility": "workspace" }),
        )
        .await,
    );
    create(
        &app,
        &owner,
        ws,
        json!({ "title": "owner private", "visibility": "private" }),
    )
    .await;

    let all = set(&["bob private", "cat open", "owner private"]);
    assert_eq!(listed_titles(&app, &cat, ws, "").await, set(&["cat open"]));
    assert_eq!(
        listed_titles(&app, &bob, ws, "").await,
        set(&["bob private", "cat open"])
    );
    assert_eq!(listed_titles(&app, &admin, ws, "").await, all);
    assert_eq!(listed_titles(&app, &owner, ws, "").await, all);

    // The admin sees Bob's private session as a manager, not as a participant.
    let (_, list) = app.get(&format!("/api/workspaces/{ws}/sessions"), &admin.token).await;
    let entry = list
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == json!(bobs))
        .unwrap();
    assert_eq!(entry["participant"], false);
    assert_eq!(entry["my_role"], "admin");
    assert!(entry["head_seq"].as_i64().unwrap() > 0);

    // Once Cat is a participant of Bob's private session, she sees it too.
    let (status, body) = add_participant(&app, &bob, bobs, cat.id, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        listed_titles(&app, &cat, ws, "").await,
        set(&["bob private", "cat open"])
    );

    // Archived sessions are hidden unless asked for.
    let (status, body) = app
        .post(&format!("/api/sessions/{cats}/archive"), Some(&cat.token), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["archived_at"].is_string(), "{body}");
    assert_eq!(listed_titles(&app, &cat, ws, "").await, set(&["bob private"]));
    assert_eq!(
        listed_titles(&app, &cat, ws, "?archived=false").await,
        set(&["bob private"])
    );
    assert_eq!(
        listed_titles(&app, &owner, ws, "").await,
        set(&["bob private", "owner private"])
    );
    assert_eq!(
        listed_titles(&app, &cat, ws, "?archived=true").await,
        set(&["bob private", "cat open"])
    );
    assert_eq!(listed_titles(&app, &owner, ws, "?archived=true").await, all);
    let res = app
        .get(&format!("/api/workspaces/{ws}/sessions?archived=maybe"), &cat.token)
        .await;
    assert_error(&res, StatusCode::BAD_REQUEST, "invalid_query");

    // Unarchiving brings it back.
    let (status, body) = app
        .post(&format!("/api/sessions/{cats}/unarchive"), Some(&cat.token), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["archived_at"], Value::Null);
    assert_eq!(
        listed_titles(&app, &cat, ws, "").await,
        set(&["bob private", "cat open"])
    );
    assert_eq!(session_as(&app, &cat, cats).await["archived_at"], Value::Null);
}

#[actix_web::test]
async fn get_shows_the_callers_role_permissions_and_participation() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let admin = app.add_member(&owner, ws, "admin", "admin").await;
    let vic = app.add_member(&owner, ws, "vic", "viewer").await;
    let outsider = app.register("outsider").await;
    let (open, _) = app.create_session(&owner, ws, "workspace").await;
    let (private, _) = app.create_session(&owner, ws, "private").await;

    let mine = session_as(&app, &owner, open).await;
    assert_eq!(mine["my_role"], "owner");
    assert_eq!(mine["participant"], true);
    assert!(permissions(&mine).contains("manage_sessions"), "{mine}");

    let viewer = session_as(&app, &vic, open).await;
    assert_eq!(viewer["my_role"], "viewer");
    assert_eq!(viewer["participant"], false);
    assert_eq!(
        permissions(&viewer),
        set(&["view_sessions", "send_messages", "view_artifacts", "view_knowledge"])
    );

    // Someone else's private session: a manager sees it, a viewer and a stranger do not.
    let managed = session_as(&app, &admin, private).await;
    assert_eq!(managed["my_role"], "admin");
    assert_eq!(managed["participant"], false);
    assert!(permissions(&managed).contains("manage_sessions"), "{managed}");
    let res = app.get(&format!("/api/sessions/{private}"), &vic.token).await;
    assert_error(&res, StatusCode::NOT_FOUND, "session_not_found");
    let res = app.get(&format!("/api/sessions/{open}"), &outsider.token).await;
    assert_error(&res, StatusCode::NOT_FOUND, "session_not_found");
    let res = app
        .get(&format!("/api/sessions/{}", Uuid::new_v4()), &owner.token)
        .await;
    assert_error(&res, StatusCode::NOT_FOUND, "session_not_found");
}

#[actix_web::test]
async fn settings_change_only_for_the_creator_or_a_session_manager() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let admin = app.add_member(&owner, ws, "admin", "admin").await;
    let bob = app.add_member(&owner, ws, "bob", "editor").await;
    let cat = app.add_member(&owner, ws, "cat", "editor").await;
    let created = create(
        &app,
        &bob,
        ws,
        json!({ "title": "Plans", "visibility": "workspace", "default_model": "model-a" }),
    )
    .await;
    let session = id_of(&created);
    let path = format!("/api/sessions/{session}");
    let events_before = event_count(&app, session).await;

    // An editor who did not create it can see it but not change it.
    for body in [
        json!({ "title": "Hijacked" }),
        json!({ "visibility": "private" }),
        json!({ "default_model": "" }),
    ] {
        let res = patch(&app, &path, &cat, body).await;
        assert_error(&res, StatusCode::FORBIDDEN, "permission_denied");
    }
    for action in ["archive", "unarchive"] {
        let res = app.post(&format!("{path}/{action}"), Some(&cat.token), json!({})).await;
        assert_error(&res, StatusCode::FORBIDDEN, "permission_denied");
    }
    let unchanged = session_as(&app, &cat, session).await;
    assert_eq!(unchanged["title"], "Plans");
    assert_eq!(unchanged["visibility"], "workspace");
    assert_eq!(unchanged["default_model"], "model-a");
    assert_eq!(unchanged["archived_at"], Value::Null);
    assert_eq!(unchanged["updated_at"], created["updated_at"]);
    assert_eq!(unchanged["head_seq"], created["head_seq"]);
    assert_eq!(event_count(&app, session).await, events_before, "no event was written");

    // The creator changes title and model together; the rest stays.
    let (status, body) = patch(
        &app,
        &path,
        &bob,
        json!({ "title": "Plans v2", "default_model": "model-b" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["title"], "Plans v2");
    assert_eq!(body["default_model"], "model-b");
    assert_eq!(body["visibility"], "workspace");
    assert!(body["head_seq"].as_i64().unwrap() > created["head_seq"].as_i64().unwrap());

    // An empty model clears it and leaves the title alone.
    let (status, body) = patch(&app, &path, &bob, json!({ "default_model": "" })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["default_model"], Value::Null);
    assert_eq!(body["title"], "Plans v2");
    let db = app.db.client().await;
    let row = db
        .query_one(
            "SELECT title, default_model FROM chat_sessions WHERE id = $1",
            &[&session],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "Plans v2");
    assert_eq!(row.get::<_, Option<String>>(1), None);

    // A manager who is not a participant may change it too: making it private hides it from Cat.
    let (status, body) = patch(&app, &path, &admin, json!({ "visibility": "private" })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["visibility"], "private");
    assert_eq!(body["participant"], false);
    let res = app.get(&path, &cat.token).await;
    assert_error(&res, StatusCode::NOT_FOUND, "session_not_found");
    let res = patch(&app, &path, &cat, json!({ "title": "Hijacked" })).await;
    assert_error(&res, StatusCode::NOT_FOUND, "session_not_found");

    // Archive and unarchive, by the creator and by a manager.
    let (status, body) = app.post(&format!("{path}/archive"), Some(&bob.token), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["archived_at"].is_string(), "{body}");
    assert!(session_as(&app, &admin, session).await["archived_at"].is_string());
    let (status, body) = app
        .post(&format!("{path}/unarchive"), Some(&admin.token), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["archived_at"], Value::Null);
    assert_eq!(session_as(&app, &bob, session).await["archived_at"], Value::Null);
}

#[actix_web::test]
async fn participants_are_added_with_roles_no_higher_than_the_callers() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let bob = app.add_member(&owner, ws, "bob", "editor").await;
    let cat = app.add_member(&owner, ws, "cat", "viewer").await;
    let dan = app.add_member(&owner, ws, "dan", "editor").await;
    let eve = app.add_member(&owner, ws, "eve", "editor").await;
    let outsider = app.register("outsider").await;
    let session = id_of(&create(&app, &bob, ws, json!({ "title": "Bob's", "visibility": "private" })).await);

    // Without an override the workspace role applies; with one, the override does.
    let (status, list) = add_participant(&app, &bob, session, cat.id, None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert!(
        rows_of(&list).contains(&(cat.id, "viewer".to_owned(), Value::Null)),
        "{list}"
    );
    let (status, list) = add_participant(&app, &bob, session, dan.id, Some("guest")).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert!(
        rows_of(&list).contains(&(dan.id, "guest".to_owned(), json!("guest"))),
        "{list}"
    );
    let expected = vec![
        (bob.id, "editor".to_owned(), Value::Null),
        (cat.id, "viewer".to_owned(), Value::Null),
        (dan.id, "guest".to_owned(), json!("guest")),
    ];
    assert_eq!(participants(&app, &cat, session).await, expected);

    // An editor cannot hand out a role above their own permissions.
    for role in ["admin", "owner"] {
        let res = add_participant(&app, &bob, session, eve.id, Some(role)).await;
        assert_error(&res, StatusCode::FORBIDDEN, "permission_denied");
    }
    // Only members of the workspace can take part.
    let res = add_participant(&app, &bob, session, outsider.id, None).await;
    assert_error(&res, StatusCode::NOT_FOUND, "member_not_found");
    let res = add_participant(&app, &bob, session, Uuid::new_v4(), None).await;
    assert_error(&res, StatusCode::NOT_FOUND, "member_not_found");
    // A participant who neither created the session nor manages sessions cannot add anyone.
    let res = add_participant(&app, &cat, session, eve.id, None).await;
    assert_error(&res, StatusCode::FORBIDDEN, "permission_denied");
    assert_eq!(participants(&app, &bob, session).await, expected, "nothing changed");
    let res = app.get(&format!("/api/sessions/{session}"), &eve.token).await;
    assert_error(&res, StatusCode::NOT_FOUND, "session_not_found");

    // The owner holds every permission, so may give Eve an admin role here.
    let (status, list) = add_participant(&app, &owner, session, eve.id, Some("admin")).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert!(
        rows_of(&list).contains(&(eve.id, "admin".to_owned(), json!("admin"))),
        "{list}"
    );
    let eves = session_as(&app, &eve, session).await;
    assert_eq!(eves["my_role"], "admin");
    assert!(permissions(&eves).contains("manage_sessions"), "{eves}");
}

#[actix_web::test]
async fn participants_are_removed_by_the_creator_a_manager_or_themselves() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let bob = app.add_member(&owner, ws, "bob", "editor").await;
    let cat = app.add_member(&owner, ws, "cat", "editor").await;
    let dan = app.add_member(&owner, ws, "dan", "editor").await;
    let eve = app.add_member(&owner, ws, "eve", "editor").await;
    let session = id_of(&create(&app, &bob, ws, json!({ "title": "Bob's", "visibility": "private" })).await);
    for user in [&cat, &dan, &eve] {
        let (status, body) = add_participant(&app, &bob, session, user.id, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let members = |rows: Vec<(Uuid, String, Value)>| rows.into_iter().map(|r| r.0).collect::<Vec<_>>();
    let remove = |target: Uuid| format!("/api/sessions/{session}/participants/{target}");

    // Cat may not remove Dan...
    let res = delete(&app, &remove(dan.id), &cat).await;
    assert_error(&res, StatusCode::FORBIDDEN, "permission_denied");
    assert_eq!(
        members(participants(&app, &bob, session).await),
        [bob.id, cat.id, dan.id, eve.id]
    );
    // ...but may leave herself, and then no longer sees the private session.
    let (status, _) = delete(&app, &remove(cat.id), &cat).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let res = app.get(&format!("/api/sessions/{session}"), &cat.token).await;
    assert_error(&res, StatusCode::NOT_FOUND, "session_not_found");
    // The creator removes Dan, the owner (a manager, not a participant) removes Eve.
    let (status, _) = delete(&app, &remove(dan.id), &bob).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = delete(&app, &remove(eve.id), &owner).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(members(participants(&app, &bob, session).await), [bob.id]);
    // Removing someone who is not a participant is an error, not a silent success.
    let res = delete(&app, &remove(dan.id), &bob).await;
    assert_error(&res, StatusCode::NOT_FOUND, "member_not_found");
    let db = app.db.client().await;
    let removed: i64 = db
        .query_one(
            "SELECT count(*) FROM events WHERE topic = $1 AND kind = 'participant.removed'",
            &[&format!("session:{session}")],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(removed, 3);
}

#[actix_web::test]
async fn removing_a_participant_from_a_private_session_cuts_their_live_subscription() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let bob = app.add_member(&owner, ws, "bob", "editor").await;
    let (session, topic) = app.create_session(&owner, ws, "private").await;
    let (status, body) = add_participant(&app, &owner, session, bob.id, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let mut a = app.ws(&owner).await;
    a.subscribe(&topic, None).await;
    let mut b = app.ws(&bob).await;
    b.subscribe(&topic, None).await;
    b.say(&topic, "glad to be here", "b1").await;

    let (status, _) = delete(
        &app,
        &format!("/api/sessions/{session}/participants/{}", bob.id),
        &owner,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let revoked = within("access_revoked", b.until(|f| f["type"] == "error"))
        .await
        .pop()
        .unwrap();
    assert_eq!(revoked["code"], "access_revoked", "{revoked}");
    assert_eq!(revoked["topic"], topic.as_str());
    b.send(json!({ "type": "send_message", "ref": "b2", "topic": topic, "body": "still here?" }))
        .await;
    assert_eq!(answer(&mut b, "b2").await.pop().unwrap()["code"], "not_subscribed");
    b.send(json!({ "type": "subscribe", "ref": "again", "topic": topic }))
        .await;
    let again = within("the subscribe answer", b.until(|f| f["ref"] == "again"))
        .await
        .pop()
        .unwrap();
    assert_eq!(again["code"], "session_not_found", "{again}");

    // The owner saw the removal and keeps writing.
    let removed = within("participant.removed", a.until(|f| f["kind"] == "participant.removed"))
        .await
        .pop()
        .unwrap();
    assert_eq!(removed["data"]["user_id"], json!(bob.id));
    a.say(&topic, "carry on", "a1").await;
    assert_eq!(message_count(&app, session).await, 2);
}

#[actix_web::test]
async fn making_a_session_private_cuts_non_participants_and_keeps_participants() {
    let app = spawn_app_with(|c| c.ws_frames_per_second = 1000).await;
    let owner = app.register("owner").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let admin = app.add_member(&owner, ws, "admin", "admin").await;
    let bob = app.add_member(&owner, ws, "bob", "editor").await;
    let cat = app.add_member(&owner, ws, "cat", "editor").await;
    let vic = app.add_member(&owner, ws, "vic", "viewer").await;
    let session = id_of(&create(&app, &bob, ws, json!({ "title": "Open", "visibility": "workspace" })).await);
    let topic = format!("session:{session}");
    let (status, body) = add_participant(&app, &bob, session, cat.id, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let mut bobs = app.ws(&bob).await;
    bobs.subscribe(&topic, None).await;
    let mut cats = app.ws(&cat).await;
    cats.subscribe(&topic, None).await;
    let mut vics = app.ws(&vic).await;
    vics.subscribe(&topic, None).await;
    let mut admins = app.ws(&admin).await;
    admins.subscribe(&topic, None).await;

    let (status, body) = patch(
        &app,
        &format!("/api/sessions/{session}"),
        &bob,
        json!({ "visibility": "private" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Vic (a viewer, not a participant) is cut off...
    let frames = within("access_revoked", vics.until(|f| f["type"] == "error")).await;
    let revoked = frames.last().unwrap();
    assert_eq!(revoked["code"], "access_revoked", "{frames:?}");
    assert_eq!(revoked["topic"], topic.as_str());
    vics.send(json!({ "type": "send_message", "ref": "v", "topic": topic, "body": "hello?" }))
        .await;
    assert_eq!(answer(&mut vics, "v").await.pop().unwrap()["code"], "not_subscribed");

    // ...while the participants and the manager stay subscribed and can write.
    for (client, reference) in [(&mut bobs, "b"), (&mut cats, "c"), (&mut admins, "a")] {
        client
            .send(json!({ "type": "send_message", "ref": reference, "topic": topic, "body": format!("still here {reference}") }))
            .await;
        let frames = answer(client, reference).await;
        assert!(
            frames.iter().all(|f| f["code"] != "access_revoked"),
            "{reference}: {frames:?}"
        );
        assert_eq!(frames.last().unwrap()["type"], "ack", "{reference}: {frames:?}");
        assert!(
            frames
                .iter()
                .any(|f| f["kind"] == "session.updated" && f["data"]["session"]["visibility"] == "private"),
            "{reference} saw the change: {frames:?}"
        );
    }
    assert_eq!(message_count(&app, session).await, 3);
}

#[actix_web::test]
async fn a_session_role_replaces_the_workspace_role_but_workspace_revokes_still_apply() {
    let app = spawn_app_with(|c| c.ws_frames_per_second = 1000).await;
    let owner = app.register("owner").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let admin = app.add_member(&owner, ws, "admin", "admin").await;
    let bob = app.add_member(&owner, ws, "bob", "editor").await;
    let cat = app.add_member(&owner, ws, "cat", "editor").await;
    let dan = app.add_member(&owner, ws, "dan", "editor").await;
    let (session, topic) = app.create_session(&owner, ws, "private").await;
    for (user, role) in [(&bob, "viewer"), (&cat, "guest"), (&dan, "guest"), (&admin, "guest")] {
        let (status, body) = add_participant(&app, &owner, session, user.id, Some(role)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    // An editor made a viewer here has exactly a viewer's permissions here.
    let bobs = session_as(&app, &bob, session).await;
    assert_eq!(bobs["my_role"], "viewer");
    assert_eq!(bobs["participant"], true);
    assert_eq!(
        permissions(&bobs),
        set(&["view_sessions", "send_messages", "view_artifacts", "view_knowledge"])
    );
    let rows = participants(&app, &owner, session).await;
    assert!(
        rows.contains(&(bob.id, "viewer".to_owned(), json!("viewer"))),
        "{rows:?}"
    );
    assert!(rows.contains(&(owner.id, "owner".to_owned(), Value::Null)), "{rows:?}");

    // An admin made a guest here cannot manage this session.
    let res = patch(
        &app,
        &format!("/api/sessions/{session}"),
        &admin,
        json!({ "title": "Mine" }),
    )
    .await;
    assert_error(&res, StatusCode::FORBIDDEN, "permission_denied");

    // A guest may still send...
    let mut cats = app.ws(&cat).await;
    cats.subscribe(&topic, None).await;
    cats.say(&topic, "a guest speaks", "c1").await;

    // ...unless the workspace took `send_messages` away: that holds inside the session too.
    let (status, body) = app
        .call(
            Method::PUT,
            &format!("/api/workspaces/{ws}/members/{}/permissions", dan.id),
            Some(&owner.token),
            Some(json!({ "granted": [], "revoked": ["send_messages"] })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let dans = session_as(&app, &dan, session).await;
    assert_eq!(dans["my_role"], "guest");
    assert!(!permissions(&dans).contains("send_messages"), "{dans}");
    let mut d = app.ws(&dan).await;
    d.subscribe(&topic, None).await;
    d.send(json!({ "type": "send_message", "ref": "d1", "topic": topic, "body": "let me speak" }))
        .await;
    let refused = answer(&mut d, "d1").await.pop().unwrap();
    assert_eq!(refused["type"], "error");
    assert_eq!(refused["code"], "permission_denied", "{refused}");
    assert_eq!(
        message_count(&app, session).await,
        1,
        "only the guest's message was stored"
    );
}

#[actix_web::test]
async fn history_pages_back_and_forward_without_gaps_or_duplicates() {
    let app = spawn_app_with(|c| c.ws_frames_per_second = 1000).await;
    let owner = app.register("owner").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let bob = app.add_member(&owner, ws, "bob", "editor").await;
    let cat = app.add_member(&owner, ws, "cat", "editor").await;
    let outsider = app.register("outsider").await;
    let (session, topic) = app.create_session(&owner, ws, "workspace").await;
    let (private, _) = app.create_session(&owner, ws, "private").await;

    // 25 messages from two people; Bob's first write also makes him a participant, so the
    // message seqs are not one contiguous run.
    let mut a = app.ws(&owner).await;
    a.subscribe(&topic, None).await;
    let mut b = app.ws(&bob).await;
    b.subscribe(&topic, None).await;
    let mut sent = Vec::new();
    for n in 0..25 {
        let (client, author) = if n % 3 == 2 {
            (&mut b, bob.id)
        } else {
            (&mut a, owner.id)
        };
        let body = format!("message {n}");
        let seq = client.say(&topic, &body, &format!("m{n}")).await;
        sent.push((seq, body, author));
    }
    let seqs: Vec<i64> = sent.iter().map(|m| m.0).collect();
    let last = *seqs.last().unwrap();
    assert!(
        seqs.windows(2).any(|w| w[1] > w[0] + 1),
        "some other event sits between messages: {seqs:?}"
    );

    let page = |query: String| {
        let app = &app;
        let token = owner.token.clone();
        async move {
            let (status, body) = app
                .get(&format!("/api/sessions/{session}/messages{query}"), &token)
                .await;
            assert_eq!(status, StatusCode::OK, "{query}: {body}");
            let seqs: Vec<i64> = body["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["seq"].as_i64().unwrap())
                .collect();
            (seqs, body["has_more"].as_bool().unwrap(), body)
        }
    };

    // Newest first, going back.
    let (newest, more, body) = page("?limit=10".into()).await;
    assert_eq!(newest, seqs[15..]);
    assert!(more);
    assert_eq!(body["head_seq"].as_i64().unwrap(), last);
    let first = &body["messages"][0];
    assert_eq!(first["body"], sent[15].1);
    assert_eq!(first["author_id"], json!(sent[15].2));
    assert_eq!(first["session_id"], json!(session));
    assert_eq!(first["reactions"], json!([]));
    let (middle, more, _) = page(format!("?limit=10&before_seq={}", newest[0])).await;
    assert_eq!(middle, seqs[5..15]);
    assert!(more);
    let (oldest, more, _) = page(format!("?limit=10&before_seq={}", middle[0])).await;
    assert_eq!(oldest, seqs[..5]);
    assert!(!more);
    let joined: Vec<i64> = [oldest, middle, newest].concat();
    assert_eq!(joined, seqs, "backward pages join up exactly");
    // A page that ends exactly at the oldest message has nothing more.
    let (exact, more, _) = page(format!("?limit=10&before_seq={}", seqs[10])).await;
    assert_eq!(exact, seqs[..10]);
    assert!(!more);

    // Forward from the start.
    let (p1, more, _) = page("?limit=10&after_seq=0".into()).await;
    assert_eq!(p1, seqs[..10]);
    assert!(more);
    let (p2, more, _) = page(format!("?limit=10&after_seq={}", p1[9])).await;
    assert_eq!(p2, seqs[10..20]);
    assert!(more);
    let (p3, more, body) = page(format!("?limit=10&after_seq={}", p2[9])).await;
    assert_eq!(p3, seqs[20..]);
    assert!(!more);
    assert_eq!(body["head_seq"].as_i64().unwrap(), last);
    assert_eq!([p1, p2, p3].concat(), seqs, "forward pages join up exactly");
    let (exact, more, _) = page(format!("?limit=10&after_seq={}", seqs[14])).await;
    assert_eq!(exact, seqs[15..]);
    assert!(!more);
    let (none, more, _) = page(format!("?after_seq={last}")).await;
    assert!(none.is_empty() && !more);

    // No parameters: everything (the default page is larger than 25), oldest first.
    let (all, more, body) = page(String::new()).await;
    assert_eq!(all, seqs);
    assert!(!more);
    let bodies: Vec<&str> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    let expected: Vec<&str> = sent.iter().map(|m| m.1.as_str()).collect();
    assert_eq!(bodies, expected);
    let (all, _, _) = page("?limit=200".into()).await;
    assert_eq!(all, seqs);

    // head_seq is where a client subscribes from to get only new events.
    let mut fresh = app.ws(&cat).await;
    let (subscribed, replay) = fresh.subscribe(&topic, Some(last)).await;
    assert_eq!(subscribed["head_seq"].as_i64().unwrap(), last);
    assert!(replay.is_empty(), "{replay:?}");
    assert_eq!(
        session_as(&app, &owner, session).await["head_seq"].as_i64().unwrap(),
        last
    );

    // Bad requests.
    let history = format!("/api/sessions/{session}/messages");
    for limit in ["0", "201", "-1"] {
        let res = app.get(&format!("{history}?limit={limit}"), &owner.token).await;
        assert_error(&res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    }
    for query in ["limit=abc", "before_seq=abc", "after_seq=1.5"] {
        let res = app.get(&format!("{history}?{query}"), &owner.token).await;
        assert_error(&res, StatusCode::BAD_REQUEST, "invalid_query");
    }
    let res = app
        .get(&format!("/api/sessions/{}/messages", Uuid::new_v4()), &owner.token)
        .await;
    assert_error(&res, StatusCode::NOT_FOUND, "session_not_found");
    let res = app.get(&history, &outsider.token).await;
    assert_error(&res, StatusCode::NOT_FOUND, "session_not_found");
    // A member who does not take part in a private session cannot read it either.
    let res = app.get(&format!("/api/sessions/{private}/messages"), &cat.token).await;
    assert_error(&res, StatusCode::NOT_FOUND, "session_not_found");
    // Any member may read a workspace session's history.
    let (status, body) = app.get(&format!("{history}?limit=1"), &cat.token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["messages"][0]["seq"].as_i64().unwrap(), last);
}

#[actix_web::test]
async fn rest_changes_reach_live_clients_in_seq_order_with_the_messages() {
    let app = spawn_app_with(|c| c.ws_frames_per_second = 1000).await;
    let owner = app.register("owner").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let bob = app.add_member(&owner, ws, "bob", "editor").await;
    let cat = app.add_member(&owner, ws, "cat", "editor").await;
    let (session, topic) = app.create_session(&owner, ws, "workspace").await;

    let mut a = app.ws(&owner).await;
    let (subscribed, _) = a.subscribe(&topic, None).await;
    let start = subscribed["head_seq"].as_i64().unwrap();
    let mut b = app.ws(&bob).await;
    b.subscribe(&topic, Some(start)).await;

    // Socket writes and REST changes at once, none waiting for the others.
    for n in 0..5 {
        a.send(json!({ "type": "send_message", "ref": format!("x{n}"), "topic": topic, "body": format!("early {n}") }))
            .await;
    }
    let (status, body) = patch(
        &app,
        &format!("/api/sessions/{session}"),
        &owner,
        json!({ "title": "Renamed" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for n in 0..5 {
        a.send(json!({ "type": "send_message", "ref": format!("y{n}"), "topic": topic, "body": format!("late {n}") }))
            .await;
    }
    let (status, body) = add_participant(&app, &owner, session, cat.id, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = patch(
        &app,
        &format!("/api/sessions/{session}"),
        &owner,
        json!({ "default_model": "model-z" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The last write's ack: everything is committed now. Keep what `a` read on the way.
    let mut early_frames = answer(&mut a, "y4").await;
    let head = session_as(&app, &owner, session).await["head_seq"].as_i64().unwrap();
    assert_eq!(head, start + 13, "10 messages and 3 REST changes");

    // Both clients see every event once, in seq order, with no gap.
    let db = app.db.client().await;
    let logged: Vec<(i64, String)> = db
        .query(
            "SELECT seq, kind FROM events WHERE topic = $1 AND seq > $2 ORDER BY seq",
            &[&topic, &start],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut seen = Vec::new();
    for client in [&mut a, &mut b] {
        let mut frames = std::mem::take(&mut early_frames);
        if !frames
            .iter()
            .any(|f| f["type"] == "event" && f["seq"].as_i64() == Some(head))
        {
            let rest = client.until(|f| f["type"] == "event" && f["seq"].as_i64() == Some(head));
            frames.extend(within("the last event", rest).await);
        }
        let events: Vec<Value> = frames.into_iter().filter(|f| f["type"] == "event").collect();
        let got: Vec<(i64, String)> = events
            .iter()
            .map(|e| (e["seq"].as_i64().unwrap(), e["kind"].as_str().unwrap().to_owned()))
            .collect();
        let expected: Vec<i64> = ((start + 1)..=head).collect();
        assert_eq!(
            got.iter().map(|e| e.0).collect::<Vec<_>>(),
            expected,
            "consecutive seqs: {got:?}"
        );
        assert_eq!(got, logged, "the same events as the log");
        seen.push(events);
    }
    assert_eq!(seen[0], seen[1], "both clients saw the same frames");

    let events = &seen[0];
    let renamed = events
        .iter()
        .find(|e| e["kind"] == "session.updated" && e["data"]["session"]["title"] == "Renamed")
        .expect("the rename arrived");
    assert_eq!(renamed["actor_id"], json!(owner.id));
    let added = events
        .iter()
        .find(|e| e["kind"] == "participant.added")
        .expect("the new participant arrived");
    assert_eq!(added["data"]["user_id"], json!(cat.id));
    assert_eq!(added["data"]["display_name"], "cat");
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "session.updated" && e["data"]["session"]["default_model"] == "model-z")
    );
    let bodies: Vec<&str> = events
        .iter()
        .filter(|e| e["kind"] == "message.created")
        .map(|e| e["data"]["message"]["body"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (0..5)
        .map(|n| format!("early {n}"))
        .chain((0..5).map(|n| format!("late {n}")))
        .collect();
    assert_eq!(bodies, expected);
}

#[actix_web::test]
async fn invalid_titles_and_malformed_json_change_nothing() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let create_path = format!("/api/workspaces/{ws}/sessions");

    for title in ["x".repeat(201), "   ".to_owned(), String::new()] {
        let res = app
            .post(&create_path, Some(&owner.token), json!({ "title": title }))
            .await;
        assert_error(&res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    }
    let res = app
        .post(
            &create_path,
            Some(&owner.token),
            json!({ "title": "ok", "default_model": "m".repeat(201) }),
        )
        .await;
    assert_error(&res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(app.count("chat_sessions").await, 0);
    assert_eq!(app.count("events WHERE topic LIKE 'session:%'").await, 0);

    // 200 characters is fine.
    let created = create(
        &app,
        &owner,
        ws,
        json!({ "title": "t".repeat(200), "visibility": "private" }),
    )
    .await;
    assert_eq!(created["title"].as_str().unwrap().chars().count(), 200);
    let session = id_of(&created);
    let path = format!("/api/sessions/{session}");
    let events_before = event_count(&app, session).await;

    let res = patch(&app, &path, &owner, json!({ "title": "y".repeat(201) })).await;
    assert_error(&res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    // A valid field next to an invalid one is not applied either.
    let res = patch(&app, &path, &owner, json!({ "title": "", "default_model": "model-b" })).await;
    assert_error(&res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");

    // Malformed JSON, and JSON of the wrong shape.
    let raw = |method: Method, path: &str, body: &'static str| {
        app.http
            .request(method, format!("{}{path}", app.base))
            .bearer_auth(&owner.token)
            .header(CONTENT_TYPE, "application/json")
            .body(body)
    };
    let participants_path = format!("{path}/participants");
    let cases = [
        raw(Method::POST, &create_path, r#"{"title": "#),
        raw(Method::POST, &create_path, r#"{"title": "x", "visibility": "public"}"#),
        raw(Method::PATCH, &path, r#"{"title": "#),
        raw(Method::PATCH, &path, r#"{"title": 5}"#),
        raw(Method::POST, &participants_path, "not json"),
        raw(
            Method::POST,
            &participants_path,
            r#"{"user_id": "00000000-0000-0000-0000-000000000001", "role_override": "superuser"}"#,
        ),
    ];
    for req in cases {
        let res = req.send().await.expect("request sent");
        let status = res.status();
        let body: Value = serde_json::from_str(&res.text().await.unwrap()).expect("a JSON body");
        assert_error(&(status, body), StatusCode::BAD_REQUEST, "invalid_json");
    }

    let db = app.db.client().await;
    let row = db
        .query_one(
            "SELECT title, visibility, default_model, updated_at = created_at FROM chat_sessions WHERE id = $1",
            &[&session],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "t".repeat(200));
    assert_eq!(row.get::<_, String>(1), "private");
    assert_eq!(row.get::<_, Option<String>>(2), None);
    assert!(row.get::<_, bool>(3), "never updated");
    assert_eq!(app.count("chat_sessions").await, 1);
    assert_eq!(app.count("session_participants").await, 1);
    assert_eq!(event_count(&app, session).await, events_before, "no event was written");
}

#[actix_web::test]
async fn no_one_lowers_a_more_senior_member_and_leaving_the_workspace_leaves_its_sessions() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let editor = app.add_member(&owner, ws, "editor", "editor").await;
    let (session, _) = app.create_session(&editor, ws, "private").await;
    // The editor created the session but cannot make the owner a guest in it.
    let demote = app
        .post(
            &format!("/api/sessions/{session}/participants"),
            Some(&editor.token),
            json!({ "user_id": owner.id, "role_override": "guest" }),
        )
        .await;
    assert_error(&demote, StatusCode::FORBIDDEN, "permission_denied");
    // Adding them without an override is fine.
    let (status, _) = app
        .post(
            &format!("/api/sessions/{session}/participants"),
            Some(&editor.token),
            json!({ "user_id": owner.id }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // The editor leaves the workspace: their participation goes with it.
    let (status, _) = app
        .call(
            reqwest::Method::POST,
            &format!("/api/workspaces/{ws}/leave"),
            Some(&editor.token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, participants) = app
        .get(&format!("/api/sessions/{session}/participants"), &owner.token)
        .await;
    let ids: Vec<_> = participants
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["user_id"].clone())
        .collect();
    assert_eq!(ids, vec![json!(owner.id)], "{participants}");
    // And the session's log says so.
    let db = app.db.client().await;
    let reason: String = db
        .query_one(
            "SELECT data->>'reason' FROM events WHERE topic = $1 AND kind = 'participant.removed'",
            &[&format!("session:{session}")],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(reason, "left_workspace");
}
