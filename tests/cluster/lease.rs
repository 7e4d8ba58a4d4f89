//! The lease cannot be starved by client work (issue 11, item 1): with every pooled
//! connection of a node stuck behind a lock for twice its lease, the node still renews its
//! lease (its own connection, its own thread), so nobody is closed with 1012.

use crate::common::cluster::{LEASE_MS, Node};
use crate::common::*;
use serde_json::json;
use std::time::Duration;
use uuid::Uuid;

async fn node_ids(pg: &tokio_postgres::Client) -> Vec<Uuid> {
    pg.query("SELECT id FROM nodes ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[actix_web::test]
async fn a_pool_held_up_past_the_lease_does_not_cost_the_lease() {
    let db = TestDb::new().await;
    let node = Node::start(&db, &["--database-pool-size", "2"]).await;
    let owner = node.register("owner").await;
    let ws = node.create_workspace(&owner, "Lease").await;
    let (_, topic) = node.create_session(&owner, ws, "workspace").await;
    let mut bystander = node.ws(&owner).await;
    bystander.subscribe(&topic, None).await;
    let pg = db.client().await;
    let before = node_ids(&pg).await;
    assert_eq!(before.len(), 1);

    // Hold both pooled connections: ticket requests that wait on a table lock we keep.
    let mut locker = db.client().await;
    let lock = locker.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE connect_tickets IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let stuck: Vec<_> = (0..4)
        .map(|_| {
            let (api, token) = (Api::new(node.port), owner.token.clone());
            actix_web::rt::spawn(async move { api.post("/api/ws-tickets", Some(&token), json!({})).await.0 })
        })
        .collect();
    // Both pool connections are now waiting on the lock (the pool is size 2).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = pg
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting >= 2 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the pool never filled up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Keep it so for twice the lease (this is the load, not a measurement).
    tokio::time::sleep(Duration::from_millis(2 * LEASE_MS)).await;
    lock.rollback().await.unwrap();
    for request in stuck {
        request.await.unwrap();
    }

    // The bystander still has its socket: its ping is answered, and no close came first.
    bystander.send(json!({ "type": "ping", "ref": "fence" })).await;
    bystander.next_of("pong").await;
    bystander.say(&topic, "still here", "s1").await;
    // The node never lost its lease (it would have rejoined under a new id).
    assert_eq!(node_ids(&pg).await, before);
}
