//! Messages over WebSocket: one order for everyone, acks only after commit, exact replay.

use crate::common::ws::WsClient;
use crate::common::*;
use serde_json::{Value, json};

fn message_events(frames: &[Value]) -> Vec<(i64, String)> {
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

async fn collect_messages(client: &mut WsClient, n: usize) -> Vec<(i64, String)> {
    let mut got = Vec::new();
    while got.len() < n {
        let frame = client.next().await;
        got.extend(message_events(&[frame]));
    }
    got
}

#[actix_web::test]
async fn everyone_sees_the_same_messages_in_the_same_order() {
    let app = spawn_app_with(|c| c.ws_frames_per_second = 1000).await;
    let owner = app.register("owner").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let bob = app.add_member(&owner, ws, "bob", "editor").await;
    let cat = app.add_member(&owner, ws, "cat", "viewer").await;
    let (_, topic) = app.create_session(&owner, ws, "workspace").await;

    let mut clients = Vec::new();
    for user in [&owner, &bob, &cat] {
        let mut c = app.ws(user).await;
        c.subscribe(&topic, None).await;
        clients.push(c);
    }
    // Everyone writes at once.
    for (i, c) in clients.iter_mut().enumerate() {
        for n in 0..10 {
            c.send(json!({ "type": "send_message", "ref": format!("{i}-{n}"), "topic": topic, "body": format!("from {i} #{n}") }))
                .await;
        }
    }
    let mut seen = Vec::new();
    for c in clients.iter_mut() {
        seen.push(collect_messages(c, 30).await);
    }
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[1], seen[2]);
    // Per-sender order is kept and seqs increase.
    for w in seen[0].windows(2) {
        assert!(w[0].0 < w[1].0, "seqs increase: {:?}", seen[0]);
    }
    for i in 0..3 {
        let mine: Vec<_> = seen[0]
            .iter()
            .filter(|(_, b)| b.starts_with(&format!("from {i} ")))
            .map(|(_, b)| b.clone())
            .collect();
        let expected: Vec<_> = (0..10).map(|n| format!("from {i} #{n}")).collect();
        assert_eq!(mine, expected);
    }
}

#[actix_web::test]
async fn acks_name_committed_seqs_and_a_failed_commit_is_never_acked() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let (session, topic) = app.create_session(&owner, ws, "private").await;
    let mut a = app.ws(&owner).await;
    a.subscribe(&topic, None).await;

    let seq = a.say(&topic, "hello", "r1").await;
    let db = app.db.client().await;
    let row = db
        .query_one(
            "SELECT kind, data FROM events WHERE topic = $1 AND seq = $2",
            &[&topic, &seq],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "message.created");
    let stored: i64 = db
        .query_one(
            "SELECT count(*) FROM messages WHERE session_id = $1 AND body = 'hello'",
            &[&session],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 1);

    // Make every commit that carries the word "boom" fail at COMMIT time.
    db.batch_execute(
        "CREATE FUNCTION refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN IF NEW.body LIKE '%boom%' THEN RAISE EXCEPTION 'refused at commit'; END IF; RETURN NEW; END $$; \
         CREATE CONSTRAINT TRIGGER refuse_boom AFTER INSERT ON messages \
         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_boom();",
    )
    .await
    .unwrap();
    a.send(json!({ "type": "send_message", "ref": "bad", "topic": topic, "body": "boom" }))
        .await;
    a.send(json!({ "type": "send_message", "ref": "good", "topic": topic, "body": "fine" }))
        .await;
    let frames = a
        .until(|f| f["ref"] == "good" && (f["type"] == "ack" || f["type"] == "error"))
        .await;
    let bad: Vec<_> = frames.iter().filter(|f| f["ref"] == "bad").collect();
    assert_eq!(bad.len(), 1, "{frames:?}");
    assert_eq!(bad[0]["type"], "error");
    assert_eq!(bad[0]["code"], "internal");
    let good = frames.last().unwrap();
    assert_eq!(
        good["type"], "ack",
        "the other write in the group still commits: {frames:?}"
    );
    // Nobody saw the refused message, and the log has no hole where it would have been.
    assert!(frames.iter().all(|f| f["data"]["message"]["body"] != "boom"));
    let good_seq = good["seq"].as_i64().unwrap();
    let count: i64 = db
        .query_one("SELECT count(*) FROM events WHERE topic = $1", &[&topic])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, good_seq, "seqs are gap-free");
    let boom: i64 = db
        .query_one("SELECT count(*) FROM messages WHERE body = 'boom'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(boom, 0);
}

