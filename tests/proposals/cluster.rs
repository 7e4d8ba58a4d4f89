//! Model proposals across two node processes: concurrent deciding votes on both nodes
//! resolve once, and a proposal whose node is killed still expires on time, once, on the
//! survivor.

use super::add_participant;
use crate::common::cluster::Node;
use crate::common::*;
use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;
use uuid::Uuid;

/// Two models (the provider is never asked: no test here asks the AI).
const MODELS: [&str; 4] = [
    "--ai-base-url",
    "http://127.0.0.1:9/v1",
    "--ai-models",
    "model-a,model-b",
];

/// How many events of `kind` the session's log holds.
async fn logged(db: &TestDb, session: Uuid, kind: &str) -> i64 {
    db.client()
        .await
        .query_one(
            "SELECT count(*) FROM events WHERE topic = $1 AND kind = $2",
            &[&format!("session:{session}"), &kind],
        )
        .await
        .unwrap()
        .get(0)
}

#[actix_web::test]
async fn twenty_concurrent_deciding_votes_on_two_nodes_resolve_once() {
    let db = TestDb::new().await;
    let n1 = Node::start(&db, &MODELS).await;
    let n2 = Node::start(&db, &MODELS).await;
    let owner = n1.register("owner").await;
    let ws = n1.create_workspace(&owner, "Team").await;
    let (session, topic) = n1.create_session(&owner, ws, "workspace").await;
    let mut voters = Vec::new();
    for i in 0..20 {
        let node = if i % 2 == 0 { &n1 } else { &n2 };
        let voter = node.add_member(&owner, ws, &format!("voter{i}"), "editor").await;
        add_participant(node, &owner, session, &voter).await;
        voters.push(voter);
    }
    // A watcher on the second node, to see what participants see.
    let mut watcher = n2.ws(&owner).await;
    watcher.subscribe(&topic, None).await;

    let (status, p) = n1
        .post(
            &format!("/api/sessions/{session}/proposals"),
            Some(&owner.token),
            json!({ "model": "model-b", "reasoning": "faster" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{p}");
    assert_eq!(p["tally"]["eligible"], 21);
    assert_eq!(p["tally"]["needed"], 11);
    let id = p["id"].as_str().unwrap().to_owned();

    // All twenty approve at once, alternating nodes: the 11th approval decides.
    let votes = voters.iter().enumerate().map(|(i, voter)| {
        let node = if i % 2 == 0 { &n1 } else { &n2 };
        let path = format!("/api/proposals/{id}/vote");
        async move { node.post(&path, Some(&voter.token), json!({ "vote": "approve" })).await }
    });
    let answers = join_all(votes).await;
    let accepted = answers.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    let closed = answers
        .iter()
        .filter(|(s, b)| *s == StatusCode::CONFLICT && b["code"] == "proposal_closed")
        .count();
    let outcomes: Vec<_> = answers
        .iter()
        .map(|(s, b)| (s.as_u16(), b["status"].clone(), b["code"].clone()))
        .collect();
    assert_eq!((accepted, closed), (11, 9), "{outcomes:?}");
    let approving: Vec<_> = answers.iter().filter(|(_, b)| b["status"] == "approved").collect();
    assert!(!approving.is_empty());

    assert_eq!(logged(&db, session, "proposal.resolved").await, 1);
    assert_eq!(logged(&db, session, "proposal.voted").await, 11);
    assert_eq!(logged(&db, session, "session.updated").await, 1);
    let (_, s) = n2.get(&format!("/api/sessions/{session}"), &owner.token).await;
    assert_eq!(s["default_model"], "model-b");
    let (_, view) = n2.get(&format!("/api/proposals/{id}"), &owner.token).await;
    assert_eq!(view["status"], "approved");
    assert_eq!(view["votes"].as_array().unwrap().len(), 11);

    // The watcher saw one resolution: a message sent afterwards is the fence.
    watcher
        .send(json!({ "type": "send_message", "ref": "fence", "topic": topic, "body": "after the vote" }))
        .await;
    let frames = watcher
        .until(|f| f["kind"] == "message.created" && f["data"]["message"]["body"] == "after the vote")
        .await;
    let resolved = frames.iter().filter(|f| f["kind"] == "proposal.resolved").count();
    let model_changes = frames.iter().filter(|f| f["kind"] == "session.updated").count();
    assert_eq!((resolved, model_changes), (1, 1));
}

#[actix_web::test]
async fn a_killed_owner_node_proposal_expires_on_time_once_on_the_survivor() {
    let db = TestDb::new().await;
    let n1 = Node::start(&db, &MODELS).await;
    let n2 = Node::start(&db, &MODELS).await;
    let owner = n1.register("owner").await;
    let ws = n1.create_workspace(&owner, "Team").await;
    let bob = n1.add_member(&owner, ws, "bob", "editor").await;
    let propose = |node: &'static str| json!({ "model": "model-b", "reasoning": node, "expires_in_seconds": 30 });
    // One proposal held by the node that will die, one by the survivor (its own timer).
    let mut sessions = Vec::new();
    for (node, label) in [(&n1, "doomed"), (&n2, "survivor")] {
        let (session, _) = node.create_session(&owner, ws, "workspace").await;
        add_participant(node, &owner, session, &bob).await;
        let (status, p) = node
            .post(
                &format!("/api/sessions/{session}/proposals"),
                Some(&owner.token),
                propose(label),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{p}");
        // Bob approves (1 of 2 needed): the vote must survive, and nothing is decided.
        let (status, v) = n2
            .post(
                &format!("/api/proposals/{}/vote", p["id"].as_str().unwrap()),
                Some(&bob.token),
                json!({ "vote": "approve" }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["status"], "open");
        sessions.push(session);
    }
    n1.kill().await;

    // Wait past the expiry, then look: the survivor's heartbeat sweep (every 250 ms here)
    // has expired the dead node's proposal, and its own actor the other.
    tokio::time::sleep(Duration::from_secs(31)).await;
    let client = db.client().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let open: i64 = client
            .query_one("SELECT count(*) FROM model_proposals WHERE status = 'open'", &[])
            .await
            .unwrap()
            .get(0);
        if open == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "proposals still open long after expiry"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for row in client
        .query(
            "SELECT status, extract(epoch FROM resolved_at - expires_at)::float8, resolved_by IS NULL \
             FROM model_proposals",
            &[],
        )
        .await
        .unwrap()
    {
        let (status, late, nobody): (String, f64, bool) = (row.get(0), row.get(1), row.get(2));
        assert_eq!(status, "expired");
        assert!((0.0..3.0).contains(&late), "expired {late} s after its time");
        assert!(nobody);
    }
    for session in &sessions {
        assert_eq!(logged(&db, *session, "proposal.resolved").await, 1);
        assert_eq!(
            logged(&db, *session, "session.updated").await,
            0,
            "expiry changes nothing"
        );
        // Replay on the survivor shows the vote and the resolution.
        let mut c = n2.ws(&owner).await;
        let (_, replay) = c.subscribe(&format!("session:{session}"), Some(0)).await;
        let kinds: Vec<&str> = replay
            .iter()
            .filter_map(|e| e["kind"].as_str())
            .filter(|k| k.starts_with("proposal."))
            .collect();
        assert_eq!(kinds, ["proposal.created", "proposal.voted", "proposal.resolved"]);
        let resolved = replay.iter().find(|e| e["kind"] == "proposal.resolved").unwrap();
        assert_eq!(resolved["data"]["proposal"]["status"], "expired");
        assert_eq!(resolved["data"]["tally"]["approve"], 1);
        let (_, s) = n2.get(&format!("/api/sessions/{session}"), &owner.token).await;
        assert_eq!(s["default_model"], serde_json::Value::Null);
    }
}
