//! A NUL character (U+0000) in any text input is refused with a coded 4xx before it reaches
//! Postgres (which cannot store it), and nothing is written (issue 11, item 3).

use crate::common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[actix_web::test]
async fn a_nul_in_a_login_is_invalid_credentials() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let nul_email = format!("{}\u{0}", owner.email);
    for body in [
        json!({ "email": nul_email, "password": "correct horse battery" }),
        json!({ "email": owner.email, "password": "correct horse\u{0}battery" }),
        json!({ "email": "\u{0}", "password": "\u{0}" }),
    ] {
        let response = app.post("/api/auth/login", None, body.clone()).await;
        assert_error(&response, StatusCode::UNAUTHORIZED, "invalid_credentials");
        assert_eq!(response.1["message"], "wrong email or password", "{body}");
    }
    // The text `\u0000` (an escaped backslash) is no NUL: an ordinary wrong email.
    let response = app
        .post(
            "/api/auth/login",
            None,
            json!({ "email": "a\\u0000@example.com", "password": "correct horse battery" }),
        )
        .await;
    assert_error(&response, StatusCode::UNAUTHORIZED, "invalid_credentials");
    assert_eq!(app.count("user_sessions").await, 1, "only the registration's session");
}

#[actix_web::test]
async fn a_nul_in_a_version_message_is_validation_failed() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let (status, artifact) = app
        .post(
            &format!("/api/workspaces/{ws}/artifacts"),
            Some(&owner.token),
            json!({ "title": "Plan", "content": "hello" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{artifact}");
    let versions = format!("/api/artifacts/{}/versions", artifact["id"].as_str().unwrap());
    let response = app
        .post(
            &versions,
            Some(&owner.token),
            json!({ "name": "v1", "message": "first\u{0}draft" }),
        )
        .await;
    assert_error(&response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(
        response.1["message"],
        "`message` must not contain NUL characters (U+0000)"
    );
    assert_eq!(app.count("artifact_versions").await, 0);
    // The same message without the NUL is saved.
    let (status, body) = app
        .post(
            &versions,
            Some(&owner.token),
            json!({ "name": "v1", "message": "first draft" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// A NUL in a text field of each kind of body, in a query string and in a path: a coded
/// 422 naming the field, and no row changed.
#[actix_web::test]
async fn a_nul_anywhere_in_a_request_changes_nothing() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let (session, _) = app.create_session(&owner, ws, "workspace").await;
    let (_, artifact) = app
        .post(
            &format!("/api/workspaces/{ws}/artifacts"),
            Some(&owner.token),
            json!({ "title": "Plan", "content": "hello" }),
        )
        .await;
    let artifact = artifact["id"].as_str().unwrap().to_owned();
    let tables = [
        "users",
        "workspaces",
        "chat_sessions",
        "artifacts",
        "invitations",
        "api_tokens",
        "audit_log",
        "events",
    ];
    let mut before = Vec::new();
    for table in tables {
        before.push(app.count(table).await);
    }
    let nul = "a\u{0}b";
    let cases: Vec<(Method, String, serde_json::Value, &str)> = vec![
        (
            Method::POST,
            "/api/auth/register".into(),
            json!({ "email": format!("x{nul}@example.com"), "password": "correct horse battery", "display_name": "x" }),
            "email",
        ),
        (
            Method::POST,
            "/api/auth/register".into(),
            json!({ "email": "new@example.com", "password": format!("correct horse{nul}"), "display_name": "x" }),
            "password",
        ),
        (Method::POST, "/api/workspaces".into(), json!({ "name": nul }), "name"),
        (
            Method::PATCH,
            format!("/api/workspaces/{ws}"),
            json!({ "name": nul }),
            "name",
        ),
        (
            Method::POST,
            format!("/api/workspaces/{ws}/sessions"),
            json!({ "title": nul }),
            "title",
        ),
        (
            Method::PATCH,
            format!("/api/sessions/{session}"),
            json!({ "default_model": nul }),
            "default_model",
        ),
        (
            Method::POST,
            format!("/api/workspaces/{ws}/artifacts"),
            json!({ "title": "t", "content": nul }),
            "content",
        ),
        (
            Method::PATCH,
            format!("/api/artifacts/{artifact}"),
            json!({ "title": nul }),
            "title",
        ),
        (
            Method::POST,
            format!("/api/workspaces/{ws}/invitations"),
            json!({ "email": format!("{nul}@example.com"), "role": "editor" }),
            "email",
        ),
        (
            Method::POST,
            format!("/api/workspaces/{ws}/tokens"),
            json!({ "name": "ci", "permissions": [nul] }),
            "permissions/0",
        ),
        (
            Method::POST,
            format!("/api/artifacts/{artifact}/branches"),
            json!({ "version_id": uuid::Uuid::new_v4(), "name": nul }),
            "name",
        ),
        (
            Method::POST,
            "/api/invitations/accept".into(),
            json!({ "token": nul }),
            "token",
        ),
        (
            Method::POST,
            format!("/api/workspaces/{ws}/sessions"),
            serde_json::Value::Object(
                [("title".to_owned(), json!("ok")), (nul.to_owned(), json!(1))]
                    .into_iter()
                    .collect(),
            ),
            "a\\u0000b",
        ),
    ];
    for (method, path, body, field) in cases {
        let response = app
            .call(method.clone(), &path, Some(&owner.token), Some(body.clone()))
            .await;
        assert_error(&response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert_eq!(
            response.1["message"],
            format!("`{field}` must not contain NUL characters (U+0000)"),
            "{method} {path} {body}"
        );
    }
    for path in [
        format!("/api/artifacts/{artifact}/diff?from=current&to=%00"),
        format!("/api/workspaces/{ws}/audit?limit=%0010"),
        format!("/api/workspaces/{ws}%00"),
        format!("/api/sessions/%00{session}"),
    ] {
        let response = app.get(&path, &owner.token).await;
        assert_error(&response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    }
    for (table, before) in tables.iter().zip(before) {
        assert_eq!(app.count(table).await, before, "{table} unchanged");
    }
}

/// A Yjs client may type a NUL into a document (its updates are bytes, stored as such); the
/// version's text rendering, stored as Postgres `text`, shows it as U+FFFD.
#[actix_web::test]
async fn a_nul_typed_into_a_document_does_not_break_its_versions() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let ws = app.create_workspace(&owner, "Docs").await;
    let (_, artifact) = app
        .post(
            &format!("/api/workspaces/{ws}/artifacts"),
            Some(&owner.token),
            json!({ "title": "Plan", "content": "Hello" }),
        )
        .await;
    let id: uuid::Uuid = artifact["id"].as_str().unwrap().parse().unwrap();
    let mut editor = app.yclient(&owner, id, "write").await;
    editor.append("\u{0}bad").await;
    let mut committed = String::new();
    for _ in 0..100 {
        committed = app.artifact_text(&owner, id).await;
        if committed == "Hello\u{0}bad" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(committed, "Hello\u{0}bad", "the document itself keeps the NUL");
    let (status, version) = app
        .post(
            &format!("/api/artifacts/{id}/versions"),
            Some(&owner.token),
            json!({ "name": "v1" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{version}");
    let (status, one) = app
        .get(
            &format!("/api/artifacts/{id}/versions/{}", version["id"].as_str().unwrap()),
            &owner.token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(one["content"], "Hello\u{FFFD}bad");
}

/// The string fields of a request body schema, as the paths `nul_in_json` names them, each
/// with a body holding a NUL there.
fn nul_bodies(doc: &serde_json::Value, schema: &serde_json::Value) -> Vec<(String, serde_json::Value)> {
    let resolve = |s: &serde_json::Value| match s["$ref"].as_str() {
        Some(r) => doc["components"]["schemas"][r.rsplit('/').next().unwrap()].clone(),
        None => s.clone(),
    };
    let is = |s: &serde_json::Value, t: &str| match &s["type"] {
        serde_json::Value::String(x) => x == t,
        serde_json::Value::Array(xs) => xs.iter().any(|x| x == t),
        _ => false,
    };
    let schema = resolve(schema);
    let mut out = Vec::new();
    for (name, prop) in schema["properties"].as_object().into_iter().flatten() {
        let prop = resolve(prop);
        let prop = prop["oneOf"]
            .as_array()
            .and_then(|o| o.iter().find(|s| !is(s, "null")).map(resolve))
            .unwrap_or(prop);
        if is(&prop, "string") {
            out.push((name.clone(), json!({ name: "a\u{0}b" })));
        } else if is(&prop, "array") && is(&resolve(&prop["items"]), "string") {
            out.push((format!("{name}/0"), json!({ name: ["a\u{0}b"] })));
        }
    }
    out
}

/// Every text input of every operation in the OpenAPI document — each string field of its
/// body, each query parameter, each path parameter — holding a NUL: a coded 4xx, and no
/// row of any table changed.
#[actix_web::test]
async fn a_nul_in_every_text_input_of_every_operation_is_refused() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let doc = app.openapi().await;
    let db = app.db.client().await;
    let counts = || async {
        let mut counts = Vec::new();
        for row in db
            .query(
                "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
                &[],
            )
            .await
            .unwrap()
        {
            let table: String = row.get(0);
            let n: i64 = db
                .query_one(&format!("SELECT count(*) FROM \"{table}\""), &[])
                .await
                .unwrap()
                .get(0);
            counts.push((table, n));
        }
        counts
    };
    let before = counts().await;
    let mut checked = 0;
    for (template, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let Ok(method) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            let login = template.ends_with("/auth/login");
            let params: Vec<&serde_json::Value> = op["parameters"].as_array().into_iter().flatten().collect();
            let path_with = |nul_param: Option<&str>| {
                let mut path = template.clone();
                for p in params.iter().filter(|p| p["in"] == "path") {
                    let name = p["name"].as_str().unwrap();
                    let value = if Some(name) == nul_param {
                        "%00".to_owned()
                    } else {
                        ws.to_string()
                    };
                    path = path.replace(&format!("{{{name}}}"), &value);
                }
                path
            };
            let expect = |response: &(StatusCode, serde_json::Value), field: Option<&str>, what: &str| {
                if login {
                    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials");
                } else {
                    assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
                }
                if let Some(field) = field.filter(|_| !login) {
                    assert_eq!(
                        response.1["message"],
                        format!("`{field}` must not contain NUL characters (U+0000)"),
                        "{what}"
                    );
                }
            };
            let schema = &op["requestBody"]["content"]["application/json"]["schema"];
            for (field, body) in nul_bodies(&doc, schema) {
                let what = format!("{method} {template} {body}");
                let response = app
                    .call(method.clone(), &path_with(None), Some(&owner.token), Some(body))
                    .await;
                expect(&response, Some(&field), &what);
                checked += 1;
            }
            for p in params.iter().filter(|p| p["in"] == "query") {
                let url = format!("{}?{}=%00", path_with(None), p["name"].as_str().unwrap());
                let response = app.call(method.clone(), &url, Some(&owner.token), None).await;
                expect(&response, None, &format!("{method} {url}"));
                checked += 1;
            }
            for p in params.iter().filter(|p| p["in"] == "path") {
                let url = path_with(p["name"].as_str());
                let response = app.call(method.clone(), &url, Some(&owner.token), None).await;
                expect(&response, None, &format!("{method} {url}"));
                checked += 1;
            }
        }
    }
    println!("{checked} inputs checked");
    assert!(checked > 80, "inputs checked: {checked}");
    assert_eq!(counts().await, before, "no row changed");
}
