//! Model proposals (issue 13): the rules over WebSocket frames and REST, eligibility and
//! permissions, an approval changing the model the next AI reply uses, replay of the whole
//! discussion; `cluster.rs` runs two node processes (concurrent deciding votes, a killed
//! owner node).

mod cluster;

use crate::common::openai::FakeOpenAi;
use crate::common::ws::WsClient;
use crate::common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

async fn app_with_models(fake: &FakeOpenAi) -> TestApp {
    let url = fake.url.clone();
    spawn_app_with(move |c| {
        c.ai_base_url = Some(url);
        c.ai_models = vec!["fake-large".into(), "fake-small".into()];
    })
    .await
}

async fn add_participant(app: &Api, owner: &User, session: Uuid, user: &User) {
    let (status, body) = app
        .post(
            &format!("/api/sessions/{session}/participants"),
            Some(&owner.token),
            json!({ "user_id": user.id }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Sends a frame and returns its answer (`ack` or `error` with the same ref).
async fn answer(c: &mut WsClient, frame: Value) -> Value {
    let reference = frame["ref"].clone();
    c.send(frame).await;
    c.until(|f| (f["type"] == "ack" || f["type"] == "error") && f["ref"] == reference)
        .await
        .pop()
        .unwrap()
}

/// The next event of `kind`, skipping others.
async fn event_of(c: &mut WsClient, kind: &str) -> Value {
    c.until(|f| f["type"] == "event" && f["kind"] == kind)
        .await
        .pop()
        .unwrap()
}

fn kinds(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| {
            e["kind"]
                .as_str()
                .is_some_and(|k| k.starts_with("proposal.") || k == "session.updated")
        })
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect()
}

#[actix_web::test]
async fn a_majority_of_the_eligible_approves_and_the_next_reply_uses_the_model() {
    let fake = FakeOpenAi::start().await;
    let app = app_with_models(&fake).await;
    let owner = app.register("owner").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let bob = app.add_member(&owner, ws, "bob", "editor").await;
    let cat = app.add_member(&owner, ws, "cat", "editor").await;
    let dan = app.add_member(&owner, ws, "dan", "viewer").await;
    let (session, topic) = app.create_session(&owner, ws, "workspace").await;
    for user in [&bob, &cat, &dan] {
        add_participant(&app, &owner, session, user).await;
    }
    let mut clients = Vec::new();
    for user in [&owner, &bob, &cat, &dan] {
        let mut c = app.ws(user).await;
        c.subscribe(&topic, None).await;
        clients.push(c);
    }

    // Bob proposes; the eligible voters are the three participants holding vote_on_models.
    let ack = answer(
        &mut clients[1],
        json!({ "type": "propose_model", "ref": "p", "topic": topic, "model": "fake-small",
                "reasoning": "cheaper for drafts" }),
    )
    .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let created = event_of(&mut clients[3], "proposal.created").await;
    assert_eq!(created["seq"], ack["seq"]);
    let proposal = created["data"]["proposal"].clone();
    let id = proposal["id"].as_str().unwrap().to_owned();
    let mut eligible: Vec<&str> = proposal["eligible"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    eligible.sort();
    let mut expected = vec![owner.id.to_string(), bob.id.to_string(), cat.id.to_string()];
    expected.sort();
    assert_eq!(eligible, expected, "dan (viewer) is not eligible");
    assert_eq!(created["data"]["tally"]["needed"], 2);

    // A second proposal while one is open: 409 proposal_open, nothing written.
    let second = answer(
        &mut clients[2],
        json!({ "type": "propose_model", "ref": "p2", "topic": topic, "model": "fake-large", "reasoning": "no" }),
    )
    .await;
    assert_eq!(second["code"], "proposal_open", "{second}");

    // Dan cannot vote (no vote_on_models).
    let denied = answer(
        &mut clients[3],
        json!({ "type": "vote_proposal", "ref": "d", "topic": topic, "proposal_id": id, "vote": "approve" }),
    )
    .await;
    assert_eq!(denied["code"], "permission_denied", "{denied}");

    // Owner approves, then changes to abstain: 1 of 3 approvals decides nothing.
    for (r, vote) in [("o1", "approve"), ("o2", "abstain")] {
        let ack = answer(
            &mut clients[0],
            json!({ "type": "vote_proposal", "ref": r, "topic": topic, "proposal_id": id, "vote": vote }),
        )
        .await;
        assert_eq!(ack["type"], "ack", "{ack}");
    }
    // Bob approves (1 of 3), cat approves with a comment: 2 > 3/2 → approved.
    let ack = answer(
        &mut clients[1],
        json!({ "type": "vote_proposal", "ref": "b", "topic": topic, "proposal_id": id, "vote": "approve" }),
    )
    .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let ack = answer(
        &mut clients[2],
        json!({ "type": "vote_proposal", "ref": "c", "topic": topic, "proposal_id": id, "vote": "approve",
                "comment": "agreed" }),
    )
    .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let resolved = event_of(&mut clients[3], "proposal.resolved").await;
    assert_eq!(resolved["data"]["proposal"]["status"], "approved");
    assert_eq!(resolved["data"]["proposal"]["resolved_by"], cat.id.to_string());
    assert_eq!(resolved["data"]["tally"]["approve"], 2);
    assert_eq!(resolved["data"]["tally"]["abstain"], 1);
    let updated = event_of(&mut clients[3], "session.updated").await;
    assert_eq!(updated["data"]["session"]["default_model"], "fake-small");
    assert_eq!(
        ack["seq"], updated["seq"],
        "the ack names the last event of the deciding vote"
    );

    // Closed: a late vote changes nothing.
    let late = answer(
        &mut clients[0],
        json!({ "type": "vote_proposal", "ref": "late", "topic": topic, "proposal_id": id, "vote": "reject" }),
    )
    .await;
    assert_eq!(late["code"], "proposal_closed", "{late}");

    // The next AI reply uses the approved model.
    clients[1]
        .send(json!({ "type": "send_message", "ref": "q", "topic": topic, "body": "@ai summarise" }))
        .await;
    let done = event_of(&mut clients[1], "message.completed").await;
    assert_eq!(done["data"]["message"]["model"], "fake-small", "{done}");
    let asked = fake.requests.lock().unwrap().last().cloned().unwrap();
    assert_eq!(asked["model"], "fake-small");

    // REST: the history with votes.
    let (status, list) = app.get(&format!("/api/sessions/{session}/proposals"), &dan.token).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["status"], "approved");
    assert_eq!(list[0]["votes"].as_array().unwrap().len(), 3);
    let cat_vote = list[0]["votes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["user_id"] == cat.id.to_string())
        .unwrap();
    assert_eq!(cat_vote["comment"], "agreed");

    // A late joiner replays the whole discussion in order.
    let mut late = app.ws(&dan).await;
    let (_, replay) = late.subscribe(&topic, Some(0)).await;
    assert_eq!(
        kinds(&replay),
        [
            "proposal.created",
            "proposal.voted",
            "proposal.voted",
            "proposal.voted",
            "proposal.voted",
            "proposal.resolved",
            "session.updated"
        ]
    );
    let votes: Vec<&str> = replay
        .iter()
        .filter(|e| e["kind"] == "proposal.voted")
        .map(|e| e["data"]["vote"].as_str().unwrap())
        .collect();
    assert_eq!(votes, ["approve", "abstain", "approve", "approve"]);
}

#[actix_web::test]
async fn rejection_single_voter_withdraw_cancel_and_bad_input_over_rest() {
    let fake = FakeOpenAi::start().await;
    let app = app_with_models(&fake).await;
    let owner = app.register("owner").await;
    let ws = app.create_workspace(&owner, "Team").await;
    let admin = app.add_member(&owner, ws, "adam", "admin").await;
    let bob = app.add_member(&owner, ws, "bob", "editor").await;
    let eve = app.add_member(&owner, ws, "eve", "editor").await;
    let outsider = app.register("outsider").await;

    // The single-voter case: only the owner takes part; one approval decides.
    let (solo, _) = app.create_session(&owner, ws, "private").await;
    let (status, p) = app
        .post(
            &format!("/api/sessions/{solo}/proposals"),
            Some(&owner.token),
            json!({ "model": "fake-small", "reasoning": "just me" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{p}");
    assert_eq!(p["tally"]["eligible"], 1);
    assert_eq!(p["tally"]["needed"], 1);
    let (status, p) = app
        .post(
            &format!("/api/proposals/{}/vote", p["id"].as_str().unwrap()),
            Some(&owner.token),
            json!({ "vote": "approve" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{p}");
    assert_eq!(p["status"], "approved");
    let (_, s) = app.get(&format!("/api/sessions/{solo}"), &owner.token).await;
    assert_eq!(s["default_model"], "fake-small");

    // Bad input: coded errors, nothing written.
    let (session, _) = app.create_session(&owner, ws, "workspace").await;
    add_participant(&app, &owner, session, &bob).await;
    let path = format!("/api/sessions/{session}/proposals");
    for body in [
        json!({ "model": "no-such-model", "reasoning": "x" }),
        json!({ "model": "fake-small", "reasoning": "" }),
        json!({ "model": "fake-small", "reasoning": "x", "expires_in_seconds": 5 }),
        json!({ "model": "fake-small", "reasoning": "x", "expires_in_seconds": 100000 }),
    ] {
        let r = app.post(&path, Some(&bob.token), body.clone()).await;
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    }
    let r = app
        .post(&path, Some(&bob.token), json!({ "model": "fake-small" }))
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_json");
    let r = app
        .post(
            &path,
            Some(&admin.token),
            json!({ "model": "fake-small", "reasoning": "x" }),
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "permission_denied");
    let r = app
        .post(
            &path,
            Some(&outsider.token),
            json!({ "model": "fake-small", "reasoning": "x" }),
        )
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "session_not_found");
    assert_eq!(app.count("model_proposals").await, 1, "only the solo proposal exists");

    // Two eligible (owner, bob); one rejection means approval can no longer be reached.
    let (status, p) = app
        .post(
            &path,
            Some(&bob.token),
            json!({ "model": "fake-small", "reasoning": "try it", "expires_in_seconds": 600 }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{p}");
    assert_eq!(p["tally"]["eligible"], 2);
    let id = p["id"].as_str().unwrap().to_owned();
    // Eve joined later: she holds vote_on_models but is not in the snapshot.
    add_participant(&app, &owner, session, &eve).await;
    let r = app
        .post(
            &format!("/api/proposals/{id}/vote"),
            Some(&eve.token),
            json!({ "vote": "approve" }),
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "not_eligible");
    let r = app
        .post(
            &format!("/api/proposals/{id}/vote"),
            Some(&bob.token),
            json!({ "vote": "maybe" }),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_json");
    let r = app
        .post(
            &format!("/api/proposals/{id}/vote"),
            Some(&outsider.token),
            json!({ "vote": "approve" }),
        )
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "proposal_not_found");
    let (status, p) = app
        .post(
            &format!("/api/proposals/{id}/vote"),
            Some(&owner.token),
            json!({ "vote": "reject", "comment": "too weak" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{p}");
    assert_eq!(p["status"], "rejected");
    let (_, s) = app.get(&format!("/api/sessions/{session}"), &owner.token).await;
    assert_eq!(s["default_model"], Value::Null, "a rejection changes nothing");

    // Withdraw: only the proposer; cancel: manage_sessions; then it is closed.
    let (_, p) = app
        .post(
            &path,
            Some(&bob.token),
            json!({ "model": "fake-small", "reasoning": "again" }),
        )
        .await;
    let id = p["id"].as_str().unwrap().to_owned();
    let r = app
        .post(&format!("/api/proposals/{id}/withdraw"), Some(&eve.token), json!({}))
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "permission_denied");
    let (status, p) = app
        .post(&format!("/api/proposals/{id}/withdraw"), Some(&bob.token), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{p}");
    assert_eq!(p["status"], "withdrawn");
    let r = app
        .post(
            &format!("/api/proposals/{id}/vote"),
            Some(&owner.token),
            json!({ "vote": "approve" }),
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT, "proposal_closed");
    let (_, p) = app
        .post(
            &path,
            Some(&bob.token),
            json!({ "model": "fake-small", "reasoning": "third" }),
        )
        .await;
    let id = p["id"].as_str().unwrap().to_owned();
    let (status, p) = app
        .post(&format!("/api/proposals/{id}/withdraw"), Some(&admin.token), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{p}");
    assert_eq!(p["status"], "cancelled");
    assert_eq!(p["resolved_by"], admin.id.to_string());

    let (status, list) = app
        .get(&format!("/api/sessions/{session}/proposals?limit=2"), &eve.token)
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let statuses: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["cancelled", "withdrawn"], "newest first");
    let r = app
        .get(&format!("/api/proposals/{}", Uuid::new_v4()), &owner.token)
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "proposal_not_found");
    // A frame's proposal must belong to the topic it came on.
    let mut c = app.ws(&owner).await;
    c.subscribe(&format!("session:{solo}"), None).await;
    let r = answer(
        &mut c,
        json!({ "type": "withdraw_proposal", "ref": "w", "topic": format!("session:{solo}"), "proposal_id": id }),
    )
    .await;
    assert_eq!(r["code"], "proposal_not_found", "{r}");
    let r = answer(
        &mut c,
        json!({ "type": "vote_proposal", "ref": "v", "topic": format!("session:{solo}"), "proposal_id": id, "vote": "approve", "extra": 1 }),
    )
    .await;
    assert_eq!(r["code"], "invalid_frame", "{r}");
}

/// The frames by every role (the REST endpoints are in the permission matrix): the outcome
/// is computed from the server's one roles table.
#[actix_web::test]
async fn every_proposal_frame_by_every_role() {
    use bedda_collab::auth::permissions::{Permission, PermissionSet, Role, effective};
    let app = spawn_app().await;
    for role in Role::ALL.iter().copied() {
        let held = effective(role, PermissionSet::EMPTY, PermissionSet::EMPTY);
        let founder = app.register("founder").await;
        let ws = app.create_workspace(&founder, "Roles").await;
        let actor = app.add_member(&founder, ws, "actor", role.as_str()).await;
        let (ballot_session, ballot_topic) = app.create_session(&founder, ws, "workspace").await;
        add_participant(&app, &founder, ballot_session, &actor).await;
        let (status, ballot) = app
            .post(
                &format!("/api/sessions/{ballot_session}/proposals"),
                Some(&founder.token),
                json!({ "model": "offline-echo", "reasoning": "roles" }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{ballot}");
        let (_, free_topic) = app.create_session(&founder, ws, "workspace").await;
        let mut c = app.ws(&actor).await;
        c.subscribe(&ballot_topic, None).await;
        c.subscribe(&free_topic, None).await;
        let frames = [
            (
                Permission::VoteOnModels,
                json!({ "type": "propose_model", "ref": "p", "topic": free_topic, "model": "offline-echo", "reasoning": "r" }),
            ),
            (
                Permission::VoteOnModels,
                json!({ "type": "vote_proposal", "ref": "v", "topic": ballot_topic, "proposal_id": ballot["id"], "vote": "abstain" }),
            ),
            (
                Permission::ManageSessions,
                json!({ "type": "withdraw_proposal", "ref": "w", "topic": ballot_topic, "proposal_id": ballot["id"] }),
            ),
        ];
        for (needs, frame) in frames {
            let label = format!("{} as {role}", frame["type"]);
            let got = answer(&mut c, frame).await;
            if held.contains(needs) {
                assert_eq!(got["type"], "ack", "{label}: {got}");
            } else {
                assert_eq!(got["code"], "permission_denied", "{label}: {got}");
            }
        }
    }
}
