//! AI replies: the real OpenAI-compatible client against a local server speaking its wire
//! format, streamed to every participant, resumable, stoppable, failing cleanly, and
//! interrupted (not stuck) when the generating node dies.

mod durable;
mod requests;

use crate::common::cluster::{LEASE_MS, Node};
use crate::common::openai::{FakeOpenAi, PIECES};
use crate::common::ws::WsClient;
use crate::common::*;
use serde_json::{Value, json};
use std::time::Duration;

/// What one client saw of one AI reply.
#[derive(Debug, Default)]
struct Seen {
    message_id: String,
    /// The text assembled from the partial snapshot and the chunks, by offset.
    streamed: Vec<u16>,
    chunks: usize,
    completed: Option<Value>,
}

impl Seen {
    fn take_chunk(&mut self, offset: usize, text: &str) {
        let units: Vec<u16> = text.encode_utf16().collect();
        if offset <= self.streamed.len() {
            self.streamed.truncate(offset);
            self.streamed.extend(units);
        }
    }

    fn text(&self) -> String {
        String::from_utf16(&self.streamed).unwrap()
    }
}

/// Follows a reply until it completes: the assistant `message.created`, the chunks, the
/// `message.completed`. `initial` is the `generations` entry of a `subscribed` frame.
async fn follow(client: &mut WsClient, initial: Option<&Value>) -> Seen {
    let mut seen = Seen::default();
    if let Some(g) = initial {
        seen.message_id = g["message_id"].as_str().unwrap().to_owned();
        seen.take_chunk(0, g["text"].as_str().unwrap());
    }
    loop {
        let f = client.next().await;
        if f["kind"] == "message.created" && f["data"]["message"]["role"] == "assistant" {
            seen.message_id = f["data"]["message"]["id"].as_str().unwrap().to_owned();
            assert_eq!(f["data"]["message"]["status"], "streaming");
        } else if f["type"] == "ai_chunk" && (seen.message_id.is_empty() || f["message_id"] == seen.message_id.as_str())
        {
            // (Joining a reply already under way: adopt it from its first chunk.)
            seen.message_id = f["message_id"].as_str().unwrap().to_owned();
            seen.chunks += 1;
            seen.take_chunk(f["offset"].as_u64().unwrap() as usize, f["text"].as_str().unwrap());
        } else if f["kind"] == "message.completed" && f["data"]["message"]["id"] == seen.message_id.as_str() {
            seen.completed = Some(f["data"].clone());
            return seen;
        }
    }
}

async fn ai_app(fake: &FakeOpenAi) -> TestApp {
    let url = fake.url.clone();
    spawn_app_with(move |c| {
        c.ai_base_url = Some(url);
        c.ai_models = vec!["fake-large".into(), "fake-small".into()];
    })
    .await
}

#[actix_web::test]
async fn models_are_listed_from_the_configuration() {
    let fake = FakeOpenAi::start().await;
    let app = ai_app(&fake).await;
    let user = app.register("ann").await;
    let (status, models) = app.get("/api/models", &user.token).await;
    assert_eq!(status, 200);
    assert_eq!(models[0]["id"], "fake-large");
    assert_eq!(models[0]["default"], true);
    assert_eq!(models[1]["id"], "fake-small");
    assert_eq!(models[1]["default"], false);
}

