//! The durable intent of an AI reply (`ai_requests`). A question that asks the AI writes
//! one in the transaction that commits it (the decision is taken there, by the rule of
//! `ai::asks_ai`), and so does an accepted `regenerate`. The row names the node that owes
//! the start. The transaction that starts the reply (`generation::start`), or ends it as
//! failed when it cannot start (`generation::fail_to_start`), deletes the row: a reply is
//! started at most once per request. When the owning node's lease is gone (it died, was
//! paused past its lease, or restarted under a new id), a surviving node claims the row
//! and starts the reply itself (`adopt`, on every heartbeat). So between the commit of a
//! question and the start of its reply nothing lives only in memory. At most one reply is
//! owed per question at a time (a unique index; `regenerate` checks it, DECISIONS 39), and
//! a request whose start has been tried `--ai-start-attempts` times ends `failed`.

use crate::db::schema::{ai_requests, generations, messages, nodes};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::events::Event;
use crate::sessions::ai::{GiveUpGeneration, StartGeneration};
use crate::sessions::registry::LiveSessions;
use diesel::dsl::{exists, now};
use diesel::prelude::*;
use diesel::sql_types;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// The default of `--ai-retry-after-ms`: a request its own node still has not started this
/// long after it took it is started again by that node's heartbeat (its start failed and so
/// did recording the failure, or the message that should have started it was lost).
pub const RETRY_AFTER: Duration = Duration::from_secs(30);

/// What the reply to a request answers, as the transaction that takes it sees it.
#[derive(Debug, Clone)]
pub struct Request {
    pub reply_to: Uuid,
    pub asked_by: Option<Uuid>,
}

/// Records that a reply to `reply_to` is owed, by `node`, in the caller's transaction;
/// `generation_in_progress` when one is owed already (one request per question).
pub async fn record(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    session_id: Uuid,
    reply_to: Uuid,
    asked_by: Option<Uuid>,
    node: Uuid,
) -> AppResult<()> {
    let inserted = diesel::insert_into(ai_requests::table)
        .values((
            ai_requests::id.eq(id),
            ai_requests::session_id.eq(session_id),
            ai_requests::reply_to.eq(reply_to),
            ai_requests::asked_by.eq(asked_by),
            ai_requests::node_id.eq(node),
        ))
        .on_conflict(ai_requests::reply_to)
        .do_nothing()
        .execute(conn)
        .await?;
    if inserted == 0 {
        return Err(in_progress());
    }
    Ok(())
}

/// Records a `regenerate` of a reply to `reply_to`: a new reply is owed by `node`, unless
/// one is owed or streaming already, which is `generation_in_progress` (two regenerates of
/// one reply, on one node or on two, start one reply: DECISIONS 39). Regenerates of one
/// question take turns on its message row, so each sees the other's request or, once that
/// was started, its streaming reply (the start swaps one for the other in one transaction).
pub async fn regenerate(
    conn: &mut AsyncPgConnection,
    session_id: Uuid,
    reply_to: Uuid,
    asked_by: Uuid,
    node: Uuid,
) -> AppResult<Uuid> {
    conn.transaction::<_, AppError, _>(async |conn| {
        messages::table
            .find(reply_to)
            .filter(messages::session_id.eq(session_id))
            .select(messages::id)
            .for_no_key_update()
            .first::<Uuid>(conn)
            .await
            .optional()?
            .ok_or_else(|| AppError::new(ErrorCode::MessageNotFound, "no such message to answer"))?;
        let owed = ai_requests::table.filter(ai_requests::reply_to.eq(reply_to));
        let streaming = generations::table
            .filter(generations::reply_to.eq(reply_to))
            .filter(generations::status.eq("streaming"));
        let busy: bool = diesel::select(exists(owed).or(exists(streaming)))
            .get_result(conn)
            .await?;
        if busy {
            return Err(in_progress());
        }
        let id = Uuid::new_v4();
        record(conn, id, session_id, reply_to, Some(asked_by), node).await?;
        Ok(id)
    })
    .await
}

