//! With real node processes: ending a credential on one node closes its sockets on the
//! others, and no credential reaches a node's log.

use super::*;
use crate::common::cluster::Node;
use reqwest::{Method, StatusCode};

#[actix_web::test]
async fn revocation_and_logout_close_sockets_on_every_node() {
    let db = TestDb::new().await;
    let a = Node::start(&db, &[]).await;
    let b = Node::start(&db, &[]).await;
    let owner = a.register("owner").await;
    let (ws_id, id) = artifact(&a, &owner, "Hello").await;
    let (_, topic) = a.create_session(&owner, ws_id, "private").await;
    let (token_id, secret) = token(&a, &owner, id).await;
    // The sockets live on node B; the credentials end on node A.
    let mut editor = b.yclient_with(id, &secret).await;
    let mut other = b.yclient(&owner, id, "write").await;
    let mut socket = b.ws(&owner).await;
    alive(&mut socket, &topic).await;

    let (status, _) = a
        .call(
            Method::DELETE,
            &format!("/api/artifact-tokens/{token_id}"),
            Some(&owner.token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(editor.closed().await, Some(4403));
    // Only that token's socket: the /ws socket still answers.
    alive(&mut socket, &topic).await;

    let (status, _) = a.post("/api/auth/logout", Some(&owner.token), json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(close_code(&mut socket).await, Some(4403));
    assert_eq!(other.closed().await, Some(4403));
}

#[actix_web::test]
async fn no_credential_reaches_the_log() {
    let db = TestDb::new().await;
    // Info level: the access log and every informational line are written.
    let node = Node::start(&db, &["--log", "info"]).await;
    let owner = node.register("owner").await;
    let (ws_id, id) = artifact(&node, &owner, "Hello").await;
    let (_, secret) = token(&node, &owner, id).await;
    let mut editor = node.yclient_with(id, &secret).await;
    editor.append("!").await;
    let ticket = node.ticket(&owner).await;
    let mut socket = {
        let url = format!("ws://127.0.0.1:{}/ws?ticket={ticket}", node.port);
        tokio_tungstenite::connect_async(url).await.unwrap().0
    };
    socket.close(None).await.unwrap();
    // Refused attempts are logged too, with what they presented.
    assert_eq!(
        handshake(
            &node,
            &format!("/ws/artifacts/{id}?token=bca_guessed-{}", "x".repeat(20))
        )
        .await,
        401
    );
    assert_eq!(handshake(&node, &format!("/ws?ticket={ticket}")).await, 401);
    assert_eq!(handshake(&node, "/ws?ticket=not-even-prefixed").await, 401);
    let (status, invitation) = node
        .post(
            &format!("/api/workspaces/{ws_id}/invitations"),
            Some(&owner.token),
            json!({ "email": "friend@example.com", "role": "editor" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{invitation}");
    node.get("/api/me", &owner.token).await;
    let (status, _) = node.post("/api/auth/logout", Some(&owner.token), json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    drop(editor);

    // The fence: a request logged after all of the above.
    let fence = format!("/api/fence-{}", Uuid::new_v4().simple());
    node.call(Method::GET, &fence, None, None).await;
    let mut log = String::new();
    for _ in 0..100 {
        log = node.log.lock().unwrap().join("\n");
        if log.contains(&fence) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(log.contains(&fence), "the access log is written: {log}");
    assert!(
        log.contains(&format!("GET /ws/artifacts/{id}?token=[redacted]")),
        "{log}"
    );
    assert!(log.contains("GET /ws?ticket=[redacted]"), "{log}");
    let invitation_secret = invitation["token"].as_str().unwrap();
    for secret in [
        secret.as_str(),
        ticket.as_str(),
        owner.token.as_str(),
        invitation_secret,
        "not-even-prefixed",
    ] {
        assert!(!log.contains(secret), "{secret} is in the log:\n{log}");
    }
    for prefix in ["bca_", "bcw_", "bcs_", "bci_", "bct_"] {
        assert!(!log.contains(prefix), "a {prefix} secret is in the log:\n{log}");
    }
}
