//! The request for an AI reply is durable from the commit of the question (or the ack of a
//! `regenerate`) to the start of the reply: a node killed in between leaves the reply to a
//! surviving node, a restarted node does not leave it dangling, and a reply that cannot
//! start ends `failed` for everyone. Each node killed here runs with
//! `--ai-start-delay-ms`, which holds every start back long enough for the kill to land
//! between the commit and the start.

use crate::common::cluster::Node;
use crate::common::openai::{FakeOpenAi, PIECES};
use crate::common::ws::Duo;
use crate::common::ws::WsClient;
use crate::common::*;
use serde_json::{Value, json};

/// Holds every reply start back far longer than the test takes to kill the node.
const HELD: [&str; 2] = ["--ai-start-delay-ms", "600000"];

/// How one reply to a question went, as one client saw it.
#[derive(Debug)]
pub(super) struct Reply {
    pub id: String,
    /// The data of its `message.completed`.
    pub completed: Value,
    /// Every frame seen while waiting for it.
    pub frames: Vec<Value>,
}

/// Waits for the reply to `question`: its assistant `message.created` (with `reply_to` =
/// the question) and its `message.completed`. `earlier` are frames already read (a
/// replay), looked at first.
pub(super) async fn reply_to(client: &mut WsClient, earlier: Vec<Value>, question: &str) -> Reply {
    let mut id: Option<String> = None;
    let mut frames = Vec::new();
    let mut earlier = earlier.into_iter();
    loop {
        let f = match earlier.next() {
            Some(f) => f,
            None => client.next().await,
        };
        frames.push(f.clone());
        if f["kind"] == "message.created" && f["data"]["reply_to"] == question {
            assert!(id.is_none(), "a second reply to the same request: {frames:#?}");
            assert_eq!(f["data"]["message"]["role"], "assistant");
            id = Some(message_id(&f));
        } else if f["kind"] == "message.completed"
            && let Some(id) = &id
            && f["data"]["message"]["id"] == id.as_str()
        {
            return Reply {
                id: id.clone(),
                completed: f["data"].clone(),
                frames,
            };
        }
    }
}

/// Sends `body` and reads until its own `message.created` comes back: everything committed
/// on the topic before it has been delivered by then. Returns the frames read.
pub(super) async fn fence(client: &mut WsClient, topic: &str, body: &str) -> Vec<Value> {
    client
        .send(json!({ "type": "send_message", "ref": body, "topic": topic, "body": body }))
        .await;
    client
        .until(|f| f["kind"] == "message.created" && f["data"]["message"]["body"] == body)
        .await
}

pub(super) fn assistant_created(frames: &[Value]) -> Vec<&Value> {
    frames
        .iter()
        .filter(|f| f["kind"] == "message.created" && f["data"]["message"]["role"] == "assistant")
        .collect()
}

/// Reads until the `message.created` of a message with `body`; returns it.
pub(super) async fn created(client: &mut WsClient, body: &str) -> Value {
    client
        .until(|f| f["kind"] == "message.created" && f["data"]["message"]["body"] == body)
        .await
        .pop()
        .unwrap()
}

pub(super) async fn count(db: &TestDb, sql: &str) -> i64 {
    db.client().await.query_one(sql, &[]).await.unwrap().get(0)
}

/// Node 1 (starts replies at once) with Ann, node 2 (holds every start back) with Bob, both
/// subscribed to one session of Ann's workspace.
struct Pair {
    /// Kept alive by binding it (a dropped `Node` is killed).
    n1: Node,
    n2: Node,
    bob: User,
    topic: String,
    a: WsClient,
    b: WsClient,
}

impl Pair {
    async fn start(db: &TestDb, fake: &FakeOpenAi) -> Self {
        let flags = fake_flags(fake);
        let n1 = Node::start(db, &flags).await;
        let n2 = Node::start(db, &[flags.as_slice(), &HELD].concat()).await;
        let owner = n1.register("owner").await;
        let ws = n1.create_workspace(&owner, "Team").await;
        let bob = n1.add_member(&owner, ws, "bob", "editor").await;
        let (_, topic) = n1.create_session(&owner, ws, "workspace").await;
        let mut a = n1.ws(&owner).await;
        a.subscribe(&topic, None).await;
        let mut b = n2.ws(&bob).await;
        b.subscribe(&topic, None).await;
        Self {
            n1,
            n2,
            bob,
            topic,
            a,
            b,
        }
    }
}