#[actix_web::test]
async fn a_reply_streams_to_every_participant_and_is_committed() {
    let fake = FakeOpenAi::start().await;
    let app = ai_app(&fake).await;
    let owner = app.register("owner").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let bob = app.add_member(&owner, ws, "bob", "editor").await;
    let cat = app.add_member(&owner, ws, "cat", "viewer").await;
    let (session, topic) = app.create_session(&owner, ws, "workspace").await;
    let mut clients = Vec::new();
    for user in [&owner, &bob, &cat] {
        let mut c = app.ws(user).await;
        c.subscribe(&topic, None).await;
        clients.push(c);
    }
    clients[1]
        .send(json!({ "type": "send_message", "ref": "q", "topic": topic, "body": "@ai what is the plan?" }))
        .await;
    let expected: String = PIECES.concat();
    let mut seen = Vec::new();
    for c in clients.iter_mut() {
        seen.push(follow(c, None).await);
    }
    for s in &seen {
        assert_eq!(s.text(), expected, "the streamed text");
        let done = s.completed.as_ref().unwrap();
        assert_eq!(done["status"], "complete");
        assert_eq!(done["message"]["body"], expected.as_str());
        assert_eq!(done["message"]["model"], "fake-large");
        assert_eq!(done["usage"]["prompt_tokens"], 42);
        assert!(s.chunks >= 1);
    }
    assert!(seen.windows(2).all(|w| w[0].message_id == w[1].message_id));
    // The model got the question, with history, streaming requested.
    let request = fake.requests.lock().unwrap()[0].clone();
    assert_eq!(request["stream"], true);
    assert_eq!(request["model"], "fake-large");
    let last = request["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last, json!({ "role": "user", "content": "@ai what is the plan?" }));
    // Durable: history has the reply, usage is recorded for who asked.
    let (_, history) = app
        .get(&format!("/api/sessions/{session}/messages"), &owner.token)
        .await;
    let reply = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "assistant")
        .unwrap()
        .clone();
    assert_eq!(reply["body"], expected.as_str());
    assert_eq!(reply["status"], "complete");
    let (status, usage) = app.get(&format!("/api/workspaces/{ws}/usage"), &owner.token).await;
    assert_eq!(status, 200, "{usage}");
    assert_eq!(usage[0]["user_id"], json!(bob.id));
    assert_eq!(usage[0]["model"], "fake-large");
    assert_eq!(usage[0]["requests"], 1);
    assert_eq!(usage[0]["completion_tokens"], PIECES.len());
}

#[actix_web::test]
async fn a_client_joining_mid_reply_ends_with_the_same_text() {
    let fake = FakeOpenAi::start().await;
    let app = ai_app(&fake).await;
    let owner = app.register("owner").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let bob = app.add_member(&owner, ws, "bob", "editor").await;
    let (_, topic) = app.create_session(&owner, ws, "workspace").await;
    let mut a = app.ws(&owner).await;
    a.subscribe(&topic, None).await;
    a.send(json!({ "type": "send_message", "ref": "q", "topic": topic, "body": "@ai slow please" }))
        .await;
    // Wait until the reply is well under way, then a second person arrives.
    a.until(|f| f["type"] == "ai_chunk" && f["offset"].as_u64().unwrap() > 20)
        .await;
    let mut b = app.ws(&bob).await;
    let (subscribed, _) = b.subscribe(&topic, None).await;
    let generations = subscribed["generations"].as_array().unwrap();
    assert_eq!(generations.len(), 1, "{subscribed}");
    assert!(
        !generations[0]["text"].as_str().unwrap().is_empty(),
        "the late joiner starts from the text so far"
    );
    let late = follow(&mut b, Some(&generations[0])).await;
    let early = follow(&mut a, None).await;
    let done = late.completed.as_ref().unwrap();
    assert_eq!(done["status"], "complete");
    assert_eq!(
        late.text(),
        done["message"]["body"].as_str().unwrap(),
        "resumed text = final text"
    );
    assert_eq!(
        early.completed.as_ref().unwrap()["message"]["body"],
        done["message"]["body"]
    );
}

#[actix_web::test]
async fn stop_reaches_everyone_and_only_the_asker_or_a_manager_may_stop() {
    let fake = FakeOpenAi::start().await;
    let app = ai_app(&fake).await;
    let owner = app.register("owner").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let bob = app.add_member(&owner, ws, "bob", "editor").await;
    let cat = app.add_member(&owner, ws, "cat", "viewer").await;
    let (_, topic) = app.create_session(&owner, ws, "workspace").await;
    let mut asker = app.ws(&bob).await;
    asker.subscribe(&topic, None).await;
    let mut other = app.ws(&cat).await;
    other.subscribe(&topic, None).await;
    asker
        .send(json!({ "type": "send_message", "ref": "q", "topic": topic, "body": "@ai slow story" }))
        .await;
    let first = asker.until(|f| f["type"] == "ai_chunk").await.pop().unwrap();
    let id = first["message_id"].as_str().unwrap().to_owned();
    // Cat neither asked nor manages sessions.
    other
        .send(json!({ "type": "stop_generation", "ref": "no", "topic": topic, "message_id": id }))
        .await;
    assert_eq!(
        other.until(|f| f["ref"] == "no").await.pop().unwrap()["code"],
        "permission_denied"
    );
    asker
        .send(json!({ "type": "stop_generation", "ref": "stop", "topic": topic, "message_id": id }))
        .await;
    let stopped = other.until(|f| f["kind"] == "message.completed").await.pop().unwrap();
    assert_eq!(stopped["data"]["status"], "stopped");
    let text = stopped["data"]["message"]["body"].as_str().unwrap();
    assert!(text.starts_with("word0 "), "keeps what was said: {text:?}");
    assert!(!text.contains("word59"), "it really stopped");
    let done = asker.until(|f| f["kind"] == "message.completed").await.pop().unwrap();
    assert_eq!(done["data"]["message"]["body"], stopped["data"]["message"]["body"]);
    // Stopping an ended reply is a coded error.
    asker
        .send(json!({ "type": "stop_generation", "ref": "again", "topic": topic, "message_id": id }))
        .await;
    assert_eq!(
        asker.until(|f| f["ref"] == "again").await.pop().unwrap()["code"],
        "generation_ended"
    );
    // Regenerate gives a new reply to the same question.
    asker
        .send(json!({ "type": "regenerate", "ref": "re", "topic": topic, "message_id": id }))
        .await;
    let again = follow(&mut asker, None).await;
    assert_ne!(again.message_id, id);
}

