//! AI replies inside a `LiveSession`: start a generation on the node that received the
//! question, stream it to everyone as numbered chunks coalesced per tick (UTF-16 offsets),
//! checkpoint the partial text, honour stop (from any node) and regenerate, and commit the
//! end. Chunks from generations on other nodes arrive over the bus.

use crate::ai::generation::{self, Ending};
use crate::ai::intent;
use crate::ai::provider::{ChatRequest, StreamEvent};
use crate::auth::Permission;
use crate::error::{AppError, ErrorCode};
use crate::sessions::access::session_access;
use crate::sessions::live::LiveSession;
use crate::sessions::protocol::SessionEphemeral;
use crate::sessions::registry::KIND;
use crate::transport::{ClientHandle, ServerFrame, ack_frame, error_frame};
use actix::prelude::*;
use futures_util::StreamExt;
use std::time::Instant;
use tokio::sync::oneshot;
use uuid::Uuid;

/// A reply being streamed in this session (by this node or another).
pub struct Reply {
    /// Text delivered so far.
    pub text: String,
    /// Text received and not yet sent (coalesced until the next tick).
    pub pending: String,
    /// Whether `text` is known from the first chunk on (false when we joined mid-reply).
    pub complete_prefix: bool,
    pub model: String,
    /// Set when this node runs the generation.
    pub local: Option<LocalReply>,
}

pub struct LocalReply {
    pub cancel: Option<oneshot::Sender<()>>,
    pub usage: Option<(u32, u32)>,
    pub last_checkpoint: Instant,
    pub ending: Option<Ending>,
}

fn utf16_len(s: &str) -> usize {
    s.encode_utf16().count()
}

/// A committed user message asked the AI: its transaction wrote the request
/// (`ai::intent`) whose id is the question's.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Asked {
    pub request: Uuid,
}

/// Start the reply owed by a request of this session (`ai_requests`) that this node owns.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StartGeneration {
    pub request: Uuid,
}

/// End a request of this session, which this node owns, as failed without trying its
/// start again: it was tried `--ai-start-attempts` times (`intent::adopt`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct GiveUpGeneration {
    pub request: Uuid,
    pub reason: String,
}

#[derive(Message)]
#[rtype(result = "()")]
struct Delta {
    id: Uuid,
    event: Result<StreamEvent, String>,
}

#[derive(Message)]
#[rtype(result = "()")]
struct StreamEnded {
    id: Uuid,
    stopped: bool,
    /// Earlier attempts to commit the end (it is retried until it commits).
    attempt: u32,
}

/// How long to wait before committing the end of a reply again after `attempt` failures:
/// 0.5 s, doubling, at most 30 s.
fn end_retry_delay(attempt: u32) -> std::time::Duration {
    std::time::Duration::from_millis(500u64.saturating_mul(1 << attempt.min(6)).min(30_000))
}

/// A chunk of a reply generated on another node.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RemoteChunk {
    pub message_id: Uuid,
    pub offset: usize,
    pub text: String,
    pub model: String,
}

/// Stop a reply this node is generating (asked on another node).
#[derive(Message)]
#[rtype(result = "()")]
pub struct CancelGeneration(pub Uuid);

/// A participant asks to stop or regenerate a reply.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ControlGeneration {
    pub user_id: Uuid,
    pub message_id: Uuid,
    pub regenerate: bool,
    pub reference: Option<String>,
    pub reply: ClientHandle,
}

