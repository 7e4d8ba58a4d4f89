//! Presence (one state per user across tabs, snapshot then diffs) and typing indicators.

use crate::common::ws::Duo;
use crate::common::*;
use serde_json::json;

#[actix_web::test]
async fn presence_is_one_entry_per_user_across_tabs() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let bob = app.add_member(&owner, ws, "bob", "editor").await;
    let (_, topic) = app.create_session(&owner, ws, "workspace").await;

    let mut a = app.ws(&owner).await;
    let (snapshot, _) = a.subscribe(&topic, None).await;
    assert_eq!(snapshot["presence"].as_array().unwrap().len(), 1);

    let mut b1 = app.ws(&bob).await;
    let (snapshot, _) = b1.subscribe(&topic, None).await;
    let users: Vec<_> = snapshot["presence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["user_id"].clone())
        .collect();
    assert!(
        users.contains(&json!(owner.id)) && users.contains(&json!(bob.id)),
        "{snapshot}"
    );
    let join = a.next_of("presence").await;
    assert_eq!(join["joins"][0]["user_id"], json!(bob.id));
    assert_eq!(join["joins"][0]["display_name"], "bob");

    // A second tab of Bob's: no new join. Closing one tab: no leave.
    let mut b2 = app.ws(&bob).await;
    b2.subscribe(&topic, None).await;
    drop(b1);
    // Status changes are diffs too; this also proves nothing else was queued before it.
    b2.send(json!({ "type": "presence", "topic": topic, "status": "away" }))
        .await;
    let diff = a.next_of("presence").await;
    assert_eq!(diff["joins"][0]["status"], "away", "{diff}");
    assert_eq!(diff["leaves"], json!([]));

    drop(b2);
    let leave = a.next_of("presence").await;
    assert_eq!(leave["leaves"], json!([bob.id]), "{leave}");
}

#[actix_web::test]
async fn typing_is_relayed_and_expires_by_itself() {
    let app = spawn_app_with(|c| c.typing_ttl_ms = 300).await;
    let Duo {
        bob,
        topic,
        mut a,
        mut b,
        ..
    } = Duo::start(&app, &app, "editor").await;

    b.send(json!({ "type": "typing", "topic": topic })).await;
    let on = a.next_of("typing").await;
    assert_eq!(on["user_id"], json!(bob.id));
    assert_eq!(on["typing"], true);
    // Nothing more from Bob: the indicator goes off by itself.
    let off = a.next_of("typing").await;
    assert_eq!(off["user_id"], json!(bob.id));
    assert_eq!(off["typing"], false);

    // Sending a message ends typing at once.
    b.send(json!({ "type": "typing", "topic": topic })).await;
    assert_eq!(a.next_of("typing").await["typing"], true);
    b.say(&topic, "done typing", "m").await;
    let frames = a.until(|f| f["type"] == "typing").await;
    assert_eq!(frames.last().unwrap()["typing"], false);
}