#[actix_web::test]
async fn provider_failures_end_the_reply_for_everyone_with_the_reason() {
    let fake = FakeOpenAi::start().await;
    let app = ai_app(&fake).await;
    let owner = app.register("owner").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let (_, topic) = app.create_session(&owner, ws, "private").await;
    let mut a = app.ws(&owner).await;
    a.subscribe(&topic, None).await;

    a.send(json!({ "type": "send_message", "ref": "1", "topic": topic, "body": "@ai fail-now" }))
        .await;
    let failed = follow(&mut a, None).await.completed.unwrap();
    assert_eq!(failed["status"], "failed");
    assert!(failed["error"].as_str().unwrap().contains("overloaded"), "{failed}");
    assert_eq!(failed["message"]["body"], "");

    a.send(json!({ "type": "send_message", "ref": "2", "topic": topic, "body": "@ai fail-midway" }))
        .await;
    let failed = follow(&mut a, None).await.completed.unwrap();
    assert_eq!(failed["status"], "failed");
    assert!(failed["error"].as_str().unwrap().contains("crashed"), "{failed}");
    assert_eq!(
        failed["message"]["body"],
        PIECES[..3].concat(),
        "what arrived before the failure is kept"
    );
}

#[actix_web::test]
async fn the_ai_answers_only_as_the_session_setting_says() {
    let app = spawn_app_with(|c| c.ai_offline_word_ms = 1).await;
    let owner = app.register("owner").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let (session, topic) = app.create_session(&owner, ws, "private").await;
    let mut a = app.ws(&owner).await;
    a.subscribe(&topic, None).await;
    // Default `mention`: no mention, no reply; with one, the offline model answers.
    a.say(&topic, "just chatting", "1").await;
    a.say(&topic, "@AI are you there?", "2").await;
    let reply = follow(&mut a, None).await.completed.unwrap();
    let body = reply["message"]["body"].as_str().unwrap();
    assert!(body.contains("offline model"), "clearly labelled: {body}");
    assert_eq!(reply["message"]["model"], "offline-echo");
    let (_, history) = app
        .get(&format!("/api/sessions/{session}/messages"), &owner.token)
        .await;
    let assistants = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "assistant")
        .count();
    assert_eq!(assistants, 1, "only the mention was answered");
    // `off`: nothing, even when mentioned.
    let (status, _) = app
        .call(
            reqwest::Method::PATCH,
            &format!("/api/sessions/{session}"),
            Some(&owner.token),
            Some(json!({ "ai_mode": "off" })),
        )
        .await;
    assert_eq!(status, 200);
    a.until(|f| f["kind"] == "session.updated").await;
    a.say(&topic, "@ai hello?", "3").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, history) = app
        .get(&format!("/api/sessions/{session}/messages"), &owner.token)
        .await;
    let assistants = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "assistant")
        .count();
    assert_eq!(assistants, 1);
    let bad = app
        .call(
            reqwest::Method::PATCH,
            &format!("/api/sessions/{session}"),
            Some(&owner.token),
            Some(json!({ "ai_mode": "always" })),
        )
        .await;
    assert_error(&bad, reqwest::StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
}