impl LiveSession {
    /// Sends what accumulated since the last tick, and checkpoints local replies now and then.
    pub(super) fn flush_generations(&mut self, ctx: &mut Context<Self>) {
        let checkpoint_every = self.ai.checkpoint_interval;
        let mut frames = Vec::new();
        let mut checkpoints = Vec::new();
        for (id, reply) in self.replies.iter_mut() {
            if !reply.pending.is_empty() {
                let offset = utf16_len(&reply.text);
                let text = std::mem::take(&mut reply.pending);
                reply.text.push_str(&text);
                frames.push((*id, offset, text, reply.model.clone(), reply.local.is_some()));
            }
            if let Some(local) = &mut reply.local
                && local.ending.is_none()
                && local.last_checkpoint.elapsed() >= checkpoint_every
            {
                local.last_checkpoint = Instant::now();
                checkpoints.push((*id, reply.text.clone()));
            }
        }
        for (id, offset, text, model, local) in frames {
            let chunk = ServerFrame::AiChunk {
                topic: &self.topic,
                message_id: id,
                offset,
                text: &text,
            };
            self.broadcast(&chunk.encode(), None);
            if local {
                let chunk = SessionEphemeral::AiChunk {
                    session: self.session_id,
                    message_id: id,
                    offset,
                    text,
                    model,
                };
                self.bus.room_ephemeral(KIND, &chunk, true);
            }
        }
        for (id, text) in checkpoints {
            let pool = self.pool.clone();
            let save = async move {
                let mut conn = pool.get().await?;
                generation::checkpoint(&mut conn, id, &text).await
            };
            ctx.spawn(save.into_actor(self).map(move |result, act, _| match result {
                Ok(true) => act.cancel_local(id),
                Ok(false) => {}
                Err(err) => tracing::warn!(error = %err, "checkpointing a reply failed"),
            }));
        }
    }

    /// A reply that could not start ends as failed, for everyone. If even that cannot be
    /// written, the request stays in `ai_requests` and this node's heartbeat retries it.
    fn fail_to_start(&mut self, request: Uuid, model: String, reason: String, ctx: &mut Context<Self>) {
        let (pool, hub, session_id) = (self.pool.clone(), self.registry.hub(), self.session_id);
        let fail = async move {
            let mut conn = pool.get().await?;
            generation::fail_to_start(&mut conn, &hub, session_id, request, model, reason).await
        };
        ctx.spawn(fail.into_actor(self).map(move |result, act, ctx| {
            match result {
                Ok(committed) => committed.publish_to(|events| act.accept(events, ctx)),
                Err(err) => {
                    tracing::error!(error = %err, %request, "could not record a failed AI reply; it will be retried")
                }
            }
            act.schedule_idle_stop(ctx);
        }));
    }

    fn cancel_local(&mut self, id: Uuid) {
        if let Some(local) = self.replies.get_mut(&id).and_then(|g| g.local.as_mut())
            && let Some(cancel) = local.cancel.take()
        {
            let _ = cancel.send(());
        }
    }

    /// The replies streaming now, as (message, model, text so far): what this node has
    /// seen from their first chunk on, else their last checkpoint.
    pub(super) fn generations_snapshot<'a>(
        &'a self,
        checkpoints: &'a [(Uuid, String, String)],
    ) -> Vec<(Uuid, &'a str, &'a str)> {
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (id, reply) in &self.replies {
            if reply.complete_prefix {
                seen.insert(*id);
                out.push((*id, reply.model.as_str(), reply.text.as_str()));
            }
        }
        for (id, model, partial) in checkpoints {
            if seen.insert(*id) {
                out.push((*id, model.as_str(), partial.as_str()));
            }
        }
        out
    }

    /// A `message.completed` was committed: the reply is over.
    pub(super) fn generation_completed(&mut self, message_id: Uuid) {
        self.replies.remove(&message_id);
        if self.finished_replies.len() > 256 {
            self.finished_replies.clear();
        }
        self.finished_replies.insert(message_id);
    }
}

impl Handler<Asked> for LiveSession {
    type Result = ();

    fn handle(&mut self, msg: Asked, ctx: &mut Self::Context) {
        ctx.notify(StartGeneration { request: msg.request });
    }
}

impl Handler<StartGeneration> for LiveSession {
    type Result = ();

