//! Connection health and safety: auth and origin at the handshake, malformed frames, rate
//! limits, heartbeat, slow readers, permissions per action, revocation, idle actors.

use crate::common::ws::Ended;
use crate::common::*;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

fn close_code(ended: &Ended) -> Option<u16> {
    match ended {
        Ended::Closed(Some(frame)) => Some(frame.code.into()),
        _ => None,
    }
}

#[actix_web::test]
async fn handshake_needs_credentials_and_an_allowed_origin() {
    let app = spawn_app().await;
    let user = app.register("ann").await;
    let url = format!("ws://127.0.0.1:{}/ws", app.port);
    let refused = |res: Result<_, tokio_tungstenite::tungstenite::Error>| match res {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("connection should be refused"),
    };
    assert_eq!(refused(tokio_tungstenite::connect_async(url.clone()).await), 401);
    assert_eq!(
        refused(tokio_tungstenite::connect_async(format!("{url}?ticket=bcw_forged")).await),
        401
    );

    // A ticket works once.
    let ticket = app.ticket(&user).await;
    let first = tokio_tungstenite::connect_async(format!("{url}?ticket={ticket}")).await;
    assert!(first.is_ok());
    assert_eq!(
        refused(tokio_tungstenite::connect_async(format!("{url}?ticket={ticket}")).await),
        401
    );

    // A page on another site cannot open a socket with the user's credentials.
    let ticket = app.ticket(&user).await;
    let mut request = format!("{url}?ticket={ticket}").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Origin", "https://evil.example".parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 403);
            let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned();
            assert!(
                body.contains("origin_not_allowed") && body.contains("--allowed-origins"),
                "{body}"
            );
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("a foreign origin is refused"),
    }
    // The configured origin may, and so may the other spelling of loopback.
    let mut request = format!("{url}?ticket={ticket}").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Origin", "http://localhost:8080".parse().unwrap());
    assert!(tokio_tungstenite::connect_async(request).await.is_ok());
    let ticket = app.ticket(&user).await;
    let mut request = format!("{url}?ticket={ticket}").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Origin", "http://127.0.0.1:8080".parse().unwrap());
    assert!(tokio_tungstenite::connect_async(request).await.is_ok());

    // Non-browser clients may use the Authorization header.
    let mut request = url.clone().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Authorization", format!("Bearer {}", user.token).parse().unwrap());
    assert!(tokio_tungstenite::connect_async(request).await.is_ok());
}

#[actix_web::test]
async fn malformed_frames_get_errors_and_the_connection_survives() {
    let app = spawn_app().await;
    let user = app.register("ann").await;
    let mut c = app.ws(&user).await;
    c.send_raw(Message::Text("this is not json".into())).await;
    let err = c.next().await;
    assert_eq!(err["type"], "error");
    assert_eq!(err["code"], "invalid_frame");
    c.send(json!({ "type": "teleport", "ref": "t1" })).await;
    let err = c.next().await;
    assert_eq!(
        (err["code"].as_str(), err["ref"].as_str()),
        (Some("invalid_frame"), Some("t1"))
    );
    c.send(json!({ "type": "subscribe", "ref": "t2", "topic": "galaxy:far-away" }))
        .await;
    assert_eq!(c.next().await["code"], "unknown_topic");
    // A kind that keeps actors but whose events live on session topics is no topic either,
    // and the error offers only what can be subscribed to.
    let proposal = format!("proposal:{}", uuid::Uuid::new_v4());
    c.send(json!({ "type": "subscribe", "ref": "t2b", "topic": proposal }))
        .await;
    let err = c.next().await;
    assert_eq!(err["code"], "unknown_topic", "{err}");
    let message = err["message"].as_str().unwrap();
    assert!(
        message.contains("session:<uuid>") && !message.contains("proposal:"),
        "{message}"
    );
    c.send(json!({ "type": "subscribe", "ref": "t3", "topic": format!("session:{}", uuid::Uuid::new_v4()) }))
        .await;
    assert_eq!(c.next().await["code"], "session_not_found");
    c.send(json!({ "type": "send_message", "ref": "t4", "topic": format!("session:{}", uuid::Uuid::new_v4()), "body": "hi" }))
        .await;
    assert_eq!(c.next().await["code"], "not_subscribed");
    c.send(json!({ "type": "ping", "ref": "alive" })).await;
    let pong = c.next().await;
    assert_eq!(
        (pong["type"].as_str(), pong["ref"].as_str()),
        (Some("pong"), Some("alive"))
    );

    // Binary is not part of the protocol: the connection is closed with a code.
    c.send_raw(Message::Binary(vec![1, 2, 3].into())).await;
    assert_eq!(close_code(&c.ended().await), Some(4400));
}

