//! The group-commit writer behind each `LiveSession`: commits the writes that queued up
//! while the previous group was committing in one transaction with one NOTIFY, then sends
//! the acks. A group that fails is retried one write at a time so one bad write cannot
//! sink the others; a write that does not commit gets an error, never an ack.

use crate::cluster::Bus;
use crate::db::DbPool;
use crate::error::{AppError, ErrorCode};
use crate::events::{self, Event};
use crate::sessions::ai::Asked;
use crate::sessions::live::{ClientHandle, LiveSession, Publish, ToClient, WritesDone, error_frame, frame};
use crate::sessions::store::{self, Action};
use actix::Addr;
use diesel_async::AsyncConnection;
use diesel_async::scoped_futures::ScopedFutureExt;
use serde_json::json;
use std::sync::Arc;
use tokio::sync::mpsc;
use uuid::Uuid;

pub struct WriteJob {
    pub user_id: Uuid,
    pub reference: Option<String>,
    pub action: Action,
    pub reply: ClientHandle,
}

pub async fn writer_loop(
    pool: DbPool,
    bus: Arc<Bus>,
    session_id: Uuid,
    max_batch: usize,
    mut rx: mpsc::UnboundedReceiver<WriteJob>,
    session: Addr<LiveSession>,
) {
    let topic = events::session_topic(session_id);
    while let Some(batch) = crate::sys::recv_batch(&mut rx, max_batch).await {
        let n = batch.len();
        let started = std::time::Instant::now();
        let outcomes = match commit(&pool, &bus, session_id, &batch).await {
            Ok(outcomes) => outcomes,
            Err(err) => {
                tracing::warn!(error = %err, %topic, jobs = n, "group commit failed; retrying one by one");
                let mut outcomes = Vec::with_capacity(n);
                for job in &batch {
                    let one = commit(&pool, &bus, session_id, std::slice::from_ref(job)).await;
                    outcomes.push(one.and_then(|mut o| o.pop().expect("one outcome")));
                }
                outcomes
            }
        };
        tracing::debug!(
            jobs = n,
            elapsed_us = started.elapsed().as_micros() as u64,
            "group committed"
        );
        let committed: Vec<Event> = outcomes
            .iter()
            .filter_map(|o| o.as_ref().ok())
            .flatten()
            .cloned()
            .collect();
        if !committed.is_empty() {
            session.do_send(Publish(committed));
        }
        for (job, outcome) in batch.iter().zip(outcomes) {
            let reference = job.reference.as_deref();
            if let Ok(events) = &outcome
                && let Some(request) = crate::ai::intent::asked(events)
            {
                session.do_send(Asked { request });
            }
            let frame = match outcome {
                Ok(events) => {
                    let seq = events.last().map(|e| e.seq);
                    frame(json!({ "type": "ack", "ref": reference, "topic": topic, "seq": seq }))
                }
                Err(err) => error_frame(reference, Some(&topic), &err),
            };
            job.reply.do_send(ToClient::Frame(frame));
        }
        session.do_send(WritesDone(n));
    }
}

type Outcome = Result<Vec<Event>, AppError>;

/// One transaction (and one NOTIFY) for a group of writes. Rule violations (permission,
/// validation) are per-write outcomes; a database error fails the whole group.
async fn commit(pool: &DbPool, bus: &Bus, session_id: Uuid, batch: &[WriteJob]) -> Result<Vec<Outcome>, AppError> {
    let mut conn = pool.get().await?;
    conn.transaction::<_, AppError, _>(|conn| {
        async move {
            let mut outcomes = Vec::with_capacity(batch.len());
            for job in batch {
                match store::apply(conn, session_id, job.user_id, job.action.clone(), bus.node_id()).await {
                    Err(err) if err.code == ErrorCode::Internal || err.code == ErrorCode::ServiceUnavailable => {
                        return Err(err);
                    }
                    outcome => outcomes.push(outcome),
                }
            }
            let committed: Vec<Event> = outcomes
                .iter()
                .filter_map(|o| o.as_ref().ok())
                .flatten()
                .cloned()
                .collect();
            bus.notify_events(conn, &events::session_topic(session_id), &committed)
                .await?;
            Ok(outcomes)
        }
        .scope_boxed()
    })
    .await
}