    fn handle(&mut self, msg: StartGeneration, ctx: &mut Self::Context) {
        let model = self.ai.model_for(self.default_model.as_deref());
        let (pool, hub, session_id, budget) = (
            self.pool.clone(),
            self.registry.hub(),
            self.session_id,
            self.ai.history_tokens,
        );
        let (model2, delay, request) = (model.clone(), self.ai.start_delay, msg.request);
        let start = async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let mut conn = pool.get().await?;
            generation::start(&mut conn, &hub, session_id, request, model2, budget).await
        };
        ctx.spawn(start.into_actor(self).map(move |result, act, ctx| {
            let started = match result.map(|c| c.publish_to(|events| act.accept(events, ctx))) {
                Ok(Some(started)) => started,
                Ok(None) => {
                    // Started (or failed) already, or claimed by another node.
                    act.schedule_idle_stop(ctx);
                    return;
                }
                Err(err) if err.code == ErrorCode::ServiceUnavailable => {
                    // The database is briefly out of reach: the request stays, and this
                    // node's heartbeat starts it again (`intent::adopt`).
                    tracing::warn!(error = %err, %request, "could not start an AI reply yet; it will be retried");
                    act.schedule_idle_stop(ctx);
                    return;
                }
                Err(err) => {
                    tracing::warn!(error = %err, %request, "could not start an AI reply; ending it as failed");
                    act.fail_to_start(request, model, intent::start_failure(&err), ctx);
                    return;
                }
            };
            let id = started.message.id;
            let (cancel_tx, mut cancel_rx) = oneshot::channel();
            act.ensure_ticking(ctx);
            act.replies.insert(
                id,
                Reply {
                    text: String::new(),
                    pending: String::new(),
                    complete_prefix: true,
                    model: model.clone(),
                    local: Some(LocalReply {
                        cancel: Some(cancel_tx),
                        usage: None,
                        last_checkpoint: Instant::now(),
                        ending: None,
                    }),
                },
            );
            let request = ChatRequest {
                model,
                messages: started.history,
                max_tokens: act.ai.max_tokens,
            };
            let mut stream = act.ai.provider.stream(request);
            let me = ctx.address();
            actix::spawn(async move {
                loop {
                    tokio::select! {
                        _ = &mut cancel_rx => {
                            me.do_send(StreamEnded { id, stopped: true, attempt: 0 });
                            return;
                        }
                        item = stream.next() => match item {
                            Some(event) => {
                                let failed = event.is_err();
                                me.do_send(Delta { id, event: event.map_err(|e| e.to_string()) });
                                if failed {
                                    me.do_send(StreamEnded { id, stopped: false, attempt: 0 });
                                    return;
                                }
                            }
                            None => {
                                me.do_send(StreamEnded { id, stopped: false, attempt: 0 });
                                return;
                            }
                        }
                    }
                }
            });
        }));
    }
}

impl Handler<GiveUpGeneration> for LiveSession {
    type Result = ();

    fn handle(&mut self, msg: GiveUpGeneration, ctx: &mut Self::Context) {
        tracing::warn!(request = %msg.request, "an AI reply could not start after every attempt; ending it as failed");
        let model = self.ai.model_for(self.default_model.as_deref());
        self.fail_to_start(msg.request, model, msg.reason, ctx);
    }
}

impl Handler<Delta> for LiveSession {
    type Result = ();

    fn handle(&mut self, msg: Delta, _ctx: &mut Self::Context) {
        let Some(reply) = self.replies.get_mut(&msg.id) else {
            return;
        };
        let Some(local) = reply.local.as_mut() else { return };
        match msg.event {
            Ok(StreamEvent::Delta(text)) => reply.pending.push_str(&text),
            Ok(StreamEvent::Usage {
                prompt_tokens,
                completion_tokens,
            }) => {
                local.usage = Some((prompt_tokens, completion_tokens));
            }
            Err(reason) => local.ending = Some(Ending::Failed(reason)),
        }
    }
}

impl Handler<StreamEnded> for LiveSession {
    type Result = ();

    fn handle(&mut self, msg: StreamEnded, ctx: &mut Self::Context) {
        self.flush_generations(ctx);
        let Some(reply) = self.replies.get_mut(&msg.id) else {
            return;
        };
        let Some(local) = reply.local.as_mut() else { return };
        let ending = match local.ending.take() {
            Some(failed) => failed,
            None if msg.stopped => Ending::Stopped,
            None => Ending::Complete,
        };
        local.ending = Some(ending.clone());
        let (pool, hub, text, usage, id) = (
            self.pool.clone(),
            self.registry.hub(),
            reply.text.clone(),
            local.usage,
            msg.id,
        );
        let finish = async move {
            let mut conn = pool.get().await?;
            generation::finish(&mut conn, &hub, id, &text, &ending, usage).await
        };
        ctx.spawn(finish.into_actor(self).map(move |result, act, ctx| match result {
            Ok(committed) => {
                if committed.events().is_empty() {
                    // It had ended already (marked interrupted meanwhile).
                    act.generation_completed(id);
                }
                committed.publish_to(|events| act.accept(events, ctx));
                act.schedule_idle_stop(ctx);
            }
            Err(err) => {
                // Left alone, the reply would stay `streaming` for everyone, with its node alive
                // (no lease expiry ends it): the end is kept here and committed again later.
                let delay = end_retry_delay(msg.attempt);
                tracing::warn!(error = %err, message = %id, ?delay, "could not commit the end of an AI reply; retrying");
                let again = StreamEnded {
                    id,
                    stopped: msg.stopped,
                    attempt: msg.attempt + 1,
                };
                ctx.notify_later(again, delay);
            }
        }));
    }
}