/// The id of the message a `message.created` frame carries.
pub(super) fn message_id(created: &Value) -> String {
    created["data"]["message"]["id"].as_str().unwrap().to_owned()
}

pub(super) fn fake_flags(fake: &FakeOpenAi) -> Vec<&str> {
    vec!["--ai-base-url", fake.url.as_str(), "--ai-models", "fake-large"]
}

#[actix_web::test]
async fn a_question_survives_its_node_dying_between_commit_and_start() {
    let fake = FakeOpenAi::start().await;
    let db = TestDb::new().await;
    let Pair {
        n1: _n1,
        n2,
        topic,
        mut a,
        mut b,
        ..
    } = Pair::start(&db, &fake).await;

    // Bob asks through node 2: the question is committed (acked) and its reply is owed by
    // node 2, which holds the start back. Node 2 dies in that window.
    b.say(&topic, "@ai are you there?", "q").await;
    let question = created(&mut a, "@ai are you there?").await;
    assert_eq!(question["data"]["asks_ai"], true, "{question}");
    let question_id = message_id(&question);
    assert_eq!(
        count(&db, "SELECT count(*) FROM generations").await,
        0,
        "not started yet"
    );
    n2.kill().await;

    // Ann, on node 1, gets the reply: node 1 took the request over once node 2's lease ended.
    let reply = reply_to(&mut a, Vec::new(), &question_id).await;
    assert_eq!(reply.completed["status"], "complete", "{:#?}", reply.frames);
    assert_eq!(reply.completed["message"]["body"], PIECES.concat().as_str());
    // Only one reply: nothing else is owed, and none came before the fence.
    let after = fence(&mut a, &topic, "fence").await;
    assert!(assistant_created(&after).is_empty(), "{after:#?}");
    assert_eq!(count(&db, "SELECT count(*) FROM ai_requests").await, 0);
    assert_eq!(count(&db, "SELECT count(*) FROM generations").await, 1);
    assert_eq!(fake.requests.lock().unwrap().len(), 1, "the model was asked once");
}

#[actix_web::test]
async fn a_regenerate_survives_its_node_dying_between_ack_and_start() {
    let fake = FakeOpenAi::start().await;
    let db = TestDb::new().await;
    let Pair {
        n1: _n1,
        n2,
        bob,
        topic,
        mut a,
        mut b,
        ..
    } = Pair::start(&db, &fake).await;

    // A first reply, asked and generated on node 1.
    a.say(&topic, "@ai first answer please", "q").await;
    let question = created(&mut a, "@ai first answer please").await;
    let question_id = message_id(&question);
    let first = reply_to(&mut a, Vec::new(), &question_id).await;
    assert_eq!(first.completed["status"], "complete");

    // Bob regenerates it through node 2: acked (the request is durable), then node 2 dies
    // before starting the new reply.
    b.send(json!({ "type": "regenerate", "ref": "re", "topic": topic, "message_id": first.id }))
        .await;
    let ack = b.until(|f| f["ref"] == "re").await.pop().unwrap();
    assert_eq!(ack["type"], "ack", "{ack}");
    n2.kill().await;

    let again = reply_to(&mut a, Vec::new(), &question_id).await;
    assert_ne!(again.id, first.id);
    assert_eq!(again.completed["status"], "complete", "{:#?}", again.frames);
    let created = again
        .frames
        .iter()
        .find(|f| f["kind"] == "message.created" && f["data"]["message"]["id"] == again.id.as_str())
        .unwrap();
    assert_eq!(
        created["data"]["asked_by"],
        json!(bob.id),
        "counted for who regenerated"
    );
    let after = fence(&mut a, &topic, "fence").await;
    assert!(assistant_created(&after).is_empty(), "{after:#?}");
    assert_eq!(count(&db, "SELECT count(*) FROM ai_requests").await, 0);
    assert_eq!(count(&db, "SELECT count(*) FROM generations").await, 2);
}

