//! One reply owed per question at a time, and a bounded number of tries to start it:
//! two `regenerate`s of one reply sent at once through two nodes start one reply (the
//! other gets `generation_in_progress`), and a reply whose start keeps failing ends
//! `failed` for everyone after `--ai-start-attempts` tries instead of being retried forever;
//! and a heartbeat with nothing to adopt only reads `ai_requests`.

use super::durable::{assistant_created, count, created, fake_flags, fence, message_id, reply_to};
use crate::common::cluster::Node;
use crate::common::openai::FakeOpenAi;
use crate::common::ws::Duo;
use crate::common::*;
use serde_json::json;

#[actix_web::test]
async fn two_regenerates_at_once_on_two_nodes_start_one_reply() {
    let fake = FakeOpenAi::start().await;
    let db = TestDb::new().await;
    let flags = fake_flags(&fake);
    let n1 = Node::start(&db, &flags).await;
    let n2 = Node::start(&db, &flags).await;
    let Duo {
        topic, mut a, mut b, ..
    } = Duo::start(&n1, &n2, "editor").await;

    // A first reply ("medium": it streams for about two seconds).
    a.say(&topic, "@ai medium answer please", "q").await;
    let question_id = message_id(&created(&mut a, "@ai medium answer please").await);
    let first = reply_to(&mut a, Vec::new(), &question_id).await;
    assert_eq!(first.completed["status"], "complete");

    // Ann (node 1) and Bob (node 2) regenerate it at the same moment.
    let regenerate = |r: &str| json!({ "type": "regenerate", "ref": r, "topic": topic, "message_id": first.id });
    tokio::join!(a.send(regenerate("ra")), b.send(regenerate("rb")));
    let mut seen_by_a = a.until(|f| f["ref"] == "ra").await;
    let answer_a = seen_by_a.last().unwrap().clone();
    let answer_b = b.until(|f| f["ref"] == "rb").await.pop().unwrap();
    let answers = [&answer_a, &answer_b];
    assert_eq!(
        answers.iter().filter(|f| f["type"] == "ack").count(),
        1,
        "exactly one regenerate is accepted: {answers:#?}"
    );
    let refused = answers.iter().find(|f| f["type"] == "error").unwrap();
    assert_eq!(refused["code"], "generation_in_progress", "{refused}");
    assert_eq!(
        refused["message"],
        "a reply to this question is already being generated; stop it or wait for it to end"
    );

    // One new reply, and no other: nothing more is owed, none came before the fence.
    seen_by_a.pop();
    let again = reply_to(&mut a, seen_by_a, &question_id).await;
    assert_ne!(again.id, first.id);
    assert_eq!(again.completed["status"], "complete", "{:#?}", again.frames);
    let after = fence(&mut a, &topic, "fence").await;
    assert!(assistant_created(&after).is_empty(), "{after:#?}");
    assert_eq!(count(&db, "SELECT count(*) FROM ai_requests").await, 0);
    assert_eq!(count(&db, "SELECT count(*) FROM generations").await, 2);
    assert_eq!(
        fake.requests.lock().unwrap().len(),
        2,
        "the model was asked twice in all"
    );

    // Once that reply has ended, the question can be regenerated again.
    a.send(regenerate("again")).await;
    let frames = a.until(|f| f["ref"] == "again").await;
    assert_eq!(frames.last().unwrap()["type"], "ack", "{frames:#?}");
    drop((n1, n2));
}

#[actix_web::test]
async fn a_reply_whose_start_keeps_failing_ends_failed_after_the_attempt_cap() {
    let fake = FakeOpenAi::start().await;
    let url = fake.url.clone();
    let app = spawn_app_with(move |c| {
        c.ai_base_url = Some(url);
        c.ai_models = vec!["fake-large".into()];
        c.node_heartbeat_ms = 100;
        c.ai_retry_after_ms = 200;
        c.ai_start_attempts = 3;
    })
    .await;
    let Duo {
        topic, mut a, mut b, ..
    } = Duo::start(&app, &app, "viewer").await;

    // Every start of a reply fails as if the database were going away (which the server
    // retries: `service_unavailable`); each try is counted by a sequence (not rolled back).
    let db = app.db.client().await;
    db.batch_execute(
        "CREATE SEQUENCE start_tries; \
         CREATE FUNCTION refuse_start() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN IF NEW.status = 'streaming' THEN PERFORM nextval('start_tries'); \
           RAISE EXCEPTION 'the database system is shutting down'; END IF; RETURN NEW; END $$; \
         CREATE TRIGGER refuse_start BEFORE INSERT ON generations FOR EACH ROW EXECUTE FUNCTION refuse_start();",
    )
    .await
    .unwrap();
    a.say(&topic, "@ai will you ever answer?", "q").await;
    let question_id = message_id(&created(&mut b, "@ai will you ever answer?").await);

    // Everyone sees the reply end as failed, saying why, after three tries.
    for client in [&mut a, &mut b] {
        let reply = reply_to(client, Vec::new(), &question_id).await;
        assert_eq!(reply.completed["status"], "failed", "{:#?}", reply.frames);
        assert_eq!(
            reply.completed["error"],
            "the server could not start this reply (3 attempts); ask again or regenerate it"
        );
    }
    let tries: i64 = db
        .query_one("SELECT last_value FROM start_tries", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(tries, 3, "tried exactly --ai-start-attempts times");
    assert_eq!(app.count("ai_requests").await, 0, "nothing is owed any more");
    assert!(fake.requests.lock().unwrap().is_empty(), "the model was never asked");
}

/// Scans of `ai_requests` so far (what each heartbeat's look at it counts).
async fn scans(db: &tokio_postgres::Client) -> i64 {
    db.query_one(
        "SELECT (coalesce(seq_scan, 0) + coalesce(idx_scan, 0))::bigint FROM pg_stat_user_tables \
         WHERE relname = 'ai_requests'",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

#[actix_web::test]
async fn a_heartbeat_with_nothing_to_adopt_only_reads() {
    let app = spawn_app_with(|c| c.node_heartbeat_ms = 100).await;
    // A lock that lets reads through and holds writes back (as `CREATE INDEX` takes).
    let locker = app.db.client().await;
    locker
        .batch_execute("BEGIN; LOCK TABLE ai_requests IN SHARE MODE")
        .await
        .unwrap();
    // Fence: heartbeats keep looking at the table while the lock is held...
    let admin = app.db.client().await;
    let before = scans(&admin).await;
    let mut now = before;
    for _ in 0..200 {
        if now >= before + 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        now = scans(&admin).await;
    }
    assert!(
        now >= before + 3,
        "heartbeats read ai_requests under the lock ({before} → {now})"
    );
    // ...and none of them is stuck behind it with a write.
    let waiting: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock' AND query ILIKE '%ai_requests%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(waiting, 0, "no heartbeat waits to write ai_requests");
    locker.batch_execute("COMMIT").await.unwrap();
}
