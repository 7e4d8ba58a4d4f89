//! A replay whose page read fails because the database connection went away (here: its
//! backend is terminated while the read waits on a lock) is read again after a short
//! backoff; the subscriber just waits and gets every event, then `caught_up`.

use crate::common::*;
use std::time::Duration;

/// The replay's page read (`events::after`) as Postgres sees it.
const PAGE_READ: &str = "query LIKE '%FROM \"events\" WHERE%\"events\".\"seq\" > $2%ORDER BY%LIMIT%' \
     AND wait_event_type = 'Lock' AND datname = current_database()";

/// Waits until a page read is blocked on the lock; returns its backend's pid.
async fn blocked_read(db: &tokio_postgres::Client) -> i32 {
    for _ in 0..300 {
        let row = db
            .query_opt(&format!("SELECT pid FROM pg_stat_activity WHERE {PAGE_READ}"), &[])
            .await
            .unwrap();
        if let Some(row) = row {
            return row.get(0);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no replay read got blocked on the lock");
}

#[actix_web::test]
async fn a_replay_read_cut_off_by_the_database_is_retried_and_the_subscriber_catches_up() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let (_, topic) = app.create_session(&owner, ws, "workspace").await;
    let mut writer = app.ws(&owner).await;
    writer.subscribe(&topic, None).await;
    let mut last = 0;
    for i in 0..5 {
        last = writer.say(&topic, &format!("message {i}"), &format!("m{i}")).await;
    }

    // Reads of the log wait behind this lock until it is released.
    let locker = app.db.client().await;
    locker
        .batch_execute("BEGIN; LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let admin = app.db.client().await;
    let mut reader = app.ws(&owner).await;
    let database = async {
        // The first read's connection is cut (`service_unavailable`, as in a failover)...
        let first = blocked_read(&admin).await;
        admin
            .execute("SELECT pg_terminate_backend($1)", &[&first])
            .await
            .unwrap();
        // ...the read is tried again on another connection (still behind the lock)...
        loop {
            let again = blocked_read(&admin).await;
            if again != first {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // ...and succeeds once the database is back to normal.
        locker.batch_execute("COMMIT").await.unwrap();
    };
    let ((subscribed, events), ()) = tokio::join!(reader.subscribe(&topic, Some(0)), database);
    assert_eq!(subscribed["type"], "subscribed");
    let seqs: Vec<i64> = events.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=last).collect::<Vec<_>>(), "every event, once, in order");
    // And it is live afterwards.
    let next = writer.say(&topic, "after the blip", "after").await;
    let event = reader.next_of("event").await;
    assert_eq!(event["seq"], next);
}