#[actix_web::test]
async fn a_restarted_node_does_not_leave_its_requests_dangling() {
    let fake = FakeOpenAi::start().await;
    let db = TestDb::new().await;
    let flags = fake_flags(&fake);
    let node = Node::start(&db, &[flags.as_slice(), &HELD].concat()).await;
    let owner = node.register("owner").await;
    let ws = node.create_workspace(&owner, "Team").await;
    let (_, topic) = node.create_session(&owner, ws, "private").await;
    let mut a = node.ws(&owner).await;
    a.subscribe(&topic, None).await;
    let seq = a.say(&topic, "@ai anyone?", "q").await;
    let question = created(&mut a, "@ai anyone?").await;
    let question_id = message_id(&question);
    node.kill().await;

    // The only node comes back (a new process, a new node id, no delay this time).
    let node = Node::start(&db, &flags).await;
    let mut a = node.ws(&owner).await;
    let (_, replay) = a.subscribe(&topic, Some(seq)).await;
    let reply = reply_to(&mut a, replay, &question_id).await;
    assert_eq!(reply.completed["status"], "complete", "{:#?}", reply.frames);
    let after = fence(&mut a, &topic, "fence").await;
    assert!(assistant_created(&after).is_empty(), "{after:#?}");
    assert_eq!(count(&db, "SELECT count(*) FROM ai_requests").await, 0);
}

#[actix_web::test]
async fn a_reply_that_cannot_start_ends_failed_for_everyone() {
    let fake = FakeOpenAi::start().await;
    let url = fake.url.clone();
    let app = spawn_app_with(move |c| {
        c.ai_base_url = Some(url);
        c.ai_models = vec!["fake-large".into()];
    })
    .await;
    let Duo {
        topic, mut a, mut b, ..
    } = Duo::start(&app, &app, "viewer").await;

    // A message that does not ask says so.
    a.say(&topic, "just chatting", "c").await;
    assert_eq!(created(&mut b, "just chatting").await["data"]["asks_ai"], false);

    // Every start of a reply fails in the database from now on.
    let db = app.db.client().await;
    db.batch_execute(
        "CREATE FUNCTION refuse_start() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN IF NEW.status = 'streaming' THEN RAISE EXCEPTION 'no replies today'; END IF; RETURN NEW; END $$; \
         CREATE TRIGGER refuse_start BEFORE INSERT ON generations FOR EACH ROW EXECUTE FUNCTION refuse_start();",
    )
    .await
    .unwrap();
    a.say(&topic, "@ai will you answer?", "q").await;
    let question = created(&mut b, "@ai will you answer?").await;
    assert_eq!(question["data"]["asks_ai"], true);
    let question_id = message_id(&question);
    // The asker and everyone else see the reply end as failed, with the reason.
    for client in [&mut a, &mut b] {
        let reply = reply_to(client, Vec::new(), &question_id).await;
        assert_eq!(reply.completed["status"], "failed", "{:#?}", reply.frames);
        assert_eq!(reply.completed["message"]["status"], "failed");
        assert_eq!(reply.completed["message"]["body"], "");
        let error = reply.completed["error"].as_str().unwrap();
        assert!(error.contains("could not start"), "{error}");
    }
    assert_eq!(app.count("ai_requests").await, 0);
    assert!(fake.requests.lock().unwrap().is_empty(), "the model was never asked");

    // A regenerate that cannot start ends the same way; once starts work again, it answers.
    let failed: String = db
        .query_one(
            "SELECT message_id::text FROM generations WHERE reply_to::text = $1",
            &[&question_id],
        )
        .await
        .unwrap()
        .get(0);
    a.send(json!({ "type": "regenerate", "ref": "re", "topic": topic, "message_id": failed }))
        .await;
    let again = reply_to(&mut a, Vec::new(), &question_id).await;
    assert_eq!(again.completed["status"], "failed");
    db.batch_execute("DROP TRIGGER refuse_start ON generations")
        .await
        .unwrap();
    a.send(json!({ "type": "regenerate", "ref": "re2", "topic": topic, "message_id": again.id }))
        .await;
    let answered = reply_to(&mut a, Vec::new(), &question_id).await;
    assert_eq!(answered.completed["status"], "complete");
    assert_eq!(answered.completed["message"]["body"], PIECES.concat().as_str());
    assert_eq!(app.count("ai_requests").await, 0);
}
