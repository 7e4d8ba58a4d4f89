//! What a `LiveSession`'s group-commit writer commits (`events::writer` runs it): each
//! write is authorized and applied in the group's transaction; after the commit each
//! writer gets its `ack` (or its error), and a committed question may start an AI reply.

use crate::error::AppResult;
use crate::events::writer::{GroupCommit, Outcome, is_fatal};
use crate::sessions::ai::Asked;
use crate::sessions::live::LiveSession;
use crate::sessions::store::{self, Action};
use crate::transport::{ClientHandle, ack_frame, error_frame};
use actix::Addr;
use diesel_async::AsyncPgConnection;
use futures_util::future::BoxFuture;
use uuid::Uuid;

pub struct WriteJob {
    pub user_id: Uuid,
    pub reference: Option<String>,
    pub action: Action,
    pub reply: ClientHandle,
}

pub struct SessionWriter {
    pub session_id: Uuid,
    pub topic: String,
    pub session: Addr<LiveSession>,
}

impl GroupCommit for SessionWriter {
    type Job = WriteJob;

    fn write<'c>(
        &'c self,
        conn: &'c mut AsyncPgConnection,
        jobs: &'c [WriteJob],
    ) -> BoxFuture<'c, AppResult<Vec<Outcome>>> {
        Box::pin(async move {
            let mut outcomes = Vec::with_capacity(jobs.len());
            for job in jobs {
                match store::apply(conn, self.session_id, job.user_id, job.action.clone()).await {
                    Err(err) if is_fatal(&err) => return Err(err),
                    outcome => outcomes.push(outcome),
                }
            }
            Ok(outcomes)
        })
    }

    fn finish(&self, jobs: Vec<WriteJob>, outcomes: Vec<Outcome>) {
        for (job, outcome) in jobs.into_iter().zip(outcomes) {
            let reference = job.reference.as_deref();
            if let (Action::Send { body }, Ok(events)) = (&job.action, &outcome)
                && let Some(id) = events
                    .iter()
                    .find(|e| e.kind == "message.created")
                    .and_then(|e| e.data.pointer("/message/id")?.as_str()?.parse().ok())
            {
                self.session.do_send(Asked {
                    message_id: id,
                    asked_by: job.user_id,
                    body: body.clone(),
                });
            }
            let frame = match outcome {
                Ok(events) => ack_frame(reference, &self.topic, events.last().map(|e| e.seq)),
                Err(err) => error_frame(reference, Some(&self.topic), &err),
            };
            job.reply.frame(frame);
        }
    }
}
