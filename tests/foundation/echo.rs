//! Error messages quote at most 100 characters of any piece of the input, then `…`: a
//! 20,000-character value is not echoed back whole, over REST or over `/ws`.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::json;

#[actix_web::test]
async fn error_messages_quote_at_most_100_characters_of_the_input() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let (_, topic) = app.create_session(&owner, ws, "workspace").await;
    let long = "a".repeat(20_000);
    let quoted = format!("`{}…`", "a".repeat(100));

    // REST: an unknown variant in a JSON body (`api::Json`).
    let response = app
        .post(
            &format!("/api/workspaces/{ws}/sessions"),
            Some(&owner.token),
            json!({ "title": "Planning", "visibility": long }),
        )
        .await;
    assert_error(&response, StatusCode::BAD_REQUEST, "invalid_json");
    let message = response.1["message"].as_str().unwrap();
    assert_eq!(
        message,
        format!(
            "invalid JSON body: unknown variant {quoted}, expected `private` or `workspace` at line 1 column 20035"
        )
    );

    // /ws: an unknown frame type, and an unknown field of a gateway frame.
    let mut client = app.ws(&owner).await;
    client.subscribe(&topic, None).await;
    client.send(json!({ "type": long, "ref": "t", "topic": topic })).await;
    let error = client.next_of("error").await;
    assert_eq!(error["code"], "invalid_frame", "{error}");
    let message = error["message"].as_str().unwrap();
    assert_eq!(message, format!("invalid frame: unknown frame type {quoted}"));
    client
        .send(json!({ "type": "ping", "ref": "p", long.as_str(): 1 }))
        .await;
    let error = client.next_of("error").await;
    assert_eq!(error["code"], "invalid_frame", "{error}");
    let message = error["message"].as_str().unwrap();
    assert_eq!(
        message,
        format!("invalid frame: unknown field {quoted}, expected `ref`")
    );
}