fn in_progress() -> AppError {
    AppError::new(
        ErrorCode::GenerationInProgress,
        "a reply to this question is already being generated; stop it or wait for it to end",
    )
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
    /// Tries of its start, this one included.
    #[diesel(sql_type = sql_types::Integer)]
    attempts: i32,
}

/// Whether anything is there to claim (the same condition as `claim`, read only): what
/// every heartbeat runs when, as nearly always, nothing is owed by a dead node or stale.
async fn anything_to_claim(conn: &mut AsyncPgConnection, node: Uuid, retry_after: Duration) -> AppResult<bool> {
    #[derive(QueryableByName)]
    struct Any {
        #[diesel(sql_type = sql_types::Bool)]
        any: bool,
    }
    let row: Any = diesel::sql_query(
        "SELECT EXISTS (SELECT 1 FROM ai_requests r \
         WHERE (r.node_id = $1 AND r.claimed_at < now() - $2 * interval '1 millisecond') \
            OR (r.node_id <> $1 AND NOT EXISTS \
                  (SELECT 1 FROM nodes n WHERE n.id = r.node_id AND n.lease_expires_at > now()))) AS any",
    )
    .bind::<sql_types::Uuid, _>(node)
    .bind::<sql_types::BigInt, _>(retry_after.as_millis() as i64)
    .get_result(conn)
    .await?;
    Ok(row.any)
}

/// Claims for `node` (while its own lease is valid) every request whose node has no
/// valid lease any more, and its own requests taken more than `retry_after` ago.
/// Several nodes may race: the row update decides who gets each request. Each claim
/// counts one more try of the request's start.
async fn claim(conn: &mut AsyncPgConnection, node: Uuid, retry_after: Duration) -> AppResult<Vec<Claimed>> {
    Ok(diesel::sql_query(
        "UPDATE ai_requests r SET node_id = $1, claimed_at = now(), attempts = r.attempts + 1 \
         FROM chat_sessions s \
         WHERE s.id = r.session_id \
           AND EXISTS (SELECT 1 FROM nodes WHERE id = $1 AND lease_expires_at > now()) \
           AND ((r.node_id = $1 AND r.claimed_at < now() - $2 * interval '1 millisecond') \
             OR (r.node_id <> $1 AND NOT EXISTS \
                   (SELECT 1 FROM nodes n WHERE n.id = r.node_id AND n.lease_expires_at > now()))) \
         RETURNING r.id, r.session_id, s.workspace_id, r.attempts",
    )
    .bind::<sql_types::Uuid, _>(node)
    .bind::<sql_types::BigInt, _>(retry_after.as_millis() as i64)
    .load(conn)
    .await?)
}

/// On every heartbeat: claims the requests owed by nodes that are gone (and this node's
/// own stale ones) and starts their replies here, each in its session's actor; a request
/// tried more than `--ai-start-attempts` times ends `failed` instead. One checkout and,
/// when nothing is to be claimed, one read-only statement.
pub async fn adopt(live: Arc<LiveSessions>) {
    let node = live.bus().node_id().0;
    let (retry_after, max_attempts) = {
        let ai = live.ai();
        (ai.retry_after + ai.start_delay, ai.start_attempts)
    };
    let claimed = async {
        let mut conn = live.pool().get().await?;
        if !anything_to_claim(&mut conn, node, retry_after).await? {
            return Ok(Vec::new());
        }
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
            let session = live.get_or_spawn(request.session_id, request.workspace_id);
            if request.attempts > max_attempts as i32 {
                session.do_send(GiveUpGeneration {
                    request: request.id,
                    reason: gave_up(request.attempts - 1),
                });
            } else {
                session.do_send(StartGeneration { request: request.id });
            }
        }
    });
    if !spawned {
        tracing::warn!("the actor system is gone; the claimed AI replies will be retried");
    }
}

/// Why a reply whose start was tried `tries` times and never succeeded says so.
pub fn gave_up(tries: i32) -> String {
    format!("the server could not start this reply ({tries} attempts); ask again or regenerate it")
}

/// Why a reply that could not be started says so (`message.completed` → `error`).
pub fn start_failure(err: &AppError) -> String {
    format!("the server could not start this reply ({})", err.body().message)
}
