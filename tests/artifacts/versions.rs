//! Artifacts over REST and the Rust Yjs client: live edits are durable, versions, diffs,
//! revert during concurrent edits, branches, clean and conflicting merges, permissions.

use crate::common::*;
use serde_json::json;
use uuid::Uuid;

async fn artifact(app: &TestApp, owner: &User, ws: Uuid, content: &str) -> Uuid {
    let (status, body) = app
        .post(
            &format!("/api/workspaces/{ws}/artifacts"),
            Some(&owner.token),
            json!({ "title": "Plan", "kind": "text", "content": content }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["content"], content);
    body["id"].as_str().unwrap().parse().unwrap()
}

async fn save(app: &TestApp, user: &User, id: Uuid, name: &str) -> serde_json::Value {
    let (status, body) = app
        .post(
            &format!("/api/artifacts/{id}/versions"),
            Some(&user.token),
            json!({ "name": name }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body
}

#[actix_web::test]
async fn live_edits_are_committed_and_visible_to_everyone() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let ws = app.create_workspace(&owner, "Docs").await;
    let bob = app.add_member(&owner, ws, "bob", "editor").await;
    let id = artifact(&app, &owner, ws, "Hello").await;

    let mut a = app.yclient(&owner, id, "write").await;
    assert_eq!(a.text(), "Hello", "a late joiner receives the full document");
    let mut b = app.yclient(&bob, id, "write").await;
    a.append(", world").await;
    b.wait_text("Hello, world").await;
    b.insert(0, ">> ").await;
    a.wait_text(">> Hello, world").await;
    // What the clients see is what was committed.
    let mut committed = String::new();
    for _ in 0..100 {
        committed = app.artifact_text(&owner, id).await;
        if committed == ">> Hello, world" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(committed, ">> Hello, world");
}

#[actix_web::test]
async fn read_only_clients_cannot_change_anything() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let ws = app.create_workspace(&owner, "Docs").await;
    let viewer = app.add_member(&owner, ws, "viewer", "viewer").await;
    let id = artifact(&app, &owner, ws, "read me").await;
    // A viewer cannot even get a write token.
    assert_error(
        &app.artifact_token(&viewer, id, "write").await,
        reqwest::StatusCode::FORBIDDEN,
        "permission_denied",
    );
    let mut reader = app.yclient(&viewer, id, "read").await;
    let mut writer = app.yclient(&owner, id, "write").await;
    reader.append(" VANDALISM").await;
    writer.append("!").await;
    // The reader still receives the writer's edit; nobody receives the reader's.
    reader.pump_until(|c| c.text().contains('!')).await;
    writer.settle(std::time::Duration::from_millis(300)).await;
    assert_eq!(writer.text(), "read me!");
    assert_eq!(app.artifact_text(&owner, id).await, "read me!");
}

#[actix_web::test]
async fn versions_diff_and_revert_while_someone_is_typing() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let ws = app.create_workspace(&owner, "Docs").await;
    let bob = app.add_member(&owner, ws, "bob", "editor").await;
    let id = artifact(&app, &owner, ws, "line one\nline two\n").await;
    let v1 = save(&app, &owner, id, "first").await;
    assert_eq!(v1["number"], 1);

    let mut a = app.yclient(&owner, id, "write").await;
    let mut b = app.yclient(&bob, id, "write").await;
    a.append("line three\n").await;
    b.wait_text("line one\nline two\nline three\n").await;
    let v2 = save(&app, &owner, id, "second").await;
    assert_eq!(v2["parent_id"], v1["id"]);

    let (status, page) = app
        .get(&format!("/api/artifacts/{id}/versions?limit=1"), &owner.token)
        .await;
    assert_eq!(status, 200);
    assert_eq!(page.as_array().unwrap().len(), 1);
    assert_eq!(page[0]["name"], "second");
    let (_, older) = app
        .get(&format!("/api/artifacts/{id}/versions?before=2"), &owner.token)
        .await;
    assert_eq!(older[0]["name"], "first");
    let (_, one) = app
        .get(
            &format!("/api/artifacts/{id}/versions/{}", v1["id"].as_str().unwrap()),
            &owner.token,
        )
        .await;
    assert_eq!(one["content"], "line one\nline two\n");

    let (status, diff) = app
        .get(
            &format!(
                "/api/artifacts/{id}/diff?from={}&to={}",
                v1["id"].as_str().unwrap(),
                v2["id"].as_str().unwrap()
            ),
            &owner.token,
        )
        .await;
    assert_eq!(status, 200, "{diff}");
    let text = diff["diff"].as_str().unwrap();
    assert!(text.contains("+line three"), "{text}");
    assert!(text.contains("@@"), "{text}");

    // Bob keeps typing at the top while Ann reverts to version 1: both land.
    b.insert(0, "TITLE\n").await;
    let (status, reverted) = app
        .post(
            &format!("/api/artifacts/{id}/versions/{}/revert", v1["id"].as_str().unwrap()),
            Some(&owner.token),
            json!({}),
        )
        .await;
    assert_eq!(status, 201, "{reverted}");
    assert_eq!(reverted["kind"], "revert");
    b.settle(std::time::Duration::from_millis(300)).await;
    a.settle(std::time::Duration::from_millis(300)).await;
    assert_eq!(a.text(), b.text(), "live editors converge");
    assert!(
        !a.text().contains("line three"),
        "the revert removed what version 2 added: {:?}",
        a.text()
    );
    assert_eq!(app.artifact_text(&owner, id).await, a.text());
}

#[actix_web::test]
async fn branches_merge_cleanly_or_report_every_conflict() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let ws = app.create_workspace(&owner, "Docs").await;
    let id = artifact(&app, &owner, ws, "alpha\nbeta\ngamma\n").await;
    let v1 = save(&app, &owner, id, "base").await;

    let (status, branch) = app
        .post(
            &format!("/api/artifacts/{id}/branches"),
            Some(&owner.token),
            json!({ "version_id": v1["id"], "name": "draft" }),
        )
        .await;
    assert_eq!(status, 201, "{branch}");
    let branch_id: Uuid = branch["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(branch["branch_of"], id.to_string());
    assert_eq!(app.artifact_text(&owner, branch_id).await, "alpha\nbeta\ngamma\n");

    // The branch is its own live document: edit it and the target independently.
    let mut on_branch = app.yclient(&owner, branch_id, "write").await;
    on_branch.append("delta\n").await;
    let mut on_target = app.yclient(&owner, id, "write").await;
    on_target.insert(0, "intro\n").await;
    on_branch.settle(std::time::Duration::from_millis(200)).await;
    on_target.settle(std::time::Duration::from_millis(200)).await;

    let (status, merged) = app
        .post(
            &format!("/api/artifacts/{branch_id}/merge"),
            Some(&owner.token),
            json!({}),
        )
        .await;
    assert_eq!(status, 201, "{merged}");
    assert_eq!(merged["content"], "intro\nalpha\nbeta\ngamma\ndelta\n");
    assert_eq!(merged["version"]["kind"], "merge");
    on_target.wait_text("intro\nalpha\nbeta\ngamma\ndelta\n").await;
    // Merged once; a second merge is refused.
    let again = app
        .post(
            &format!("/api/artifacts/{branch_id}/merge"),
            Some(&owner.token),
            json!({}),
        )
        .await;
    assert_error(&again, reqwest::StatusCode::CONFLICT, "not_a_branch");
    // The body is what the OpenAPI document declares for the merge's 409.
    let doc = app.openapi().await;
    let declared = &doc["paths"]["/api/artifacts/{id}/merge"]["post"]["responses"]["409"]["content"]["application/json"]
        ["schema"]["$ref"];
    let schema = declared.as_str().unwrap().rsplit('/').next().unwrap();
    for field in doc["components"]["schemas"][schema]["required"].as_array().unwrap() {
        let field = field.as_str().unwrap();
        assert!(
            again.1.get(field).is_some(),
            "`{field}` is required by {schema}: {}",
            again.1
        );
    }

    // A conflicting branch: both sides change "beta".
    let v2 = save(&app, &owner, id, "after merge").await;
    let (_, b2) = app
        .post(
            &format!("/api/artifacts/{id}/branches"),
            Some(&owner.token),
            json!({ "version_id": v2["id"], "name": "rival" }),
        )
        .await;
    let b2: Uuid = b2["id"].as_str().unwrap().parse().unwrap();
    let mut rival = app.yclient(&owner, b2, "write").await;
    let pos = rival.text().find("beta").unwrap() as u32;
    rival.insert(pos, "BRANCH-").await;
    let pos = on_target.text().find("beta").unwrap() as u32;
    on_target.insert(pos, "MAIN-").await;
    rival.settle(std::time::Duration::from_millis(200)).await;
    on_target.settle(std::time::Duration::from_millis(200)).await;
    let before = app.artifact_text(&owner, id).await;

    let (status, conflict) = app
        .post(&format!("/api/artifacts/{b2}/merge"), Some(&owner.token), json!({}))
        .await;
    assert_eq!(status, 409, "{conflict}");
    assert_eq!(conflict["code"], "merge_conflict");
    let conflicts = conflict["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 1, "{conflict}");
    assert_eq!(conflicts[0]["base"], "beta\n");
    assert_eq!(conflicts[0]["ours"], "MAIN-beta\n");
    assert_eq!(conflicts[0]["theirs"], "BRANCH-beta\n");
    assert_eq!(
        app.artifact_text(&owner, id).await,
        before,
        "a conflicting merge changes nothing"
    );

    // Resolved explicitly, it goes through.
    let (status, merged) = app
        .post(
            &format!("/api/artifacts/{b2}/merge"),
            Some(&owner.token),
            json!({ "resolutions": [{ "take": "theirs" }] }),
        )
        .await;
    assert_eq!(status, 201, "{merged}");
    assert!(merged["content"].as_str().unwrap().contains("BRANCH-beta\n"));
    assert!(!merged["content"].as_str().unwrap().contains("MAIN-beta"));
    on_target.wait_text(merged["content"].as_str().unwrap()).await;
}

#[actix_web::test]
async fn artifact_rest_checks_permissions_and_input() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let ws = app.create_workspace(&owner, "Docs").await;
    let viewer = app.add_member(&owner, ws, "viewer", "viewer").await;
    let stranger = app.register("stranger").await;
    let id = artifact(&app, &owner, ws, "x").await;
    let create = app
        .post(
            &format!("/api/workspaces/{ws}/artifacts"),
            Some(&viewer.token),
            json!({ "title": "Mine" }),
        )
        .await;
    assert_error(&create, reqwest::StatusCode::FORBIDDEN, "permission_denied");
    assert_eq!(app.get(&format!("/api/artifacts/{id}"), &viewer.token).await.0, 200);
    assert_error(
        &app.get(&format!("/api/artifacts/{id}"), &stranger.token).await,
        reqwest::StatusCode::NOT_FOUND,
        "artifact_not_found",
    );
    let bad = app
        .post(
            &format!("/api/workspaces/{ws}/artifacts"),
            Some(&owner.token),
            json!({ "title": "", "kind": "text" }),
        )
        .await;
    assert_error(&bad, reqwest::StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let bad_kind = app
        .post(
            &format!("/api/workspaces/{ws}/artifacts"),
            Some(&owner.token),
            json!({ "title": "t", "kind": "Not A Kind!" }),
        )
        .await;
    assert_error(
        &bad_kind,
        reqwest::StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    assert_eq!(app.count("artifacts").await, 1);
    let save = app
        .post(
            &format!("/api/artifacts/{id}/versions"),
            Some(&viewer.token),
            json!({ "name": "v" }),
        )
        .await;
    assert_error(&save, reqwest::StatusCode::FORBIDDEN, "permission_denied");

    // Removing the viewer closes their live socket.
    let mut live = app.yclient(&viewer, id, "read").await;
    let (status, _) = app
        .call(
            reqwest::Method::DELETE,
            &format!("/api/workspaces/{ws}/members/{}", viewer.id),
            Some(&owner.token),
            None,
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(live.closed().await, Some(4403), "access revoked closes the live socket");
    // And no new token is handed out.
    let (status, _) = app.artifact_token(&viewer, id, "read").await;
    assert_eq!(status, 404);
}

#[actix_web::test]
async fn a_json_subscriber_sees_the_durable_watermark_after_commits() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let ws = app.create_workspace(&owner, "Docs").await;
    let outsider = app.register("outsider").await;
    let id = artifact(&app, &owner, ws, "").await;

    let mut watcher = app.ws(&owner).await;
    watcher
        .send(json!({ "type": "subscribe", "ref": "w", "topic": format!("artifact:{id}") }))
        .await;
    let subscribed = watcher.next_of("subscribed").await;
    assert_eq!(subscribed["head_seq"], 0);
    let mut editor = app.yclient(&owner, id, "write").await;
    editor.append("saved text").await;
    let saved = watcher.next_of("saved").await;
    let seq = saved["seq"].as_i64().unwrap();
    assert!(seq >= 1);
    // "Saved" means saved: the committed document already holds the edit.
    let (_, body) = app.get(&format!("/api/artifacts/{id}"), &owner.token).await;
    assert_eq!(body["content"], "saved text");
    assert!(body["seq"].as_i64().unwrap() >= seq);

    // Someone outside the workspace cannot watch it.
    let mut stranger = app.ws(&outsider).await;
    stranger
        .send(json!({ "type": "subscribe", "ref": "s", "topic": format!("artifact:{id}") }))
        .await;
    assert_eq!(stranger.next().await["code"], "artifact_not_found");
}

#[actix_web::test]
async fn a_json_watcher_who_loses_access_is_cut_off() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let ws = app.create_workspace(&owner, "Docs").await;
    let viewer = app.add_member(&owner, ws, "viewer", "viewer").await;
    let id = artifact(&app, &owner, ws, "").await;
    let topic = format!("artifact:{id}");

    let mut watcher = app.ws(&viewer).await;
    watcher
        .send(json!({ "type": "subscribe", "ref": "w", "topic": topic }))
        .await;
    watcher.next_of("subscribed").await;
    let mut owners = app.ws(&owner).await;
    owners
        .send(json!({ "type": "subscribe", "ref": "o", "topic": topic }))
        .await;
    owners.next_of("subscribed").await;
    let (status, _) = app
        .call(
            reqwest::Method::DELETE,
            &format!("/api/workspaces/{ws}/members/{}", viewer.id),
            Some(&owner.token),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let revoked = watcher.next_of("error").await;
    assert_eq!(
        (revoked["code"].as_str(), revoked["topic"].as_str()),
        (Some("access_revoked"), Some(topic.as_str()))
    );

    // The subscription is gone: an edit (saved, as the owner's watcher sees) sends it no
    // `saved`, and unsubscribing says so.
    let mut editor = app.yclient(&owner, id, "write").await;
    editor.append("after the removal").await;
    owners.next_of("saved").await;
    watcher
        .send(json!({ "type": "unsubscribe", "ref": "u", "topic": topic }))
        .await;
    let answer = watcher.until(|f| f["ref"] == "u").await;
    assert!(answer.iter().all(|f| f["type"] != "saved"), "{answer:?}");
    assert_eq!(answer.last().unwrap()["code"], "not_subscribed", "{answer:?}");
}

#[actix_web::test]
async fn the_update_log_is_compacted_into_a_snapshot_and_still_loads() {
    let app = spawn_app_with(|c| {
        c.ws_frames_per_second = 10_000;
        // 260 edits as fast as the client can send them.
        c.ws_artifact_frames_per_second = 10_000;
    })
    .await;
    let owner = app.register("owner").await;
    let ws = app.create_workspace(&owner, "Docs").await;
    let id = artifact(&app, &owner, ws, "").await;
    let mut editor = app.yclient(&owner, id, "write").await;
    let mut expected = String::new();
    for i in 0..260 {
        let chunk = format!("{i},");
        editor.append(&chunk).await;
        expected.push_str(&chunk);
    }
    let db = app.db.client().await;
    let topic = format!("artifact:{id}");
    let mut snapshot: Option<i64> = None;
    for _ in 0..100 {
        snapshot = db
            .query_opt("SELECT upto_seq FROM artifact_snapshots WHERE artifact_id = $1", &[&id])
            .await
            .unwrap()
            .map(|r| r.get(0));
        if snapshot.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let upto = snapshot.expect("a snapshot was written");
    let left: i64 = db
        .query_one(
            "SELECT count(*) FROM events WHERE topic = $1 AND seq <= $2",
            &[&topic, &upto],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "the updates the snapshot covers are gone from the log");
    // Loading from snapshot + remaining log gives the whole document.
    let mut text = String::new();
    for _ in 0..100 {
        text = app.artifact_text(&owner, id).await;
        if text == expected {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(text, expected);
    // And a fresh client gets it all too.
    let late = app.yclient(&owner, id, "read").await;
    assert_eq!(late.text(), expected);
}

#[actix_web::test]
async fn an_oversize_frame_closes_the_artifact_socket_with_1009() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let ws = app.create_workspace(&owner, "Docs").await;
    let id = artifact(&app, &owner, ws, "Hello").await;
    let mut client = app.yclient(&owner, id, "write").await;
    // Beyond the artifact socket's frame limit (at least 1 MiB): "message too big", as documented.
    client.send_binary(vec![0u8; 2 << 20]).await;
    assert_eq!(client.closed().await, Some(1009));
    assert_eq!(app.artifact_text(&owner, id).await, "Hello", "nothing was applied");
}