#[actix_web::test]
async fn reconnecting_with_after_seq_replays_exactly_what_was_missed() {
    let app = spawn_app_with(|c| c.ws_frames_per_second = 5000).await;
    let owner = app.register("owner").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let bob = app.add_member(&owner, ws, "bob", "editor").await;
    let (_, topic) = app.create_session(&owner, ws, "workspace").await;

    let mut a = app.ws(&owner).await;
    a.subscribe(&topic, None).await;
    let mut b = app.ws(&bob).await;
    b.subscribe(&topic, None).await;
    let last_seen = a.say(&topic, "before", "x").await;
    drop(a);

    // More than one replay page goes by while `a` is away.
    let missed = 1203;
    for n in 0..missed {
        b.send(
            json!({ "type": "send_message", "ref": format!("m{n}"), "topic": topic, "body": format!("missed {n}") }),
        )
        .await;
    }
    let live = collect_messages(&mut b, missed + 1).await;
    let last_live = live.last().unwrap().0;

    let mut a = app.ws(&owner).await;
    let (subscribed, replay) = a.subscribe(&topic, Some(last_seen)).await;
    assert_eq!(subscribed["head_seq"].as_i64().unwrap(), last_live);
    let seqs: Vec<i64> = replay.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    let expected: Vec<i64> = ((last_seen + 1)..=last_live).collect();
    assert_eq!(seqs, expected, "exactly the missed events, in order, no duplicates");
    let bodies: Vec<_> = message_events(&replay).into_iter().map(|(_, b)| b).collect();
    let expected_bodies: Vec<_> = (0..missed).map(|n| format!("missed {n}")).collect();
    assert_eq!(bodies, expected_bodies);

    // Then live events continue with no gap and no repeat.
    let next = b.say(&topic, "after", "y").await;
    let frame = a.until(|f| f["type"] == "event").await.pop().unwrap();
    assert_eq!(frame["seq"].as_i64().unwrap(), next);
    assert_eq!(next, last_live + 1);
}

#[actix_web::test]
async fn edit_delete_and_reactions_are_durable_events() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let bob = app.add_member(&owner, ws, "bob", "editor").await;
    let (session, topic) = app.create_session(&owner, ws, "workspace").await;
    let mut a = app.ws(&owner).await;
    a.subscribe(&topic, None).await;
    let mut b = app.ws(&bob).await;
    b.subscribe(&topic, None).await;

    a.say(&topic, "first draft", "s").await;
    let created = b.until(|f| f["kind"] == "message.created").await.pop().unwrap();
    let id = created["data"]["message"]["id"].as_str().unwrap().to_owned();

    a.send(json!({ "type": "edit_message", "ref": "e", "topic": topic, "message_id": id, "body": "final" }))
        .await;
    let edited = b.until(|f| f["kind"] == "message.edited").await.pop().unwrap();
    assert_eq!(edited["data"]["message"]["body"], "final");
    assert!(edited["data"]["message"]["edited_at"].is_string());

    // Bob may not edit or delete Alice's message.
    b.send(json!({ "type": "edit_message", "ref": "be", "topic": topic, "message_id": id, "body": "mine now" }))
        .await;
    let err = b.until(|f| f["ref"] == "be").await.pop().unwrap();
    assert_eq!(err["code"], "permission_denied");
    b.send(json!({ "type": "delete_message", "ref": "bd", "topic": topic, "message_id": id }))
        .await;
    let err = b.until(|f| f["ref"] == "bd").await.pop().unwrap();
    assert_eq!(err["code"], "permission_denied");

    // Reactions toggle: one per user per emoji.
    for _ in 0..2 {
        b.send(json!({ "type": "react", "ref": "r", "topic": topic, "message_id": id, "emoji": "👍" }))
            .await;
    }
    let kinds: Vec<_> = a
        .until(|f| f["kind"] == "reaction.removed")
        .await
        .into_iter()
        .filter(|f| f["type"] == "event" && f["kind"].as_str().unwrap().starts_with("reaction."))
        .map(|f| f["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["reaction.added", "reaction.removed"]);
    b.send(json!({ "type": "react", "ref": "r2", "topic": topic, "message_id": id, "emoji": "🎉" }))
        .await;
    b.until(|f| f["ref"] == "r2").await;

    let (_, history) = app
        .get(&format!("/api/sessions/{session}/messages"), &owner.token)
        .await;
    let msg = &history["messages"][0];
    assert_eq!(msg["body"], "final");
    assert_eq!(msg["reactions"], json!([{ "emoji": "🎉", "user_ids": [bob.id] }]));

    // Delete leaves a tombstone in place.
    a.send(json!({ "type": "delete_message", "ref": "d", "topic": topic, "message_id": id }))
        .await;
    let deleted = b.until(|f| f["kind"] == "message.deleted").await.pop().unwrap();
    assert_eq!(deleted["data"]["message_id"], id.as_str());
    let (_, history) = app
        .get(&format!("/api/sessions/{session}/messages"), &owner.token)
        .await;
    assert_eq!(history["messages"][0]["body"], "");
    assert!(history["messages"][0]["deleted_at"].is_string());
    assert_eq!(history["messages"][0]["reactions"], json!([]));
}
