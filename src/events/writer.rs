//! The group-commit writer behind a topic actor: the writes that queued up while the
//! previous group was committing go into one transaction with one NOTIFY (DESIGN
//! principle 3); acks wait for the commit. A group that fails is written again in one
//! transaction with a savepoint per write, so a bad write is dropped with its own error
//! and the others still commit together (one transaction, one NOTIFY: one bad row cannot
//! slow everyone); only if that fails too (the commit itself failed) is it retried one
//! write at a time. A write that does not commit is reported as failed, never
//! acknowledged.

use crate::cluster::Hub;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::events::{self, Event};
use actix::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use futures_util::future::BoxFuture;
use scoped_futures::ScopedFutureExt;
use std::sync::Arc;
use tokio::sync::mpsc;

/// A write's outcome: the events it committed, or why it was refused.
pub type Outcome = AppResult<Vec<Event>>;

/// What [`GroupCommit::write`] returns: each job's outcome, or the group's failure.
pub type Written<'c> = BoxFuture<'c, AppResult<Vec<Outcome>>>;

/// What a topic's writes are and how they are told their outcome.
pub trait GroupCommit: Send + Sync + 'static {
    type Job: Send + Sync + 'static;

    /// Writes a group in the open transaction. A rule violation (permission, validation)
    /// is that job's outcome; database trouble ([`is_fatal`]) must be returned as `Err`,
    /// which fails the whole group.
    fn write<'c>(
        &'c self,
        conn: &'c mut AsyncPgConnection,
        jobs: &'c [Self::Job],
    ) -> BoxFuture<'c, AppResult<Vec<Outcome>>>;

    /// After the commit (the events are already delivered locally): tell the writers.
    fn finish(&self, jobs: Vec<Self::Job>, outcomes: Vec<Outcome>);
}

/// The writer finished `n` jobs (the actor may stop once none are in flight).
#[derive(Message)]
#[rtype(result = "()")]
pub struct WritesDone(pub usize);

/// Starts a writer; jobs sent to the returned channel are committed in groups of at most
/// `max_batch`.
pub fn spawn<W: GroupCommit>(
    hub: Arc<Hub>,
    writer: W,
    max_batch: usize,
    done: Recipient<WritesDone>,
) -> mpsc::UnboundedSender<W::Job> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    actix::spawn(async move {
        while let Some(batch) = crate::sys::recv_batch(&mut rx, max_batch).await {
            let n = batch.len();
            let started = std::time::Instant::now();
            let outcomes = match commit(&hub, &writer, &batch).await {
                Ok(outcomes) => outcomes,
                Err(err) => {
                    let isolated = if n > 1 {
                        tracing::warn!(error = %err, jobs = n, "group commit failed; writing each in a savepoint");
                        commit_isolated(&hub, &writer, &batch).await
                    } else {
                        Err(err)
                    };
                    match isolated {
                        Ok(outcomes) => outcomes,
                        Err(err) => {
                            tracing::warn!(error = %err, jobs = n, "group commit failed; retrying one by one");
                            let mut outcomes = Vec::with_capacity(n);
                            for job in &batch {
                                let one = commit(&hub, &writer, std::slice::from_ref(job)).await;
                                outcomes.push(one.and_then(|mut o| o.pop().expect("one outcome")));
                            }
                            outcomes
                        }
                    }
                }
            };
            tracing::debug!(
                jobs = n,
                elapsed_us = started.elapsed().as_micros() as u64,
                "group committed"
            );
            writer.finish(batch, outcomes);
            done.do_send(WritesDone(n));
        }
    });
    tx
}

/// One transaction (and one NOTIFY) for a group; its events are delivered locally.
async fn commit<W: GroupCommit>(hub: &Hub, writer: &W, batch: &[W::Job]) -> AppResult<Vec<Outcome>> {
    let mut conn = hub.pool.get().await?;
    let committed = events::commit(&mut conn, hub, |conn| {
        async move {
            let outcomes = writer.write(conn, batch).await?;
            let events = outcomes.clone_events();
            Ok((outcomes, events))
        }
        .scope_boxed()
    })
    .await?;
    Ok(committed.publish(hub))
}

/// Like [`commit`], with each job in a savepoint of its own: a job that fails (whatever
/// the error) is rolled back alone and reported with its error; the rest commit together.
async fn commit_isolated<W: GroupCommit>(hub: &Hub, writer: &W, batch: &[W::Job]) -> AppResult<Vec<Outcome>> {
    let mut conn = hub.pool.get().await?;
    let committed = events::commit(&mut conn, hub, |conn| {
        async move {
            let mut outcomes = Vec::with_capacity(batch.len());
            for job in batch {
                let one = conn
                    .transaction::<_, AppError, _>(async |conn| {
                        let mut written = writer.write(conn, std::slice::from_ref(job)).await?;
                        written.pop().expect("one outcome")
                    })
                    .await;
                outcomes.push(one);
            }
            let events = outcomes.clone_events();
            Ok((outcomes, events))
        }
        .scope_boxed()
    })
    .await?;
    Ok(committed.publish(hub))
}

/// The events of the jobs that succeeded.
trait CloneEvents {
    fn clone_events(&self) -> Vec<Event>;
}

impl CloneEvents for Vec<Outcome> {
    fn clone_events(&self) -> Vec<Event> {
        self.iter().filter_map(|o| o.as_ref().ok()).flatten().cloned().collect()
    }
}

/// Database trouble, as opposed to a rule the write broke. An error the database raised
/// counts even when it is the caller's fault (text Postgres refuses): the transaction is
/// aborted, so the group must fail rather than commit — Postgres would silently roll back.
pub fn is_fatal(err: &AppError) -> bool {
    err.code == ErrorCode::Internal || err.code == ErrorCode::ServiceUnavailable || err.from_database()
}