#[actix_web::test]
async fn oversized_frames_and_messages_are_refused() {
    let app = spawn_app_with(|c| c.ws_max_frame_bytes = 20_000).await;
    let owner = app.register("owner").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let (session, topic) = app.create_session(&owner, ws, "private").await;
    let mut c = app.ws(&owner).await;
    c.subscribe(&topic, None).await;
    // A message longer than allowed (but within the frame limit): coded error, nothing stored.
    c.send(json!({ "type": "send_message", "ref": "long", "topic": topic, "body": "x".repeat(16_001) }))
        .await;
    let err = c.until(|f| f["ref"] == "long").await.pop().unwrap();
    assert_eq!(err["code"], "validation_failed");
    let db = app.db.client().await;
    let n: i64 = db
        .query_one("SELECT count(*) FROM messages WHERE session_id = $1", &[&session])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    // A frame beyond the frame limit ends the connection (1009: message too big).
    c.send(json!({ "type": "ping", "ref": "y".repeat(30_000) })).await;
    assert_eq!(close_code(&c.ended().await), Some(1009));
}

#[actix_web::test]
async fn flooding_a_connection_is_rate_limited_with_a_coded_error() {
    let app = spawn_app_with(|c| c.ws_frames_per_second = 2).await;
    let user = app.register("ann").await;
    let mut c = app.ws(&user).await;
    for n in 0..10 {
        c.send(json!({ "type": "ping", "ref": format!("p{n}") })).await;
    }
    let mut limited = 0;
    let mut answered = 0;
    for _ in 0..10 {
        let f = c.next().await;
        if f["code"] == "rate_limited" {
            limited += 1;
        } else {
            answered += 1;
        }
    }
    assert!(limited > 0 && answered > 0, "{limited} limited, {answered} answered");
}

#[actix_web::test]
async fn a_silent_client_is_dropped() {
    let app = spawn_app_with(|c| {
        c.ws_heartbeat_ms = 50;
        c.ws_client_timeout_ms = 200;
    })
    .await;
    let user = app.register("ann").await;
    let mut c = app.ws(&user).await;
    // Do not read (so no pongs go back) for a while.
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let ended = c.ended().await;
    assert!(matches!(ended, Ended::Closed(_) | Ended::Error(_)), "{ended:?}");
    assert_eq!(app.state.connections.count(), 0);
}

#[actix_web::test]
async fn a_slow_reader_is_cut_off_while_a_fast_one_gets_everything() {
    use futures_util::{SinkExt, StreamExt};
    let app = spawn_app_with(|c| {
        c.ws_outbound_buffer_bytes = 1024 * 1024;
        c.ws_frames_per_second = 10_000;
    })
    .await;
    let owner = app.register("owner").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let slow_user = app.add_member(&owner, ws, "slow", "viewer").await;
    let fast_user = app.add_member(&owner, ws, "fast", "viewer").await;
    let (_, topic) = app.create_session(&owner, ws, "workspace").await;

    let mut slow = app.ws_small_buffer(&slow_user).await;
    slow.subscribe(&topic, None).await;
    let mut fast = app.ws(&fast_user).await;
    fast.subscribe(&topic, None).await;
    let mut writer = app.ws(&owner).await;
    writer.subscribe(&topic, None).await;

    // About 6 MB of messages; the slow client reads none of it meanwhile, the fast one
    // (and the writer) read as they go.
    let n = 1500;
    let reader = actix_web::rt::spawn(async move {
        let mut seqs = Vec::new();
        while seqs.len() < n {
            let f = fast.next().await;
            if f["kind"] == "message.created" {
                seqs.push(f["seq"].as_i64().unwrap());
            }
        }
        seqs
    });
    let (mut sink, mut stream) = writer.stream.split();
    let drain = actix_web::rt::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
    let body = "z".repeat(4000);
    for i in 0..n {
        let frame = json!({ "type": "send_message", "ref": format!("w{i}"), "topic": topic, "body": body });
        sink.send(Message::Text(frame.to_string().into())).await.unwrap();
    }
    let seqs = tokio::time::timeout(std::time::Duration::from_secs(60), reader)
        .await
        .expect("fast reader done")
        .unwrap();
    assert_eq!(seqs.len(), n);
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "every message, in order, no gap"
    );
    drain.abort();
    // The slow one, when it finally reads, finds it was disconnected with the documented code.
    assert_eq!(close_code(&slow.ended().await), Some(4008));
}

