//! The durable intent of an AI reply (`ai_requests`). A question that asks the AI writes
//! one in the transaction that commits it (the decision is taken there, by the rule of
//! `ai::asks_ai`), and so does an accepted `regenerate`. The row names the node that owes
//! the start. The transaction that starts the reply (`generation::start`), or ends it as
//! failed when it cannot start (`generation::fail_to_start`), deletes the row: a reply is
//! started at most once per request. When the owning node's lease is gone (it died, was
//! paused past its lease, or restarted under a new id), a surviving node claims the row
//! and starts the reply itself (`adopt`, on every heartbeat). So between the commit of a
//! question and the start of its reply nothing lives only in memory.

use crate::db::schema::{ai_requests, nodes};
use crate::error::{AppError, AppResult};
use crate::events::Event;
use crate::sessions::ai::StartGeneration;
use crate::sessions::registry::LiveSessions;
use diesel::dsl::{exists, now};
use diesel::prelude::*;
use diesel::sql_types;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// A request its own node still has not started this long after it took it is started
/// again by that node's heartbeat (its start failed and so did recording the failure, or
/// the message that should have started it was lost).
pub const RETRY_AFTER: Duration = Duration::from_secs(30);

/// What the reply to a request answers, as the transaction that takes it sees it.
#[derive(Debug, Clone)]
pub struct Request {
    pub reply_to: Uuid,
    pub asked_by: Option<Uuid>,
}

/// Records that a reply to `reply_to` is owed, by `node`, in the caller's transaction.
pub async fn record(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    session_id: Uuid,
    reply_to: Uuid,
    asked_by: Option<Uuid>,
    node: Uuid,
) -> AppResult<()> {
    diesel::insert_into(ai_requests::table)
        .values((
            ai_requests::id.eq(id),
            ai_requests::session_id.eq(session_id),
            ai_requests::reply_to.eq(reply_to),
            ai_requests::asked_by.eq(asked_by),
            ai_requests::node_id.eq(node),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// The request a committed `send_message` wrote, if its message asks the AI: the id of the
/// question (its `message.created` says `asks_ai: true`).
pub fn asked(events: &[Event]) -> Option<Uuid> {
    events
        .iter()
        .find(|e| e.kind == "message.created" && e.data["asks_ai"] == true)
        .and_then(|e| e.data.pointer("/message/id")?.as_str()?.parse().ok())
}

/// Takes a request, in the transaction that starts its reply or ends it as failed: only
/// the node that owns it, and only while that node's lease is valid by the database's
/// clock (DESIGN 7). `None`: it is not this node's to start any more (done already, or
/// claimed by a survivor because this node's lease lapsed).
pub async fn take(conn: &mut AsyncPgConnection, id: Uuid, session_id: Uuid, node: Uuid) -> AppResult<Option<Request>> {
    let alive = nodes::table
        .filter(nodes::id.eq(node))
        .filter(nodes::lease_expires_at.gt(now));
    let row: Option<(Uuid, Option<Uuid>)> = diesel::delete(
        ai_requests::table
            .find(id)
            .filter(ai_requests::session_id.eq(session_id))
            .filter(ai_requests::node_id.eq(node))
            .filter(exists(alive)),
    )
    .returning((ai_requests::reply_to, ai_requests::asked_by))
    .get_result(conn)
    .await
    .optional()?;
    Ok(row.map(|(reply_to, asked_by)| Request { reply_to, asked_by }))
}

#[derive(QueryableByName)]
struct Claimed {
    #[diesel(sql_type = sql_types::Uuid)]
    id: Uuid,
    #[diesel(sql_type = sql_types::Uuid)]
    session_id: Uuid,
    #[diesel(sql_type = sql_types::Uuid)]
    workspace_id: Uuid,
}

/// Claims for `node` (while its own lease is valid) every request whose node has no
/// valid lease any more, and its own requests taken more than `retry_after` ago.
/// Several nodes may race: the row update decides who gets each request.
async fn claim(conn: &mut AsyncPgConnection, node: Uuid, retry_after: Duration) -> AppResult<Vec<Claimed>> {
    Ok(diesel::sql_query(
        "UPDATE ai_requests r SET node_id = $1, claimed_at = now() \
         FROM chat_sessions s \
         WHERE s.id = r.session_id \
           AND EXISTS (SELECT 1 FROM nodes WHERE id = $1 AND lease_expires_at > now()) \
           AND ((r.node_id = $1 AND r.claimed_at < now() - $2 * interval '1 millisecond') \
             OR (r.node_id <> $1 AND NOT EXISTS \
                   (SELECT 1 FROM nodes n WHERE n.id = r.node_id AND n.lease_expires_at > now()))) \
         RETURNING r.id, r.session_id, s.workspace_id",
    )
    .bind::<sql_types::Uuid, _>(node)
    .bind::<sql_types::BigInt, _>(retry_after.as_millis() as i64)
    .load(conn)
    .await?)
}

/// On every heartbeat: claims the requests owed by nodes that are gone (and this node's
/// own stale ones) and starts their replies here, each in its session's actor.
pub async fn adopt(live: Arc<LiveSessions>) {
    let node = live.bus().node_id().0;
    let retry_after = RETRY_AFTER + live.ai().start_delay;
    let claimed = async {
        let mut conn = live.pool().get().await?;
        claim(&mut conn, node, retry_after).await
    }
    .await;
    let claimed = match claimed {
        Ok(claimed) if claimed.is_empty() => return,
        Ok(claimed) => claimed,
        Err(err) => {
            tracing::warn!(error = %err, "claiming unstarted AI replies failed");
            return;
        }
    };
    tracing::warn!(
        count = claimed.len(),
        "starting AI replies that no live node had started"
    );
    // Actors start on the system arbiter (the heartbeat is a plain tokio task).
    let spawned = actix::System::current().arbiter().spawn_fn(move || {
        for request in claimed {
            live.get_or_spawn(request.session_id, request.workspace_id)
                .do_send(StartGeneration { request: request.id });
        }
    });
    if !spawned {
        tracing::warn!("the actor system is gone; the claimed AI replies will be retried");
    }
}

/// Why a reply that could not be started says so (`message.completed` → `error`).
pub fn start_failure(err: &AppError) -> String {
    format!("the server could not start this reply ({})", err.body().message)
}
