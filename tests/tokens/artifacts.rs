//! Artifact changes are audited; `/ws/artifacts` limits frames per second; a document larger
//! than the outbound buffer still opens.

use super::*;
use reqwest::Method;

#[actix_web::test]
async fn versions_reverts_branches_merges_and_deletes_are_audited() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let (ws_id, id) = artifact(&app, &owner, "one\n").await;
    let (status, v1) = app
        .post(
            &format!("/api/artifacts/{id}/versions"),
            Some(&owner.token),
            json!({ "name": "v1" }),
        )
        .await;
    assert_eq!(status, 201, "{v1}");
    let (status, branch) = app
        .post(
            &format!("/api/artifacts/{id}/branches"),
            Some(&owner.token),
            json!({ "version_id": v1["id"], "name": "idea" }),
        )
        .await;
    assert_eq!(status, 201, "{branch}");
    let branch_id = branch["id"].as_str().unwrap();
    let (status, merged) = app
        .post(
            &format!("/api/artifacts/{branch_id}/merge"),
            Some(&owner.token),
            json!({}),
        )
        .await;
    assert_eq!(status, 201, "{merged}");
    let (status, reverted) = app
        .post(
            &format!("/api/artifacts/{id}/versions/{}/revert", v1["id"].as_str().unwrap()),
            Some(&owner.token),
            json!({}),
        )
        .await;
    assert_eq!(status, 201, "{reverted}");
    let (status, _) = app
        .call(
            Method::DELETE,
            &format!("/api/artifacts/{id}"),
            Some(&owner.token),
            None,
        )
        .await;
    assert_eq!(status, 204);

    let (status, page) = app.get(&format!("/api/workspaces/{ws_id}/audit"), &owner.token).await;
    assert_eq!(status, 200, "{page}");
    let actions = audit_actions(&page);
    let artifact_actions: Vec<&str> = actions
        .iter()
        .map(String::as_str)
        .filter(|a| a.starts_with("artifact."))
        .collect();
    assert_eq!(
        artifact_actions,
        [
            "artifact.delete",
            "artifact.revert",
            "artifact.merge",
            "artifact.branch",
            "artifact.version"
        ],
        "newest first: {page:#}"
    );
    let entries = page["entries"].as_array().unwrap();
    let find = |name: &str| entries.iter().find(|e| e["action"] == name).unwrap();
    assert_eq!(find("artifact.version")["target_id"], id.to_string());
    assert_eq!(find("artifact.version")["details"]["name"], "v1");
    assert_eq!(find("artifact.branch")["target_id"], branch_id);
    assert_eq!(find("artifact.branch")["details"]["from"], id.to_string());
    assert_eq!(find("artifact.merge")["details"]["into"], id.to_string());
    assert_eq!(find("artifact.merge")["details"]["version"], merged["version"]["id"]);
    assert_eq!(find("artifact.revert")["details"]["to_version"], v1["id"]);
    assert_eq!(find("artifact.delete")["details"]["branches"], json!([branch_id]));
    assert_eq!(find("artifact.delete")["actor_user_id"], owner.id.to_string());
}

#[actix_web::test]
async fn too_many_frames_on_an_artifact_socket_close_it_with_4429() {
    let app = spawn_app_with(|c| c.ws_artifact_frames_per_second = 5).await;
    let owner = app.register("owner").await;
    let (_, id) = artifact(&app, &owner, "").await;
    let mut calm = app.yclient(&owner, id, "write").await;
    let mut flood = app.yclient(&owner, id, "write").await;
    for i in 0..40 {
        flood.append(&i.to_string()).await;
    }
    assert_eq!(flood.closed().await, Some(4429));
    // The calm client is not affected: its edit goes through and is committed.
    calm.append("!").await;
    let mut committed = String::new();
    for _ in 0..100 {
        committed = app.artifact_text(&owner, id).await;
        if committed.contains('!') {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(committed.contains('!'), "{committed}");
}

#[actix_web::test]
async fn a_document_larger_than_the_outbound_buffer_opens() {
    let app = spawn_app_with(|c| c.ws_outbound_buffer_bytes = 16 * 1024).await;
    let owner = app.register("owner").await;
    let content = "all work and no play makes a large document\n".repeat(1_200);
    assert!(content.len() > 3 * 16 * 1024);
    let (_, id) = artifact(&app, &owner, &content).await;
    // A fresh client gets the whole document, then live edits as usual.
    let mut fresh = app.yclient(&owner, id, "write").await;
    assert_eq!(fresh.text(), content);
    let mut other = app.yclient(&owner, id, "write").await;
    other.insert(0, "# Title\n").await;
    fresh.wait_text(&format!("# Title\n{content}")).await;
}
