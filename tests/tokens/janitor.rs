//! The janitor: expired tickets, artifact tokens and login sessions and old sent mail go;
//! what is still usable stays; a pass runs only under the cluster's advisory lock.

use super::*;
use bedda_collab::janitor;

#[actix_web::test]
async fn expired_rows_go_fresh_ones_stay_and_one_node_at_a_time_prunes() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let stale = app.register("stale").await;
    let (_, id) = artifact(&app, &owner, "Hello").await;
    let (old_token, _) = token(&app, &owner, id).await;
    let (fresh_token, _) = token(&app, &owner, id).await;
    let old_ticket = app.ticket(&owner).await;
    let fresh_ticket = app.ticket(&owner).await;
    let db = app.db.client().await;
    let hash = |s: &str| bedda_collab::auth::secrets::hash(s);
    db.execute(
        "UPDATE artifact_tokens SET expires_at = now() - interval '1 second' WHERE id = $1",
        &[&old_token],
    )
    .await
    .unwrap();
    db.execute(
        "UPDATE connect_tickets SET expires_at = now() - interval '1 second' WHERE token_hash = $1",
        &[&hash(&old_ticket)],
    )
    .await
    .unwrap();
    db.execute(
        "UPDATE user_sessions SET expires_at = now() - interval '1 second' WHERE user_id = $1",
        &[&stale.id],
    )
    .await
    .unwrap();
    db.batch_execute(
        "INSERT INTO email_outbox (id, to_address, subject, body, sent_at) VALUES \
         (gen_random_uuid(), 'old@example.com', 's', '', now() - interval '30 days'), \
         (gen_random_uuid(), 'recent@example.com', 's', '', now() - interval '1 hour'); \
         INSERT INTO email_outbox (id, to_address, subject, body) VALUES \
         (gen_random_uuid(), 'unsent@example.com', 's', 'b')",
    )
    .await
    .unwrap();
    let rows = |table: &'static str| {
        let db = &db;
        async move {
            let n: i64 = db
                .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .await
                .unwrap()
                .get(0);
            n
        }
    };
    let before = (
        rows("artifact_tokens").await,
        rows("connect_tickets").await,
        rows("user_sessions").await,
        rows("email_outbox").await,
    );
    assert_eq!(before, (2, 2, 2, 3));

    // Another node holds the lock: this node's pass skips and deletes nothing.
    let other_node = app.db.client().await;
    other_node
        .execute("SELECT pg_advisory_lock($1)", &[&janitor::LOCK_KEY])
        .await
        .unwrap();
    let skipped = janitor::run_once(&app.state.pool, &app.config).await.unwrap();
    assert!(skipped.is_none(), "{skipped:?}");
    let after_skip = (
        rows("artifact_tokens").await,
        rows("connect_tickets").await,
        rows("user_sessions").await,
        rows("email_outbox").await,
    );
    assert_eq!(after_skip, before);

    other_node
        .execute("SELECT pg_advisory_unlock($1)", &[&janitor::LOCK_KEY])
        .await
        .unwrap();
    let counts = janitor::run_once(&app.state.pool, &app.config)
        .await
        .unwrap()
        .expect("the lock is free");
    assert_eq!(
        counts,
        [
            ("connect_tickets", 1),
            ("artifact_tokens", 1),
            ("user_sessions", 1),
            ("email_outbox", 1),
            ("auth_limits", 0)
        ]
    );
    let ids: Vec<Uuid> = db
        .query("SELECT id FROM artifact_tokens", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, [fresh_token]);
    let ticket_left: i64 = db
        .query_one(
            "SELECT count(*) FROM connect_tickets WHERE token_hash = $1",
            &[&hash(&fresh_ticket)],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(ticket_left, 1);
    let mail: Vec<String> = db
        .query("SELECT to_address FROM email_outbox ORDER BY to_address", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(mail, ["recent@example.com", "unsent@example.com"]);
    // The fresh credentials still work; the expired login does not.
    assert_eq!(app.get("/api/me", &owner.token).await.0, 200);
    assert_eq!(app.get("/api/me", &stale.token).await.0, 401);
    assert_eq!(handshake(&app, &format!("/ws?ticket={fresh_ticket}")).await, 101);
}
