//! Login and registration limits across real node processes: one budget for the cluster,
//! registration limited per address, and an attacker who cannot lock the owner out
//! (issue 11, items 3 and 5 of the auth brief).

use super::from_address::{Answer, client_from, post};
use crate::common::cluster::Node;
use crate::common::*;
use reqwest::StatusCode;
use serde_json::json;

const PASSWORD: &str = "correct horse battery";

async fn register_from(node: &Node, ip: &str, name: &str) -> Answer {
    let email = format!("{name}-{}@example.com", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let body = json!({ "email": email, "password": PASSWORD, "display_name": name });
    post(&client_from(node, ip), "/api/auth/register", &body).await
}

async fn login_from(node: &Node, ip: &str, email: &str, password: &str) -> Answer {
    let body = json!({ "email": email, "password": password });
    post(&client_from(node, ip), "/api/auth/login", &body).await
}

#[track_caller]
fn assert_limited(answer: &Answer) {
    assert_error(&answer.pair(), StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let wait = answer.retry_after.expect("a Retry-After header");
    assert!(wait >= 1, "{answer:?}");
}

#[actix_web::test]
async fn registration_is_limited_per_address_across_the_cluster() {
    let db = TestDb::new().await;
    let flags = ["--register-rate-per-address", "3"];
    let (a, b) = (Node::start(&db, &flags).await, Node::start(&db, &flags).await);
    for (node, name) in [(&a, "r1"), (&b, "r2"), (&a, "r3")] {
        let answer = register_from(node, "127.0.0.2", name).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
    }
    // The fourth from the same address is refused on either node, and stores nothing.
    let refused = register_from(&b, "127.0.0.2", "r4").await;
    assert_limited(&refused);
    assert!(refused.retry_after.unwrap() <= 3600, "{refused:?}");
    let client = db.client().await;
    let users: i64 = client
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(users, 3);
    // Another address is not affected.
    let other = register_from(&a, "127.0.0.3", "r5").await;
    assert_eq!(other.status, StatusCode::CREATED, "{other:?}");
}

#[actix_web::test]
async fn login_attempts_on_two_nodes_share_one_budget() {
    let db = TestDb::new().await;
    let flags = ["--login-rate-per-account", "3", "--login-rate-per-address", "100"];
    let (a, b) = (Node::start(&db, &flags).await, Node::start(&db, &flags).await);
    let user = a.register("dan").await;
    // Three wrong passwords, spread over both nodes, spend the budget of this address.
    for node in [&a, &b, &a] {
        let answer = login_from(node, "127.0.0.2", &user.email, "wrong-wrong").await;
        assert_error(&answer.pair(), StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    for node in [&b, &a] {
        let answer = login_from(node, "127.0.0.2", &user.email, PASSWORD).await;
        assert_limited(&answer);
    }
}

#[actix_web::test]
async fn an_attacker_at_one_address_does_not_lock_the_owner_out() {
    let db = TestDb::new().await;
    let flags = ["--login-rate-per-account", "3", "--login-rate-per-address", "100"];
    let (a, b) = (Node::start(&db, &flags).await, Node::start(&db, &flags).await);
    let victim = a.register("victim").await;
    let mut limited = 0;
    for i in 0..12 {
        let node = if i % 2 == 0 { &a } else { &b };
        let answer = login_from(node, "127.0.0.2", &victim.email, &format!("guess-{i:04}")).await;
        if answer.status == StatusCode::TOO_MANY_REQUESTS {
            limited += 1;
        } else {
            assert_error(&answer.pair(), StatusCode::UNAUTHORIZED, "invalid_credentials");
        }
    }
    assert_eq!(limited, 9, "the attacker gets three guesses a minute");
    // The owner, at another address, logs in on either node.
    for node in [&a, &b] {
        let answer = login_from(node, "127.0.0.3", &victim.email, PASSWORD).await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    }
}

#[actix_web::test]
async fn a_spread_attack_backs_the_account_off_except_where_the_owner_logged_in_before() {
    let db = TestDb::new().await;
    let flags = ["--login-account-failures", "4", "--login-rate-per-account", "100"];
    let node = Node::start(&db, &flags).await;
    let registered = register_from(&node, "127.0.0.5", "owner").await;
    assert_eq!(registered.status, StatusCode::CREATED, "{registered:?}");
    let email = registered.body["user"]["email"].as_str().unwrap().to_owned();
    // One wrong guess per address until the account refuses new addresses.
    let mut failures = 0;
    let backed_off = loop {
        let ip = format!("127.0.1.{}", failures + 1);
        let answer = login_from(&node, &ip, &email, "guess-guess").await;
        if answer.status == StatusCode::TOO_MANY_REQUESTS {
            break answer;
        }
        assert_error(&answer.pair(), StatusCode::UNAUTHORIZED, "invalid_credentials");
        failures += 1;
        assert!(failures <= 5, "still not backed off after {failures} failures");
    };
    assert_eq!(failures, 5, "four failures are free, the fifth starts the back-off");
    assert_limited(&backed_off);
    // Even the right password from a new address waits…
    let stranger = login_from(&node, "127.0.0.99", &email, PASSWORD).await;
    assert_limited(&stranger);
    // …but the owner's address, known from registering, is let through.
    let owner = login_from(&node, "127.0.0.5", &email, PASSWORD).await;
    assert_eq!(owner.status, StatusCode::OK, "{owner:?}");
}

#[actix_web::test]
async fn spent_windows_are_pruned_and_live_ones_kept() {
    let app = spawn_app_with(|c| c.login_rate_per_account = 2).await;
    let user = app.register("pruned").await;
    for _ in 0..3 {
        app.post(
            "/api/auth/login",
            None,
            json!({ "email": user.email, "password": "wrong-wrong" }),
        )
        .await;
    }
    let client = app.db.client().await;
    let rows = |scope: &'static str| {
        let client = &client;
        async move {
            let n: i64 = client
                .query_one("SELECT count(*) FROM auth_limits WHERE scope = $1", &[&scope])
                .await
                .unwrap()
                .get(0);
            n
        }
    };
    assert_eq!(rows("login_pair").await, 1);
    // Nothing is spent yet: pruning keeps every row, and the budget stays spent.
    let mut conn = app.state.pool.get().await.unwrap();
    assert_eq!(bedda_collab::auth::limits::prune(&mut conn).await.unwrap(), 0);
    let res = app
        .post(
            "/api/auth/login",
            None,
            json!({ "email": user.email, "password": PASSWORD }),
        )
        .await;
    assert_error(&res, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    // Windows that ended go; the known (account, address) from registering stays.
    client
        .batch_execute("UPDATE auth_limits SET window_ends = now() - interval '1 second' WHERE scope <> 'login_known'")
        .await
        .unwrap();
    assert!(bedda_collab::auth::limits::prune(&mut conn).await.unwrap() >= 3);
    assert_eq!(rows("login_pair").await, 0);
    assert_eq!(rows("login_known").await, 1);
    drop(conn);
    let res = app
        .post(
            "/api/auth/login",
            None,
            json!({ "email": user.email, "password": PASSWORD }),
        )
        .await;
    assert_eq!(res.0, StatusCode::OK, "{}", res.1);
}
