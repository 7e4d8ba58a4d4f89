//! Cluster tests: real server processes on one database. Clients on any node see the same
//! events in the same order; nodes die (SIGKILL), listeners get cut, nodes shut down, and
//! nothing acknowledged is lost or doubled.

mod clock;
mod lease;
mod restart;

use crate::common::cluster::{LEASE_MS, Node};
use crate::common::ws::{Ended, WsClient};
use crate::common::*;
use serde_json::{Value, json};
use std::time::Duration;

/// A workspace with an owner and `n` editors, and one workspace-visible session.
async fn team(node: &Node, n: usize) -> (Vec<User>, String) {
    let owner = node.register("owner").await;
    let ws = node.create_workspace(&owner, "Cluster").await;
    let mut users = vec![owner.clone()];
    for i in 0..n {
        users.push(node.add_member(&owner, ws, &format!("member{i}"), "editor").await);
    }
    let (_, topic) = node.create_session(&owner, ws, "workspace").await;
    (users, topic)
}

fn created(frames: &[Value]) -> Vec<(i64, String)> {
    frames
        .iter()
        .filter(|f| f["type"] == "event" && f["kind"] == "message.created")
        .map(|f| {
            (
                f["seq"].as_i64().unwrap(),
                f["data"]["message"]["body"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn collect(client: &mut WsClient, n: usize) -> Vec<(i64, String)> {
    let mut got = Vec::new();
    while got.len() < n {
        let frame = client.next().await;
        got.extend(created(&[frame]));
    }
    got
}

#[actix_web::test]
async fn clients_on_three_nodes_agree_on_content_and_order() {
    let db = TestDb::new().await;
    let nodes = [
        Node::start(&db, &[]).await,
        Node::start(&db, &[]).await,
        Node::start(&db, &[]).await,
    ];
    let (users, topic) = team(&nodes[0], 2).await;
    let mut clients = Vec::new();
    for (node, user) in nodes.iter().zip(&users) {
        let mut c = node.ws(user).await;
        c.subscribe(&topic, Some(0)).await;
        clients.push(c);
    }
    for (i, c) in clients.iter_mut().enumerate() {
        for n in 0..15 {
            let frame = json!({ "type": "send_message", "ref": format!("{i}.{n}"), "topic": topic, "body": format!("node {i} says {n}") });
            c.send(frame).await;
        }
    }
    // Every event (messages, and the participant joins the first messages cause), as seen
    // through each node.
    let mut seen = Vec::new();
    for c in clients.iter_mut() {
        let mut events: Vec<Value> = Vec::new();
        while created(&events).len() < 45 {
            let f = c.next().await;
            if f["type"] == "event" {
                events.push(f);
            }
        }
        seen.push(
            events
                .iter()
                .map(|f| (f["seq"].as_i64().unwrap(), f["kind"].clone(), f["data"].clone()))
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(seen[0], seen[1], "node 0 and node 1 disagree");
    assert_eq!(seen[1], seen[2], "node 1 and node 2 disagree");
    assert!(
        seen[0].windows(2).all(|w| w[1].0 == w[0].0 + 1),
        "gap-free: {:?}",
        seen[0]
    );
}

#[actix_web::test]
async fn presence_and_typing_cross_nodes() {
    let db = TestDb::new().await;
    let (n1, n2) = (Node::start(&db, &[]).await, Node::start(&db, &[]).await);
    let (users, topic) = team(&n1, 1).await;
    let mut a = n1.ws(&users[0]).await;
    a.subscribe(&topic, None).await;
    let mut b = n2.ws(&users[1]).await;
    let (snapshot, _) = b.subscribe(&topic, None).await;
    let present: Vec<_> = snapshot["presence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["user_id"].clone())
        .collect();
    assert!(
        present.contains(&json!(users[0].id)),
        "b sees a (on the other node) at once: {snapshot}"
    );
    let join = a.next_of("presence").await;
    assert_eq!(join["joins"][0]["user_id"], json!(users[1].id));

    b.send(json!({ "type": "typing", "topic": topic })).await;
    let typing = a.next_of("typing").await;
    assert_eq!(
        (typing["user_id"].clone(), typing["typing"].clone()),
        (json!(users[1].id), json!(true))
    );

    drop(b);
    let leave = a
        .until(|f| f["type"] == "presence" && !f["leaves"].as_array().unwrap().is_empty())
        .await
        .pop()
        .unwrap();
    assert_eq!(leave["leaves"], json!([users[1].id]));
}

#[actix_web::test]
async fn a_killed_nodes_clients_resume_elsewhere_and_its_presence_goes() {
    let db = TestDb::new().await;
    let (n1, n2) = (Node::start(&db, &[]).await, Node::start(&db, &[]).await);
    let (users, topic) = team(&n1, 1).await;
    let mut a = n1.ws(&users[0]).await;
    a.subscribe(&topic, Some(0)).await;
    let mut b = n2.ws(&users[1]).await;
    b.subscribe(&topic, Some(0)).await;
    a.next_of("presence").await; // b joined
    let last_b_saw = b.say(&topic, "before the crash", "x").await;
    collect(&mut a, 1).await;

    n2.kill().await;
    // While b's node is dead, a keeps talking.
    for n in 0..20 {
        a.send(json!({ "type": "send_message", "ref": format!("m{n}"), "topic": topic, "body": format!("while down {n}") }))
            .await;
    }
    let sent = collect(&mut a, 20).await;
    // b's presence is removed once the dead node's lease runs out.
    let leave = tokio::time::timeout(
        Duration::from_millis(LEASE_MS * 10),
        a.until(|f| f["type"] == "presence" && f["leaves"] == json!([users[1].id])),
    )
    .await
    .expect("the dead node's presence is removed");
    assert!(!leave.is_empty());

    // b reconnects to the surviving node and resumes from its last seq: nothing lost.
    let mut b = n1.ws(&users[1]).await;
    let (_, replay) = b.subscribe(&topic, Some(last_b_saw)).await;
    assert_eq!(created(&replay), sent);
}

#[actix_web::test]
async fn a_lost_listener_catches_up_with_nothing_lost_or_doubled() {
    let db = TestDb::new().await;
    let (n1, n2) = (Node::start(&db, &[]).await, Node::start(&db, &[]).await);
    let (users, topic) = team(&n1, 1).await;
    let mut a = n1.ws(&users[0]).await;
    a.subscribe(&topic, Some(0)).await;
    let mut b = n2.ws(&users[1]).await;
    b.subscribe(&topic, Some(0)).await;
    b.say(&topic, "warm-up", "w").await;
    collect(&mut a, 1).await;

    // Cut every node's listener connection, then keep writing through node 2.
    let admin = db.client().await;
    let cut: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name LIKE 'bedda-collab-listener-%' AND datname = current_database()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(cut, 2);
    for n in 0..30 {
        b.send(json!({ "type": "send_message", "ref": format!("m{n}"), "topic": topic, "body": format!("during the cut {n}") }))
            .await;
    }
    // (The warm-up's own event may still be queued behind its ack: keep to this batch.)
    let during = |got: Vec<(i64, String)>| {
        got.into_iter()
            .filter(|(_, b)| b.starts_with("during"))
            .collect::<Vec<_>>()
    };
    let mut on_b = Vec::new();
    while on_b.len() < 30 {
        on_b.extend(during(collect(&mut b, 1).await));
    }
    let mut on_a = Vec::new();
    while on_a.len() < 30 {
        on_a.extend(during(collect(&mut a, 1).await));
    }
    assert_eq!(on_a, on_b, "node 1's client got every message once, in order");
    // And nothing extra arrives later (no duplicates after catch-up).
    let last = b.say(&topic, "after", "z").await;
    let next = a.until(|f| f["type"] == "event").await.pop().unwrap();
    assert_eq!(next["seq"].as_i64().unwrap(), last);
    // The listeners are back: one per node (a terminated backend may linger a moment).
    let mut listening = 0;
    for _ in 0..50 {
        listening = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'bedda-collab-listener-%' \
                 AND datname = current_database() AND state IS NOT NULL",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0);
        if listening == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(listening, 2);
}

#[actix_web::test]
async fn a_large_event_crosses_nodes() {
    let db = TestDb::new().await;
    let (n1, n2) = (Node::start(&db, &[]).await, Node::start(&db, &[]).await);
    let (users, topic) = team(&n1, 1).await;
    let mut a = n1.ws(&users[0]).await;
    a.subscribe(&topic, None).await;
    let mut b = n2.ws(&users[1]).await;
    b.subscribe(&topic, None).await;
    // Well over the 8000-byte NOTIFY limit (and with characters JSON must escape).
    let body: String = "Große \"Nachricht\" ".repeat(700);
    assert!(body.len() > 12_000);
    let seq = b.say(&topic, &body, "big").await;
    let got = a.until(|f| f["kind"] == "message.created").await.pop().unwrap();
    assert_eq!(got["seq"].as_i64().unwrap(), seq);
    assert_eq!(got["data"]["message"]["body"].as_str().unwrap(), body.as_str());
}

#[actix_web::test]
async fn nodes_are_listed_and_a_terminated_node_leaves_cleanly() {
    let db = TestDb::new().await;
    let admin_email = "root@example.com";
    let flags = ["--admin-emails", admin_email];
    let (n1, n2) = (Node::start(&db, &flags).await, Node::start(&db, &flags).await);
    let (users, topic) = team(&n1, 1).await;
    let (status, root) = n1
        .post(
            "/api/auth/register",
            None,
            json!({ "email": admin_email, "password": "correct horse battery", "display_name": "Root" }),
        )
        .await;
    assert_eq!(status, 201, "{root}");
    let root_token = root["token"].as_str().unwrap().to_owned();
    // Non-admins are refused.
    assert_error(
        &n1.get("/api/admin/nodes", &users[0].token).await,
        reqwest::StatusCode::FORBIDDEN,
        "permission_denied",
    );

    let mut a = n1.ws(&users[0]).await;
    a.subscribe(&topic, None).await;
    let mut b = n2.ws(&users[1]).await;
    b.subscribe(&topic, None).await;
    a.next_of("presence").await;

    // Both nodes are listed, each with its connection count (as of its last heartbeat).
    let mut listed = Vec::new();
    for _ in 0..100 {
        let (status, nodes) = n1.get("/api/admin/nodes", &root_token).await;
        assert_eq!(status, 200, "{nodes}");
        listed = nodes.as_array().unwrap().clone();
        if listed.len() == 2 && listed.iter().all(|n| n["connections"] == 1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed.iter().all(|n| n["connections"] == 1), "{listed:?}");

    // SIGTERM node 2: its client is told to move (1012), its presence goes at once.
    let closing = tokio::spawn(async move { b.ended().await });
    let (status, _) = n2.terminate().await;
    assert!(status.success(), "clean exit: {status:?}");
    match closing.await.unwrap() {
        Ended::Closed(Some(frame)) => assert_eq!(u16::from(frame.code), 1012),
        other => panic!("expected a 1012 close, got {other:?}"),
    }
    let leave = a.until(|f| f["type"] == "presence").await.pop().unwrap();
    assert_eq!(leave["leaves"], json!([users[1].id]));
    let (_, nodes) = n1.get("/api/admin/nodes", &root_token).await;
    assert_eq!(nodes.as_array().unwrap().len(), 1, "{nodes}");
}

#[actix_web::test]
async fn a_node_paused_past_its_lease_rejoins_as_a_fresh_node() {
    let db = TestDb::new().await;
    let (n1, n2) = (Node::start(&db, &[]).await, Node::start(&db, &[]).await);
    let (users, topic) = team(&n1, 1).await;
    let mut a = n1.ws(&users[0]).await;
    a.subscribe(&topic, None).await;
    let mut b = n2.ws(&users[1]).await;
    b.subscribe(&topic, None).await;
    a.next_of("presence").await;

    // Freeze node 2 well past its lease: the survivor declares it dead.
    n2.signal("STOP");
    let leave = tokio::time::timeout(
        Duration::from_millis(LEASE_MS * 10),
        a.until(|f| f["type"] == "presence" && f["leaves"] == json!([users[1].id])),
    )
    .await
    .expect("the frozen node's presence is removed");
    assert!(!leave.is_empty());

    // When it wakes it must not act on its dead lease: its clients are sent elsewhere
    // (1012) and it registers afresh.
    n2.signal("CONT");
    match b.ended().await {
        Ended::Closed(Some(frame)) => assert_eq!(u16::from(frame.code), 1012),
        other => panic!("expected a 1012 close, got {other:?}"),
    }
    let client = db.client().await;
    let mut live = 0;
    for _ in 0..100 {
        live = client
            .query_one("SELECT count(*) FROM nodes WHERE lease_expires_at > now()", &[])
            .await
            .unwrap()
            .get::<_, i64>(0);
        if live == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(live, 2, "the woken node is back in the registry");
    // And it serves again: a fresh connection through it works end to end.
    let mut b = n2.ws(&users[1]).await;
    b.subscribe(&topic, None).await;
    let seq = b.say(&topic, "back again", "again").await;
    let got = a.until(|f| f["kind"] == "message.created").await.pop().unwrap();
    assert_eq!(got["seq"].as_i64().unwrap(), seq);
}

#[actix_web::test]
async fn the_dashboard_is_served_and_its_data_needs_an_administrator() {
    let app = spawn_app_with(|c| c.admin_emails = vec!["root@example.com".into()]).await;
    let page = app.http.get(format!("{}/", app.base)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("/api/admin/nodes") && html.contains("/api/auth/login"));
    // What the page shows: this node, with its lease, for an administrator only.
    let (status, root) = app
        .post(
            "/api/auth/register",
            None,
            json!({ "email": "root@example.com", "password": "correct horse battery", "display_name": "Root" }),
        )
        .await;
    assert_eq!(status, 201);
    let (status, nodes) = app.get("/api/admin/nodes", root["token"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{nodes}");
    assert_eq!(nodes.as_array().unwrap().len(), 1);
    let someone = app.register("someone").await;
    assert_error(
        &app.get("/api/admin/nodes", &someone.token).await,
        reqwest::StatusCode::FORBIDDEN,
        "permission_denied",
    );
}

#[actix_web::test]
async fn a_port_in_use_names_the_address_and_the_flag() {
    let db = TestDb::new().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_bedda-collab"))
        .args(["serve", "--bind", &address, "--database-url", &db.url, "--log", "warn"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success(), "the server cannot start on a taken port");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&address) && stderr.contains("--bind") && stderr.contains("in use"),
        "{stderr}"
    );
}