#[actix_web::test]
async fn every_action_checks_the_participants_permissions() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let guest = app.add_member(&owner, ws, "guest", "guest").await;
    let outsider = app.register("outsider").await;
    let (session, topic) = app.create_session(&owner, ws, "workspace").await;
    let (private, private_topic) = app.create_session(&owner, ws, "private").await;

    // A stranger and a non-participant of a private session cannot even subscribe.
    let mut x = app.ws(&outsider).await;
    x.send(json!({ "type": "subscribe", "ref": "s", "topic": topic })).await;
    assert_eq!(x.next().await["code"], "session_not_found");
    let mut g = app.ws(&guest).await;
    g.send(json!({ "type": "subscribe", "ref": "s", "topic": private_topic }))
        .await;
    assert_eq!(g.next().await["code"], "session_not_found");
    let _ = private;

    // The guest can chat in a workspace session; with `send_messages` revoked they cannot.
    g.subscribe(&topic, None).await;
    g.say(&topic, "hello from a guest", "g1").await;
    let (status, body) = app
        .call(
            reqwest::Method::PUT,
            &format!("/api/workspaces/{ws}/members/{}/permissions", guest.id),
            Some(&owner.token),
            Some(json!({ "granted": [], "revoked": ["send_messages"] })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    g.send(json!({ "type": "send_message", "ref": "g2", "topic": topic, "body": "still here?" }))
        .await;
    let answer = g.until(|f| f["ref"] == "g2").await.pop().unwrap();
    assert_eq!(answer["type"], "error");
    assert_eq!(answer["code"], "permission_denied");
    let db = app.db.client().await;
    let n: i64 = db
        .query_one("SELECT count(*) FROM messages WHERE session_id = $1", &[&session])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "the refused message changed nothing");

    // Removing the guest from the workspace cuts their live subscription.
    let (status, _) = app
        .call(
            reqwest::Method::DELETE,
            &format!("/api/workspaces/{ws}/members/{}", guest.id),
            Some(&owner.token),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let revoked = g.until(|f| f["code"] == "access_revoked").await.pop().unwrap();
    assert_eq!(revoked["topic"], topic.as_str());
    g.send(json!({ "type": "send_message", "ref": "g3", "topic": topic, "body": "let me in" }))
        .await;
    assert_eq!(
        g.until(|f| f["ref"] == "g3").await.pop().unwrap()["code"],
        "not_subscribed"
    );
}

#[actix_web::test]
async fn writing_to_an_archived_session_is_refused() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let (session, topic) = app.create_session(&owner, ws, "private").await;
    let mut c = app.ws(&owner).await;
    c.subscribe(&topic, None).await;
    let (status, _) = app
        .post(
            &format!("/api/sessions/{session}/archive"),
            Some(&owner.token),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let archived = c.until(|f| f["kind"] == "session.archived").await.pop().unwrap();
    assert!(archived["data"]["session"]["archived_at"].is_string());
    c.send(json!({ "type": "send_message", "ref": "a", "topic": topic, "body": "hello?" }))
        .await;
    assert_eq!(
        c.until(|f| f["ref"] == "a").await.pop().unwrap()["code"],
        "session_archived"
    );
}

#[actix_web::test]
async fn idle_session_actors_stop() {
    let app = spawn_app_with(|c| c.session_idle_ms = 100).await;
    let owner = app.register("owner").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let (_, topic) = app.create_session(&owner, ws, "private").await;
    let mut c = app.ws(&owner).await;
    c.subscribe(&topic, None).await;
    assert_eq!(sessions_running(&app), 1);
    drop(c);
    let mut waited = 0;
    while sessions_running(&app) > 0 {
        assert!(waited < 100, "the idle session actor never stopped");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        waited += 1;
    }
    // And it comes back on demand.
    let mut c = app.ws(&owner).await;
    c.subscribe(&topic, None).await;
    c.say(&topic, "back", "b").await;
    assert_eq!(sessions_running(&app), 1);
}

#[actix_web::test]
async fn many_sessions_starting_at_once_on_a_tiny_pool_all_start() {
    // A node whose clients all reconnect to it at once (its peer died) starts many session
    // actors at the same moment; none may hold a pooled connection while waiting for
    // another, or the node hangs for good (issue 11).
    let app = spawn_app_with(|c| {
        c.database_pool_size = 2;
        c.ws_frames_per_second = 10_000;
    })
    .await;
    let owner = app.register("owner").await;
    let ws = app.create_workspace(&owner, "Busy").await;
    let mut topics = Vec::new();
    for _ in 0..60 {
        topics.push(app.create_session(&owner, ws, "workspace").await.1);
    }
    let mut c = app.ws(&owner).await;
    for (i, topic) in topics.iter().enumerate() {
        c.send(json!({ "type": "subscribe", "ref": format!("s{i}"), "topic": topic, "after_seq": 0 }))
            .await;
    }
    let mut subscribed = std::collections::HashSet::new();
    while subscribed.len() < topics.len() {
        let frame = c.next_of("subscribed").await;
        subscribed.insert(frame["topic"].as_str().unwrap().to_owned());
    }
    assert_eq!(sessions_running(&app), 60);
    // And the node still answers.
    let ready = app.http.get(format!("{}/readyz", app.base)).send().await.unwrap();
    assert_eq!(ready.status(), reqwest::StatusCode::OK);
}

/// Session actors running on the node.
fn sessions_running(app: &crate::common::TestApp) -> usize {
    use bedda_collab::cluster::Room;
    app.state
        .hub
        .get::<bedda_collab::sessions::registry::LiveSessions>()
        .running()
}

#[actix_web::test]
async fn a_write_pipelined_behind_its_subscribe_is_handled_once_the_subscription_is_linked() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let outsider_ws = app.create_workspace(&owner, "Other").await;
    let bob = app.add_member(&owner, ws, "bob", "editor").await;
    let (_, topic) = app.create_session(&owner, ws, "workspace").await;
    let (_, hidden) = app.create_session(&owner, outsider_ws, "private").await;

    // Subscribe and write without waiting: the write is acked, and the message is seen once.
    let mut c = app.ws(&bob).await;
    c.send(json!({ "type": "subscribe", "ref": "s", "topic": topic })).await;
    c.send(json!({ "type": "send_message", "ref": "m", "topic": topic, "body": "first!" }))
        .await;
    let mut frames = Vec::new();
    let first = |f: &serde_json::Value| f["type"] == "event" && f["data"]["message"]["body"] == "first!";
    while !(frames.iter().any(|f: &serde_json::Value| f["ref"] == "m")
        && frames.iter().any(|f| f["type"] == "caught_up")
        && frames.iter().any(first))
    {
        frames.push(c.next().await);
    }
    let answer = frames.iter().find(|f| f["ref"] == "m").unwrap();
    assert_eq!(answer["type"], "ack", "{frames:?}");
    // Whether it came in the replay or live, the event arrives exactly once.
    c.send(json!({ "type": "ping", "ref": "p" })).await;
    frames.extend(c.until(|f| f["type"] == "pong").await);
    assert_eq!(frames.iter().filter(|f| first(f)).count(), 1, "{frames:?}");

    // Behind a subscribe that is refused, the write is refused too (with the subscribe's error,
    // or `not_subscribed` once the refusal has ended the subscription), and nothing is written.
    c.send(json!({ "type": "subscribe", "ref": "s2", "topic": hidden }))
        .await;
    c.send(json!({ "type": "send_message", "ref": "m2", "topic": hidden, "body": "sneaky" }))
        .await;
    let frames = c.until(|f| f["type"] == "error" && f["ref"] == "m2").await;
    let code = &frames.last().unwrap()["code"];
    assert!(code == "session_not_found" || code == "not_subscribed", "{frames:?}");
    let db = app.db.client().await;
    let sneaky: i64 = db
        .query_one("SELECT count(*) FROM events WHERE data::text LIKE '%sneaky%'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(sneaky, 0);
}