#[actix_web::test]
async fn across_nodes_everyone_sees_the_same_reply_and_a_dead_generator_leaves_it_interrupted() {
    let fake = FakeOpenAi::start().await;
    let db = TestDb::new().await;
    let flags = [
        "--ai-base-url",
        fake.url.as_str(),
        "--ai-models",
        "fake-large",
        "--ai-checkpoint-ms",
        "200",
    ];
    let (n1, n2) = (Node::start(&db, &flags).await, Node::start(&db, &flags).await);
    let owner = n1.register("owner").await;
    let ws = n1.create_workspace(&owner, "Team").await;
    let bob = n1.add_member(&owner, ws, "bob", "editor").await;
    let cat = n1.add_member(&owner, ws, "cat", "editor").await;
    let (_, topic) = n1.create_session(&owner, ws, "workspace").await;
    let mut a = n1.ws(&owner).await;
    a.subscribe(&topic, None).await;
    let mut b = n2.ws(&bob).await;
    b.subscribe(&topic, None).await;
    let mut c = n2.ws(&cat).await;
    c.subscribe(&topic, None).await;

    // Asked on node 2, generated there; node 1's client sees the same reply.
    b.send(json!({ "type": "send_message", "ref": "q", "topic": topic, "body": "@ai quick one" }))
        .await;
    let seen = [
        follow(&mut a, None).await,
        follow(&mut b, None).await,
        follow(&mut c, None).await,
    ];
    for s in &seen {
        assert_eq!(
            s.completed.as_ref().unwrap()["message"]["body"],
            PIECES.concat().as_str()
        );
        // Chunks travel ephemerally: what streamed is the start of the committed text.
        assert!(
            PIECES.concat().starts_with(&s.text()) && !s.text().is_empty(),
            "{:?}",
            s.text()
        );
    }

    // A long reply generated on node 2; node 2 dies mid-reply.
    b.send(json!({ "type": "send_message", "ref": "q2", "topic": topic, "body": "@ai slow and long" }))
        .await;
    a.until(|f| f["type"] == "ai_chunk" && f["offset"].as_u64().unwrap() > 10)
        .await;
    n2.kill().await;
    let ended = tokio::time::timeout(
        Duration::from_millis(LEASE_MS * 10),
        a.until(|f| f["kind"] == "message.completed"),
    )
    .await
    .expect("the reply ends instead of streaming forever")
    .pop()
    .unwrap();
    assert_eq!(ended["data"]["status"], "interrupted");
    assert!(
        ended["data"]["message"]["body"].as_str().unwrap().starts_with("word0"),
        "keeps the checkpointed text"
    );
}

#[actix_web::test]
async fn a_reply_finishes_even_if_everyone_leaves_and_a_deleted_reply_stays_deleted() {
    let fake = FakeOpenAi::start().await;
    let url = fake.url.clone();
    let app = spawn_app_with(move |c| {
        c.ai_base_url = Some(url);
        c.ai_models = vec!["fake-large".into()];
        c.session_idle_ms = 100;
    })
    .await;
    let owner = app.register("owner").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let (session, topic) = app.create_session(&owner, ws, "private").await;
    let mut a = app.ws(&owner).await;
    let (subscribed, _) = a.subscribe(&topic, None).await;
    let start = subscribed["head_seq"].as_i64().unwrap();
    a.send(json!({ "type": "send_message", "ref": "q", "topic": topic, "body": "@ai medium answer" }))
        .await;
    a.until(|f| f["type"] == "ai_chunk").await;
    drop(a); // nobody is left watching; the node still owns the stream
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut a = app.ws(&owner).await;
    let (_, replay) = a.subscribe(&topic, Some(start)).await;
    let done = match replay.iter().find(|e| e["kind"] == "message.completed") {
        Some(done) => done.clone(),
        None => a.until(|f| f["kind"] == "message.completed").await.pop().unwrap(),
    };
    assert_eq!(done["data"]["status"], "complete");
    assert!(done["data"]["message"]["body"].as_str().unwrap().ends_with("word14 "));

    // Deleting a reply while it streams stops it, and it stays a tombstone.
    let mut admin_view = app.ws(&owner).await;
    admin_view.subscribe(&topic, None).await;
    admin_view
        .send(json!({ "type": "send_message", "ref": "q2", "topic": topic, "body": "@ai slow again" }))
        .await;
    let chunk = admin_view.until(|f| f["type"] == "ai_chunk").await.pop().unwrap();
    let id = chunk["message_id"].as_str().unwrap().to_owned();
    admin_view
        .send(json!({ "type": "delete_message", "ref": "del", "topic": topic, "message_id": id }))
        .await;
    let ended = admin_view
        .until(|f| f["kind"] == "message.completed")
        .await
        .pop()
        .unwrap();
    assert_eq!(ended["data"]["status"], "stopped");
    assert_eq!(ended["data"]["message"]["body"], "");
    let (_, history) = app
        .get(&format!("/api/sessions/{session}/messages"), &owner.token)
        .await;
    let reply = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(reply["body"], "");
    assert!(reply["deleted_at"].is_string());
}