impl Handler<RemoteChunk> for LiveSession {
    type Result = ();

    fn handle(&mut self, msg: RemoteChunk, ctx: &mut Self::Context) {
        self.ensure_ticking(ctx);
        if self.finished_replies.contains(&msg.message_id) {
            return; // the bus delivered it after the reply's end: the end has the full text
        }
        let reply = self.replies.entry(msg.message_id).or_insert_with(|| Reply {
            text: String::new(),
            pending: String::new(),
            complete_prefix: msg.offset == 0,
            model: msg.model.clone(),
            local: None,
        });
        if reply.local.is_some() {
            return;
        }
        let have = utf16_len(&reply.text);
        if msg.offset == have {
            reply.text.push_str(&msg.text);
        } else if msg.offset > have {
            // We joined mid-reply: keep what we see; new subscribers get the checkpoint.
            reply.complete_prefix = false;
            reply.text.push_str(&msg.text);
        } else {
            return; // already have it
        }
        let chunk = ServerFrame::AiChunk {
            topic: &self.topic,
            message_id: msg.message_id,
            offset: msg.offset,
            text: &msg.text,
        };
        self.broadcast(&chunk.encode(), None);
    }
}

impl Handler<CancelGeneration> for LiveSession {
    type Result = ();

    fn handle(&mut self, msg: CancelGeneration, _ctx: &mut Self::Context) {
        self.cancel_local(msg.0);
    }
}

impl Handler<ControlGeneration> for LiveSession {
    type Result = ();

    fn handle(&mut self, msg: ControlGeneration, ctx: &mut Self::Context) {
        let (pool, session_id, node) = (self.pool.clone(), self.session_id, self.bus.node_id());
        let (user, message_id, regenerate) = (msg.user_id, msg.message_id, msg.regenerate);
        let check = async move {
            let mut conn = pool.get().await?;
            let access = session_access(&mut conn, session_id, user).await?;
            let not_found = || AppError::new(ErrorCode::MessageNotFound, "no such AI reply in this session");
            let (_, asked_by, reply_to, status) = generation::find(&mut conn, message_id)
                .await?
                .filter(|g| g.0 == session_id)
                .ok_or_else(not_found)?;
            if regenerate {
                access.require_active()?;
                access.require(Permission::SendMessages)?;
                let reply_to = reply_to.ok_or_else(not_found)?;
                // Durable before the ack: the new reply is owed from here on (unless one
                // is owed or streaming already: `generation_in_progress`).
                let request = intent::regenerate(&mut conn, session_id, reply_to, user, node.0).await?;
                return Ok(Some(request));
            }
            if asked_by != Some(user) && !access.can(Permission::ManageSessions) {
                return Err(AppError::forbidden(
                    "only who asked, or someone with `manage_sessions`, can stop a reply",
                ));
            }
            if status != "streaming" {
                return Err(AppError::new(
                    ErrorCode::GenerationEnded,
                    "this reply has already ended",
                ));
            }
            generation::request_stop(&mut conn, message_id).await?;
            Ok(None)
        };
        ctx.spawn(check.into_actor(self).map(move |result, act, ctx| {
            let reference = msg.reference.as_deref();
            match result {
                Ok(Some(request)) => ctx.notify(StartGeneration { request }),
                Ok(None) => {
                    // Stop it here if it runs here; otherwise tell the node that runs it.
                    if act.replies.get(&message_id).is_some_and(|g| g.local.is_some()) {
                        act.cancel_local(message_id);
                    } else {
                        let stop = SessionEphemeral::StopGeneration {
                            session: act.session_id,
                            message_id,
                        };
                        act.bus.room_ephemeral(KIND, &stop, true);
                    }
                }
                Err(err) => {
                    msg.reply.frame(error_frame(reference, Some(&act.topic), &err));
                    return;
                }
            }
            msg.reply.frame(ack_frame(reference, &act.topic, None));
        }));
    }
}
