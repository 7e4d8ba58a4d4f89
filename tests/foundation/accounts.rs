//! Accounts: register, login, logout, me, rate limits, secrets at rest, server start-up.

use crate::common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[actix_web::test]
async fn register_login_me_logout() {
    let app = spawn_app().await;
    let user = app.register("ann").await;
    let (status, me) = app.get("/api/me", &user.token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["email"], user.email);
    assert_eq!(me["display_name"], "ann");

    // Email is case-insensitive for login.
    let (status, login) = app
        .post(
            "/api/auth/login",
            None,
            json!({ "email": user.email.to_uppercase(), "password": "correct horse battery" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{login}");
    let second = login["token"].as_str().unwrap().to_owned();
    assert_ne!(second, user.token);

    let (status, _) = app.call(Method::POST, "/api/auth/logout", Some(&second), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_error(
        &app.get("/api/me", &second).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    );
    // The other session is untouched.
    assert_eq!(app.get("/api/me", &user.token).await.0, StatusCode::OK);
}

#[actix_web::test]
async fn wrong_password_and_unknown_account_look_the_same() {
    let app = spawn_app().await;
    let user = app.register("bob").await;
    let wrong = app
        .post(
            "/api/auth/login",
            None,
            json!({ "email": user.email, "password": "nope-nope" }),
        )
        .await;
    assert_error(&wrong, StatusCode::UNAUTHORIZED, "invalid_credentials");
    let unknown = app
        .post(
            "/api/auth/login",
            None,
            json!({ "email": "ghost@example.com", "password": "nope-nope" }),
        )
        .await;
    assert_error(&unknown, StatusCode::UNAUTHORIZED, "invalid_credentials");
    assert_eq!(wrong.1, unknown.1);
}

#[actix_web::test]
async fn duplicate_email_is_a_conflict_and_writes_nothing() {
    let app = spawn_app().await;
    let user = app.register("cat").await;
    let before = app.count("users").await;
    let again = app
        .post(
            "/api/auth/register",
            None,
            json!({ "email": user.email.to_uppercase(), "password": "another password", "display_name": "Cat 2" }),
        )
        .await;
    assert_error(&again, StatusCode::CONFLICT, "email_taken");
    assert_eq!(app.count("users").await, before);
}

#[actix_web::test]
async fn bad_registrations_are_rejected_with_nothing_written() {
    let app = spawn_app().await;
    let cases = [
        json!({ "email": "not-an-email", "password": "long enough", "display_name": "x" }),
        json!({ "email": "a@example.com", "password": "short", "display_name": "x" }),
        json!({ "email": "a@example.com", "password": "long enough", "display_name": "" }),
        json!({ "email": "a@example.com", "password": "long enough", "display_name": "x".repeat(101) }),
        json!({ "email": format!("{}@example.com", "a".repeat(300)), "password": "long enough", "display_name": "x" }),
    ];
    for body in cases {
        let res = app.post("/api/auth/register", None, body.clone()).await;
        assert_error(&res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    }
    let missing_field = app
        .post("/api/auth/register", None, json!({ "email": "a@example.com" }))
        .await;
    assert_error(&missing_field, StatusCode::BAD_REQUEST, "invalid_json");
    assert_eq!(app.count("users").await, 0);
    assert_eq!(app.count("audit_log").await, 0);
}

#[actix_web::test]
async fn login_is_rate_limited_per_account() {
    let app = spawn_app_with(|c| {
        c.login_rate_per_account = 3;
        c.login_rate_per_address = 100;
    })
    .await;
    let user = app.register("dan").await;
    for _ in 0..3 {
        let res = app
            .post(
                "/api/auth/login",
                None,
                json!({ "email": user.email, "password": "wrong-wrong" }),
            )
            .await;
        assert_error(&res, StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    // Even the right password is refused now: the budget is spent.
    let res = app
        .post(
            "/api/auth/login",
            None,
            json!({ "email": user.email, "password": "correct horse battery" }),
        )
        .await;
    assert_error(&res, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    // Another account from the same address is not affected.
    let other = app.register("eve").await;
    let res = app
        .post(
            "/api/auth/login",
            None,
            json!({ "email": other.email, "password": "correct horse battery" }),
        )
        .await;
    assert_eq!(res.0, StatusCode::OK);
}

#[actix_web::test]
async fn login_is_rate_limited_per_address() {
    let app = spawn_app_with(|c| {
        c.login_rate_per_account = 100;
        c.login_rate_per_address = 2;
    })
    .await;
    for i in 0..2 {
        let res = app
            .post(
                "/api/auth/login",
                None,
                json!({ "email": format!("x{i}@example.com"), "password": "whatever1" }),
            )
            .await;
        assert_eq!(res.0, StatusCode::UNAUTHORIZED);
    }
    let res = app
        .post(
            "/api/auth/login",
            None,
            json!({ "email": "x9@example.com", "password": "whatever1" }),
        )
        .await;
    assert_error(&res, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
}

#[actix_web::test]
async fn passwords_and_session_tokens_are_never_stored_in_clear() {
    let app = spawn_app().await;
    let user = app.register("fay").await;
    let db = app.db.client().await;
    let row = db
        .query_one("SELECT password_hash FROM users WHERE id = $1", &[&user.id])
        .await
        .unwrap();
    let hash: String = row.get(0);
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains("correct horse battery"));
    // Nothing anywhere in the database holds the password or the token.
    let dump = db
        .query_one(
            "SELECT (SELECT string_agg(t::text, '|') FROM users t) || \
                    (SELECT string_agg(t::text, '|') FROM user_sessions t) || \
                    (SELECT coalesce(string_agg(t::text, '|'), '') FROM audit_log t)",
            &[],
        )
        .await
        .unwrap();
    let dump: String = dump.get(0);
    assert!(!dump.contains("correct horse battery"));
    let secret = user.token.trim_start_matches("bcs_");
    assert!(!dump.contains(secret));
    let stored: Vec<u8> = db
        .query_one("SELECT token_hash FROM user_sessions", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, bedda_collab::auth::secrets::hash(&user.token));
}

#[actix_web::test]
async fn bearer_tokens_are_checked() {
    let app = spawn_app().await;
    assert_error(
        &app.call(Method::GET, "/api/me", None, None).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    );
    assert_error(
        &app.get("/api/me", "bcs_forged").await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    );
    assert_error(
        &app.get("/api/me", "garbage").await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    );
    let res = app
        .http
        .get(format!("{}/api/me", app.base))
        .header("Authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // An invalid token fails before the body is even looked at.
    let res = app
        .call(
            Method::POST,
            "/api/workspaces",
            Some("bcs_forged"),
            Some(json!({ "bad": true })),
        )
        .await;
    assert_error(&res, StatusCode::UNAUTHORIZED, "unauthenticated");
}

#[actix_web::test]
async fn health_and_readiness() {
    let app = spawn_app().await;
    let res = app.http.get(format!("{}/healthz", app.base)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = app.http.get(format!("{}/readyz", app.base)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}
