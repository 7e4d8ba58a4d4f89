//! Bad input over `/ws` and bad rows in a group commit: a NUL in any frame is refused with
//! `validation_failed` before the database, and one write that fails in the database does
//! not fail or delay the others of its group (issue 11, item 3).

use crate::common::ws::Duo;
use crate::common::ws::WsClient;
use crate::common::*;
use serde_json::{Value, json};

/// Reads until every `refs` got its ack or error; returns the answers by ref.
async fn answers(client: &mut WsClient, refs: &[String]) -> std::collections::HashMap<String, Value> {
    let mut got = std::collections::HashMap::new();
    while got.len() < refs.len() {
        let frame = client.next().await;
        if (frame["type"] == "ack" || frame["type"] == "error")
            && let Some(r) = frame["ref"].as_str()
            && refs.iter().any(|x| x == r)
        {
            got.insert(r.to_owned(), frame);
        }
    }
    got
}

#[actix_web::test]
async fn a_nul_in_any_session_frame_is_validation_failed_and_writes_nothing() {
    let app = spawn_app().await;
    let Duo {
        topic, mut a, mut b, ..
    } = Duo::start(&app, &app, "editor").await;
    let first = a.say(&topic, "hello", "hello").await;
    let message_id = b.next_of("event").await["data"]["message"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let events_before = app.count("events").await;

    let frames = [
        json!({ "type": "send_message", "ref": "send", "topic": topic, "body": "a\u{0}b" }),
        json!({ "type": "edit_message", "ref": "edit", "topic": topic, "message_id": message_id, "body": "\u{0}" }),
        json!({ "type": "react", "ref": "react", "topic": topic, "message_id": message_id, "emoji": "\u{0}" }),
        json!({ "type": "presence", "ref": "presence", "topic": topic, "status": "away\u{0}" }),
        json!({ "type": "subscribe", "ref": "subscribe", "topic": format!("{topic}\u{0}") }),
    ];
    for frame in &frames {
        a.send(frame.clone()).await;
        let error = a.next_of("error").await;
        assert_eq!(error["code"], "validation_failed", "{frame} -> {error}");
        assert_eq!(error["ref"], frame["ref"], "{error}");
        assert!(error["message"].as_str().unwrap().contains("NUL"), "{error}");
    }
    // A later write commits right after the last (so nothing was queued behind them) and
    // is the next seq: the refused ones took none.
    let next = a.say(&topic, "still here", "after").await;
    assert_eq!(next, first + 1);
    let seen = b.until(|f| f["type"] == "event" && f["seq"] == next).await;
    assert!(
        seen.iter().all(|f| f["type"] != "event" || f["seq"] == next),
        "bob saw only the good write: {seen:?}"
    );
    assert_eq!(app.count("events").await, events_before + 1);
    assert_eq!(app.count("messages").await, 2);
    assert_eq!(app.count("message_reactions").await, 0);
}

#[actix_web::test]
async fn a_writer_sending_nul_does_not_disturb_the_others() {
    let app = spawn_app_with(|c| c.ws_frames_per_second = 1000).await;
    let owner = app.register("owner").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let (_, topic) = app.create_session(&owner, ws, "workspace").await;
    let mut writers = Vec::new();
    for i in 0..3 {
        let user = app.add_member(&owner, ws, &format!("w{i}"), "editor").await;
        let mut c = app.ws(&user).await;
        c.subscribe(&topic, None).await;
        writers.push(c);
    }
    let mut bad = app.ws(&owner).await;
    bad.subscribe(&topic, None).await;
    // Everyone writes at once, the bad writer's NULs interleaved with the others' writes.
    let mut refs: Vec<Vec<String>> = vec![Vec::new(); 3];
    let mut bad_refs = Vec::new();
    for n in 0..20 {
        for (i, c) in writers.iter_mut().enumerate() {
            let r = format!("{i}-{n}");
            c.send(json!({ "type": "send_message", "ref": r, "topic": topic, "body": format!("good {r}") }))
                .await;
            refs[i].push(r);
        }
        let r = format!("bad-{n}");
        bad.send(json!({ "type": "send_message", "ref": r, "topic": topic, "body": format!("bad\u{0}{n}") }))
            .await;
        bad_refs.push(r);
    }
    for (i, c) in writers.iter_mut().enumerate() {
        let got = answers(c, &refs[i]).await;
        for (r, frame) in &got {
            assert_eq!(frame["type"], "ack", "{r}: {frame}");
        }
    }
    let got = answers(&mut bad, &bad_refs).await;
    for (r, frame) in &got {
        assert_eq!(frame["type"], "error", "{r}: {frame}");
        assert_eq!(frame["code"], "validation_failed", "{r}: {frame}");
    }
    assert_eq!(app.count("messages").await, 60);
}

/// A write that passes the edge checks but fails in the database (here a trigger refuses
/// it) is dropped from its group with its own error; the others of the group commit
/// together, in one transaction, not one by one.
#[actix_web::test]
async fn a_row_the_database_refuses_is_dropped_from_its_group_alone() {
    let app = spawn_app_with(|c| c.ws_frames_per_second = 1000).await;
    let Duo {
        topic, mut a, mut b, ..
    } = Duo::start(&app, &app, "editor").await;
    a.say(&topic, "warm-up", "warm-up").await;
    let db = app.db.client().await;
    db.batch_execute(
        "CREATE FUNCTION refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN IF NEW.body LIKE '%boom%' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$; \
         CREATE TRIGGER refuse_boom BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION refuse_boom();",
    )
    .await
    .unwrap();

    // Hold the session's sequence row: the writer's next group waits for it, and every
    // write sent meanwhile queues up for the group after it.
    let mut locker = app.db.client().await;
    let lock = locker.transaction().await.unwrap();
    lock.execute("SELECT 1 FROM topics WHERE topic = $1 FOR UPDATE", &[&topic])
        .await
        .unwrap();
    a.send(json!({ "type": "send_message", "ref": "first", "topic": topic, "body": "first" }))
        .await;
    // Until the writer waits on the lock (a condition, polled; not a timed assertion).
    loop {
        let waiting: i64 = db
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let mut refs = Vec::new();
    for n in 0..10 {
        let (r, body) = if n == 4 {
            ("boom".to_owned(), "boom".to_owned())
        } else {
            (format!("good-{n}"), format!("good {n}"))
        };
        a.send(json!({ "type": "send_message", "ref": r, "topic": topic, "body": body }))
            .await;
        refs.push(r);
    }
    // Fence: the session actor handles a's frames in order, so once bob sees a typing,
    // every write before it is queued at the writer.
    a.send(json!({ "type": "typing", "topic": topic, "typing": true }))
        .await;
    b.until(|f| f["type"] == "typing" && f["typing"] == true).await;
    lock.commit().await.unwrap();

    refs.push("first".to_owned());
    let got = answers(&mut a, &refs).await;
    for (r, frame) in &got {
        if r == "boom" {
            assert_eq!(frame["type"], "error", "{frame}");
            assert_eq!(frame["code"], "internal", "{frame}");
        } else {
            assert_eq!(frame["type"], "ack", "{r}: {frame}");
        }
    }
    // `created_at` defaults to now(): the start of the (top-level) transaction.
    let transactions: i64 = db
        .query_one(
            "SELECT count(DISTINCT created_at) FROM messages WHERE body LIKE 'good %'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(transactions, 1, "the nine good writes of the group committed together");
    let seqs: Vec<i64> = got
        .iter()
        .filter(|(r, _)| r.starts_with("good"))
        .map(|(_, f)| f["seq"].as_i64().unwrap())
        .collect();
    let (min, max) = (seqs.iter().min().unwrap(), seqs.iter().max().unwrap());
    assert_eq!(max - min, 8, "gap-free seqs: the refused write took none: {seqs:?}");
}
