//! Leases are judged by the database's clock, not the node's: a node whose own clock is far
//! behind the others' (faked with libfaketime) keeps its lease while it heartbeats.

use super::team;
use crate::common::cluster::{LEASE_MS, Node};
use crate::common::*;
use serde_json::json;
use std::time::Duration;
use uuid::Uuid;

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

#[actix_web::test]
async fn a_node_whose_clock_is_behind_is_not_reaped() {
    if !std::path::Path::new(LIBFAKETIME).exists() {
        eprintln!(
            "SKIPPED a_node_whose_clock_is_behind_is_not_reaped: libfaketime is not installed (apt-get install faketime)"
        );
        return;
    }
    let db = TestDb::new().await;
    let n1 = Node::start(&db, &[]).await;
    // Node 2's clock is 30 s behind, twenty leases. (Monotonic time is left alone.)
    let skewed = [
        ("LD_PRELOAD", LIBFAKETIME),
        ("FAKETIME", "-30s"),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ];
    let n2 = Node::start_with_env(&db, &[], &skewed).await;
    let pg = db.client().await;
    let row = pg
        .query_one(
            "SELECT id, now() FROM nodes WHERE address = $1",
            &[&format!("http://127.0.0.1:{}", n2.port)],
        )
        .await
        .expect("node 2 holds its row (a lease judged by its own clock would be reaped at once)");
    let (n2_id, started): (Uuid, chrono::DateTime<chrono::Utc>) = (row.get(0), row.get(1));
    let (users, topic) = team(&n1, 1).await;
    let mut a = n1.ws(&users[0]).await;
    a.subscribe(&topic, None).await;
    let mut b = n2.ws(&users[1]).await;
    b.subscribe(&topic, None).await;
    a.until(|f| f["type"] == "presence" && f["joins"][0]["user_id"] == json!(users[1].id))
        .await;

    // Fence: node 1 has renewed (and reaped after renewing) more than two leases after node 2
    // joined, by the database's clock. A lease written by node 2's clock would have been
    // expired at once, and reaped by now.
    let fence = started + chrono::Duration::milliseconds(2 * LEASE_MS as i64);
    let mut passed = false;
    for _ in 0..200 {
        passed = pg
            .query_one(
                "SELECT count(*) FROM nodes WHERE id <> $1 AND heartbeat_at > $2",
                &[&n2_id, &fence],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
            == 1;
        if passed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(passed, "node 1 kept heartbeating");

    // Node 2 is still the same node, with a live lease, and its client is still connected.
    let alive: i64 = pg
        .query_one(
            "SELECT count(*) FROM nodes WHERE id = $1 AND lease_expires_at > now()",
            &[&n2_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(alive, 1, "node 2 was not reaped and did not rejoin under a new id");
    b.say(&topic, "still here", "s").await;
    let seen = a
        .until(|f| f["kind"] == "message.created" && f["data"]["message"]["body"] == "still here")
        .await;
    assert!(
        !seen
            .iter()
            .any(|f| f["type"] == "presence" && f["leaves"] == json!([users[1].id])),
        "node 2's user never left: {seen:#?}"
    );
}
