//! What a `LiveSession`'s group-commit writer commits (`events::writer` runs it): each
//! write is authorized and applied in the group's transaction (a question to the AI records
//! its durable request there too, `ai::intent`); after the commit each writer gets its `ack`
//! (or its error), and each recorded request starts its reply.

use crate::cluster::Bus;
use crate::events::writer::{GroupCommit, Outcome, Written, is_fatal};
use crate::sessions::ai::Asked;
use crate::sessions::live::LiveSession;
use crate::sessions::store::{self, Action};
use crate::transport::{ClientHandle, ack_frame, error_frame};
use actix::Addr;
use diesel_async::AsyncPgConnection;
use std::sync::Arc;
use uuid::Uuid;

pub struct WriteJob {
    pub user_id: Uuid,
    pub reference: Option<String>,
    pub action: Action,
    pub reply: ClientHandle,
}

pub struct SessionWriter {
    pub session_id: Uuid,
    /// This node (its id is the owner of the AI requests a message records).
    pub bus: Arc<Bus>,
    pub topic: String,
    pub session: Addr<LiveSession>,
}

impl GroupCommit for SessionWriter {
    type Job = WriteJob;

    fn write<'c>(&'c self, conn: &'c mut AsyncPgConnection, jobs: &'c [WriteJob]) -> Written<'c> {
        Box::pin(async move {
            let mut outcomes = Vec::with_capacity(jobs.len());
            for job in jobs {
                let node = self.bus.node_id().0;
                match store::apply(conn, self.session_id, job.user_id, job.action.clone(), node).await {
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
            if let Ok(events) = &outcome
                && let Some(request) = crate::ai::intent::asked(events)
            {
                self.session.do_send(Asked { request });
            }
            let frame = match outcome {
                Ok(events) => ack_frame(reference, &self.topic, events.last().map(|e| e.seq)),
                Err(err) => error_frame(reference, Some(&self.topic), &err),
            };
            job.reply.frame(frame);
        }
    }
}
