//! A reply whose provider cannot even be reached (nothing listens at `--ai-base-url`) ends
//! `failed`, with the reason, for the asker and everyone in the session.

use super::*;
use crate::common::ws::Duo;

#[actix_web::test]
async fn an_unreachable_provider_ends_the_reply_failed_for_the_asker_and_the_session() {
    // A port nobody listens on: the provider refuses at connect.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", closed.local_addr().unwrap());
    drop(closed);
    let app = spawn_app_with(move |c| {
        c.ai_base_url = Some(url);
        c.ai_models = vec!["fake-large".into()];
        c.ai_timeout_ms = 2_000;
    })
    .await;
    let Duo {
        topic,
        a: mut asker,
        b: mut teammate,
        ..
    } = Duo::start(&app, &app, "editor").await;

    asker.say(&topic, "@ai are you there?", "q").await;
    for client in [&mut asker, &mut teammate] {
        let frames = client
            .until(|f| f["type"] == "event" && f["kind"] == "message.completed")
            .await;
        let completed = &frames.last().unwrap()["data"];
        assert_eq!(completed["status"], "failed", "{frames:#?}");
        assert_eq!(completed["message"]["status"], "failed", "{completed}");
        let reason = completed["error"].as_str().unwrap_or_default();
        assert!(!reason.is_empty(), "the reason is given: {completed}");
    }
}

#[actix_web::test]
async fn a_reply_whose_end_cannot_be_committed_at_first_still_ends_for_everyone() {
    let fake = crate::common::openai::FakeOpenAi::start().await;
    let url = fake.url.clone();
    let app = spawn_app_with(move |c| {
        c.ai_base_url = Some(url);
        c.ai_models = vec!["fake-large".into()];
    })
    .await;
    let owner = app.register("owner").await;
    let ws_id = app.create_workspace(&owner, "Team").await;
    let (_, topic) = app.create_session(&owner, ws_id, "private").await;
    let mut asker = app.ws(&owner).await;
    asker.subscribe(&topic, None).await;
    asker.say(&topic, "@ai medium", "q").await;
    asker.next_of("ai_chunk").await;

    // While it streams, the database refuses to end any reply (as during a failover); a
    // sequence (not rolled back with the refused transaction) counts the refusals.
    let db = app.db.client().await;
    db.batch_execute(
        "CREATE SEQUENCE refusals; \
         CREATE FUNCTION refuse_end() RETURNS trigger LANGUAGE plpgsql AS \
           $$ BEGIN PERFORM nextval('refusals'); RAISE EXCEPTION 'refusing to end a reply'; END $$; \
         CREATE TRIGGER refuse_end BEFORE UPDATE ON generations FOR EACH ROW \
           WHEN (NEW.status <> 'streaming') EXECUTE FUNCTION refuse_end();",
    )
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + ws::WAIT;
    loop {
        let refused: bool = db
            .query_one("SELECT is_called FROM refusals", &[])
            .await
            .unwrap()
            .get(0);
        if refused {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the end was never attempted");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    db.batch_execute("DROP TRIGGER refuse_end ON generations")
        .await
        .unwrap();

    let frames = asker
        .until(|f| f["type"] == "event" && f["kind"] == "message.completed")
        .await;
    let completed = &frames.last().unwrap()["data"];
    assert_eq!(completed["status"], "complete", "{completed}");
    assert!(
        completed["message"]["body"].as_str().unwrap().contains("word14"),
        "{completed}"
    );
}
