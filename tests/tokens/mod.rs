//! Issue 11, items 4 and 7: credentials that end (revoked artifact tokens, logout, disabled
//! accounts) close their sockets on every node, no credential reaches a log, the cluster's
//! janitor, artifact audit rows, the `/ws/artifacts` frame limit, large documents.

mod ai;
mod artifacts;
mod cluster;
mod janitor;
mod revocation;

use crate::common::*;
use serde_json::{Value, json};
use uuid::Uuid;

/// An artifact in a new workspace of `owner`, with `content`.
async fn artifact(app: &Api, owner: &User, content: &str) -> (Uuid, Uuid) {
    let ws = app.create_workspace(owner, "Docs").await;
    let (status, body) = app
        .post(
            &format!("/api/workspaces/{ws}/artifacts"),
            Some(&owner.token),
            json!({ "title": "Plan", "content": content }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    (ws, body["id"].as_str().unwrap().parse().unwrap())
}

/// A fresh connect token: (id, secret).
async fn token(app: &Api, user: &User, artifact: Uuid) -> (Uuid, String) {
    let (status, body) = app.artifact_token(user, artifact, "write").await;
    assert_eq!(status, 201, "{body}");
    (
        body["id"].as_str().unwrap().parse().unwrap(),
        body["token"].as_str().unwrap().to_owned(),
    )
}

/// A second login session of `user` (same account, another device).
async fn login(app: &Api, user: &User) -> User {
    let (status, body) = app
        .post(
            "/api/auth/login",
            None,
            json!({ "email": user.email, "password": "correct horse battery" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    User {
        token: body["token"].as_str().unwrap().to_owned(),
        ..user.clone()
    }
}

/// The HTTP status of a WebSocket handshake at `path` (101 when it upgrades).
async fn handshake(app: &Api, path: &str) -> u16 {
    match tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{}{path}", app.port)).await {
        Ok((_, response)) => response.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(err) => panic!("handshake failed oddly: {err}"),
    }
}

/// A `/ws` fence: a subscribe that must be answered (the socket is alive and served).
async fn alive(client: &mut ws::WsClient, topic: &str) {
    client.subscribe(topic, None).await;
}

/// How a `/ws` socket ended: its close code.
async fn close_code(client: &mut ws::WsClient) -> Option<u16> {
    match client.ended().await {
        ws::Ended::Closed(frame) => frame.map(|f| u16::from(f.code)),
        ws::Ended::Error(err) => panic!("socket failed instead of closing: {err}"),
    }
}

fn audit_actions(page: &Value) -> Vec<String> {
    page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect()
}
