//! Bad input and unknown routes get the one `{code, message}` envelope and change nothing;
//! the OpenAPI document covers every route and the browsable docs are served.

use crate::common::*;
use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

/// Sends a prepared request; returns the status and JSON body, checking the body is JSON.
async fn send(req: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let res = req.send().await.expect("request sent");
    let status = res.status();
    let content_type = res
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = res.text().await.unwrap();
    assert!(content_type.starts_with("application/json"), "{content_type}: {text}");
    (status, serde_json::from_str(&text).expect("a JSON body"))
}

#[actix_web::test]
async fn malformed_json_and_wrong_content_types_are_refused() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let url = format!("{}/api/workspaces", app.base);
    let post = || app.http.post(&url).bearer_auth(&ann.token);

    let cases = [
        post().header(CONTENT_TYPE, "application/json").body(r#"{"name": "#),
        post().header(CONTENT_TYPE, "application/json").body("not json at all"),
        post().header(CONTENT_TYPE, "application/json").body(""),
        post().header(CONTENT_TYPE, "application/json").body(r#"{"name": 5}"#),
        post()
            .header(CONTENT_TYPE, "text/plain")
            .body(r#"{"name": "Research"}"#),
        post()
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body("name=Research"),
        post().body(r#"{"name": "Research"}"#),
    ];
    for req in cases {
        let res = send(req).await;
        assert_error(&res, StatusCode::BAD_REQUEST, "invalid_json");
    }
    let res = send(
        post()
            .header(CONTENT_TYPE, "text/plain")
            .body(r#"{"name": "Research"}"#),
    )
    .await;
    assert!(res.1["message"].as_str().unwrap().contains("Content-Type"), "{}", res.1);
    assert_eq!(app.count("workspaces").await, 0);
}

#[actix_web::test]
async fn bodies_over_64_kib_are_too_large() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let audit_before = app.count("audit_log").await;
    let big = json!({ "name": "x".repeat(64 * 1024) });
    let res = app.post("/api/workspaces", Some(&ann.token), big).await;
    assert_error(&res, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    // Without a declared length (chunked), the limit holds too.
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    let head = format!(
        "POST /api/workspaces HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        ann.token
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!(r#"{{"name": "{}"#, "y".repeat(8 * 1024 - 10));
    let mut sent = 0;
    while sent < 80 * 1024 {
        let frame = format!("{:x}\r\n{chunk}\r\n", chunk.len());
        if stream.write_all(frame.as_bytes()).await.is_err() {
            break; // the server answered and closed early: fine
        }
        sent += chunk.len();
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    let body = &response[response.find("\r\n\r\n").unwrap() + 4..];
    let body: Value = serde_json::from_str(body.trim()).unwrap_or_else(|_| {
        // A chunked response body: take the JSON object inside.
        serde_json::from_str(&body[body.find('{').unwrap()..=body.rfind('}').unwrap()]).unwrap()
    });
    assert_eq!(body["code"], "payload_too_large");

    assert_eq!(app.count("workspaces").await, 0);
    assert_eq!(app.count("audit_log").await, audit_before);
    // A body just under the limit is read (and judged on its content).
    let near = json!({ "name": "z".repeat(60 * 1024) });
    let res = app.post("/api/workspaces", Some(&ann.token), near).await;
    assert_error(&res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
}

#[actix_web::test]
async fn malformed_query_strings_are_invalid_query() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let ws = app.create_workspace(&ann, "Team").await;
    for query in ["limit=abc", "before=1.5", "limit=99999999999999999999"] {
        let res = app
            .get(&format!("/api/workspaces/{ws}/audit?{query}"), &ann.token)
            .await;
        assert_error(&res, StatusCode::BAD_REQUEST, "invalid_query");
    }
}

#[actix_web::test]
async fn unknown_routes_and_methods_are_route_not_found() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let ws = app.create_workspace(&ann, "Team").await;
    let calls = [
        (Method::GET, "/api/nope".to_owned(), Some(ann.token.as_str())),
        (Method::GET, "/api/nope".to_owned(), None),
        (Method::GET, "/nope".to_owned(), None),
        (Method::POST, "/".to_owned(), None),
        (
            Method::POST,
            format!("/api/workspaces/{ws}/frobnicate"),
            Some(ann.token.as_str()),
        ),
        // A known path with a method it does not have.
        (Method::PUT, format!("/api/workspaces/{ws}"), Some(ann.token.as_str())),
        (Method::DELETE, "/api/me".to_owned(), Some(ann.token.as_str())),
    ];
    for (method, path, token) in calls {
        let res = app.call(method.clone(), &path, token, None).await;
        assert_eq!(res.0, StatusCode::NOT_FOUND, "{method} {path}: {}", res.1);
        assert_error(&res, StatusCode::NOT_FOUND, "route_not_found");
    }
}

/// Every route of the foundation, as (method, OpenAPI path).
const FOUNDATION_ROUTES: &[(&str, &str)] = &[
    ("post", "/api/auth/register"),
    ("post", "/api/auth/login"),
    ("post", "/api/auth/logout"),
    ("get", "/api/me"),
    ("get", "/api/permissions"),
    ("post", "/api/workspaces"),
    ("get", "/api/workspaces"),
    ("get", "/api/workspaces/{id}"),
    ("patch", "/api/workspaces/{id}"),
    ("delete", "/api/workspaces/{id}"),
    ("get", "/api/workspaces/{id}/members"),
    ("patch", "/api/workspaces/{id}/members/{user_id}"),
    ("delete", "/api/workspaces/{id}/members/{user_id}"),
    ("put", "/api/workspaces/{id}/members/{user_id}/permissions"),
    ("post", "/api/workspaces/{id}/leave"),
    ("post", "/api/workspaces/{id}/invitations"),
    ("get", "/api/workspaces/{id}/invitations"),
    ("delete", "/api/workspaces/{id}/invitations/{invitation_id}"),
    ("post", "/api/invitations/accept"),
    ("post", "/api/workspaces/{id}/tokens"),
    ("get", "/api/workspaces/{id}/tokens"),
    ("delete", "/api/workspaces/{id}/tokens/{token_id}"),
    ("get", "/api/workspaces/{id}/audit"),
];

#[actix_web::test]
async fn the_openapi_document_lists_every_route_and_only_real_ones() {
    let app = spawn_app().await;
    let res = app
        .http
        .get(format!("{}/api/openapi.json", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let doc: Value = res.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{}", doc["openapi"]);
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        assert!(path.starts_with("/api/"), "{path}");
        for method in item.as_object().unwrap().keys() {
            documented.insert((method.to_lowercase(), path.clone()));
        }
    }
    let missing: Vec<_> = FOUNDATION_ROUTES
        .iter()
        .filter(|(m, p)| !documented.contains(&(m.to_string(), p.to_string())))
        .collect();
    assert!(missing.is_empty(), "routes missing from openapi.json: {missing:?}");
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());

    // And every documented operation is served (whatever it then says to an anonymous
    // caller with made-up ids, it is not "no such route").
    for (method, path) in &documented {
        let concrete: String = path
            .split('/')
            .map(|seg| {
                if seg.starts_with('{') {
                    Uuid::new_v4().to_string()
                } else {
                    seg.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        let method: Method = method.to_uppercase().parse().unwrap();
        let (status, body) = app.call(method.clone(), &concrete, None, None).await;
        assert_ne!(
            body["code"], "route_not_found",
            "{method} {path} is documented but not routed"
        );
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
    }
}

#[actix_web::test]
async fn the_api_docs_are_served_as_html() {
    let app = spawn_app().await;
    let res = app.http.get(format!("{}/api/docs", app.base)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let content_type = res.headers()[CONTENT_TYPE].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let html = res.text().await.unwrap();
    assert!(html.to_lowercase().contains("<html"), "{html}");
    assert!(html.contains("bedda-collab"), "the page carries the API description");
}
