//! How a subscriber's missed events are replayed without costing the node more than a
//! page per subscriber (issue 11, item 1): the log is read a page at a time, each page is
//! sent only once the connection's outbound queue has drained (`Outbound::drained_to`), and
//! replays wait their turn at a gate bounded per node and per user (queued, never refused).
//! A page read that fails because the database is briefly out of reach is tried again with
//! backoff ([`READ_TRIES`]) before the subscription ends with the error.

use crate::db::DbPool;
use crate::error::{AppError, ErrorCode};
use crate::events::{self, Event, SharedEvent};
use crate::sessions::live::{LiveSession, SubState};
use crate::transport::{ConnId, ServerFrame, ToClient, error_frame};
use actix::prelude::*;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

/// Most events read from the log in one page.
pub const PAGE_EVENTS: i64 = 256;

/// Most bytes of replay queued for one connection: a page is sent when the queue is at or
/// below this, and a page sends at most about this much (so at most twice it is queued).
pub const WINDOW_BYTES: usize = 256 * 1024;

/// Tries of one page read when the database is out of reach (`service_unavailable`), the
/// first included; between them the subscriber simply waits (0.2 s, doubling: 3 s in all).
pub const READ_TRIES: u32 = 5;

/// The wait after the first failed read; doubled after each further failure.
const READ_BACKOFF: Duration = Duration::from_millis(200);

/// Reads the page of `topic` after `after`, trying again with backoff while the database
/// is out of reach (a restart, a failover, a terminated backend); other errors at once.
async fn read_page(pool: &DbPool, topic: &str, after: i64) -> Result<Vec<Event>, AppError> {
    let mut delay = READ_BACKOFF;
    for attempt in 1.. {
        let read = async {
            let mut conn = pool.get().await?;
            events::after(&mut conn, topic, after, PAGE_EVENTS).await
        };
        match read.await {
            Err(err) if err.code == ErrorCode::ServiceUnavailable && attempt < READ_TRIES => {
                tracing::warn!(error = %err, %topic, attempt, ?delay, "a replay read failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            result => return result,
        }
    }
    unreachable!("the loop returns by its last attempt")
}

/// Where one subscriber's replay stands.
pub struct Replay {
    /// The last seq sent to the subscriber.
    cursor: i64,
    /// The log's head when it subscribed: the replay reaches at least this far.
    head: i64,
    /// Events read from the log and not sent yet (at most a page).
    pending: VecDeque<Event>,
    /// Its turn at the gate, once it needs more than one page.
    permit: Option<ReplayPermit>,
    /// What it waits on now (a turn, the connection draining, the log).
    task: Option<SpawnHandle>,
}

impl Replay {
    pub fn new(after: i64, head: i64) -> Self {
        Self {
            cursor: after,
            head,
            pending: VecDeque::new(),
            permit: None,
            task: None,
        }
    }

    /// Stops whatever the replay waits on (the subscriber left).
    pub fn cancel(self, ctx: &mut Context<LiveSession>) {
        if let Some(task) = self.task {
            ctx.cancel_future(task);
        }
    }
}

/// What one step of a replay brought.
enum Step {
    /// A turn at the gate.
    Turn(ReplayPermit),
    /// The connection drained (and, if it had to be read, the next page of the log).
    Drained(Option<Vec<Event>>),
    /// The connection stayed full past the stall timeout.
    Stalled,
    /// The connection ended.
    Gone,
}

impl LiveSession {
    fn replay_of(&mut self, conn: ConnId, serial: u64) -> Option<&mut Replay> {
        match self.subscribers.get_mut(&conn) {
            Some(sub) if sub.serial == serial => match &mut sub.state {
                SubState::Replaying(replay) => Some(replay),
                _ => None,
            },
            _ => None,
        }
    }

    /// Moves a replaying subscriber on by one step: `caught_up` and live once it has
    /// reached what this actor fanned out; else wait for a turn (a replay longer than a
    /// page), for its connection to drain, and send the next part of the page.
    pub(super) fn replay_step(&mut self, conn: ConnId, serial: u64, ctx: &mut Context<Self>) {
        let target = self.last_seq();
        let topic = self.topic.clone();
        let (pool, gate) = (self.pool.clone(), self.registry.replay_gate());
        let stall = self.registry.replay_config().stall_timeout;
        let Some(sub) = self.subscribers.get(&conn).filter(|s| s.serial == serial) else {
            return;
        };
        let (user_id, outbound) = (sub.user_id, sub.recipient.outbound.clone());
        let Some(replay) = self.replay_of(conn, serial) else {
            return;
        };
        replay.task = None;
        if replay.pending.is_empty() && replay.cursor >= replay.head.max(target) {
            let seq = replay.cursor;
            let sub = self.subscribers.get_mut(&conn).expect("checked above");
            sub.recipient
                .frame(ServerFrame::CaughtUp { topic: &topic, seq }.encode());
            sub.state = SubState::Live { last_sent: seq };
            return;
        }
        let long = replay.head.max(target) - replay.cursor > PAGE_EVENTS;
        let fut: futures_util::future::BoxFuture<'static, Result<Step, AppError>> = if replay.permit.is_none() && long {
            Box::pin(async move { Ok(Step::Turn(gate.enter(user_id).await)) })
        } else {
            let read = replay.pending.is_empty().then_some(replay.cursor);
            let window = ReplayConfig::window(outbound.limit());
            Box::pin(async move {
                match tokio::time::timeout(stall, outbound.drained_to(window)).await {
                    Err(_) => return Ok(Step::Stalled),
                    Ok(false) => return Ok(Step::Gone),
                    Ok(true) => {}
                }
                let page = match read {
                    Some(after) => Some(read_page(&pool, &topic, after).await?),
                    None => None,
                };
                Ok(Step::Drained(page))
            })
        };
        let handle = ctx.spawn(
            fut.into_actor(self)
                .map(move |result, act, ctx| act.replay_stepped(conn, serial, result, ctx)),
        );
        if let Some(replay) = self.replay_of(conn, serial) {
            replay.task = Some(handle);
        }
    }

    fn replay_stepped(&mut self, conn: ConnId, serial: u64, result: Result<Step, AppError>, ctx: &mut Context<Self>) {
        let target = self.last_seq();
        let Some(replay) = self.replay_of(conn, serial) else {
            return;
        };
        replay.task = None;
        let page = match result {
            Ok(Step::Turn(permit)) => {
                // Nothing is sent on a turn alone: the next step waits for credit first.
                replay.permit = Some(permit);
                return self.replay_step(conn, serial, ctx);
            }
            Ok(Step::Drained(page)) => page,
            Ok(Step::Stalled) => {
                tracing::info!(conn = %conn, "a replay's connection stopped draining; cutting it off");
                if let Some(sub) = self.subscribers.get(&conn) {
                    sub.recipient.do_send(ToClient::Slow);
                }
                return self.remove_subscriber(conn, ctx);
            }
            Ok(Step::Gone) => return self.remove_subscriber(conn, ctx),
            Err(err) => {
                tracing::warn!(error = %err, topic = %self.topic, "replay read failed");
                if let Some(sub) = self.subscribers.get(&conn) {
                    sub.recipient.frame(error_frame(None, Some(&self.topic), &err));
                    sub.recipient.do_send(ToClient::Dropped {
                        topic: self.topic.clone(),
                    });
                }
                return self.remove_subscriber(conn, ctx);
            }
        };
        // Events the log has beyond what was fanned out here: this actor takes them too.
        let mut beyond = Vec::new();
        if let Some(page) = page {
            if page.is_empty() {
                // Nothing more in the log (it cannot be behind this actor): done.
                replay.cursor = replay.cursor.max(replay.head.max(target));
            }
            beyond.extend(page.iter().filter(|e| e.seq > target).cloned());
            replay.pending.extend(page);
        }
        let client = self.subscribers[&conn].recipient.clone();
        let Some(replay) = self.replay_of(conn, serial) else {
            return;
        };
        // Up to a window's worth now; the rest once the connection has drained again.
        let mut sent = 0;
        let window = ReplayConfig::window(client.outbound.limit());
        while sent < window
            && let Some(event) = replay.pending.pop_front()
        {
            if event.seq <= replay.cursor {
                continue;
            }
            let frame = SharedEvent::new(&event).frame.clone();
            sent += frame.len();
            replay.cursor = event.seq;
            client.do_send(ToClient::Frame(frame));
        }
        if !beyond.is_empty() {
            self.accept(beyond, ctx);
        }
        self.replay_step(conn, serial, ctx);
    }
}

/// Replay tunables (from `Config`).
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    /// Replays running at once on this node (`--replays-per-node`).
    pub per_node: usize,
    /// Replays running at once for one user on this node (`--replays-per-user`).
    pub per_user: usize,
    /// A replay whose connection does not drain for this long is cut off as slow (4008).
    pub stall_timeout: Duration,
}

impl ReplayConfig {
    /// How much may be queued before the next page goes out, for a connection whose
    /// outbound limit is `limit` (a quarter of it at most, so a page never crosses it).
    pub fn window(limit: usize) -> usize {
        WINDOW_BYTES.min(limit / 4)
    }
}

/// The node's replay gate: a replay runs once it holds its user's permit and then one of
/// the node's. Waiters are served first come, first served.
pub struct ReplayGate {
    node: Arc<Semaphore>,
    per_user: usize,
    users: Mutex<HashMap<Uuid, Arc<Semaphore>>>,
}

/// The right to run one replay; dropping it lets the next one in.
pub struct ReplayPermit {
    _node: OwnedSemaphorePermit,
    user: Option<OwnedSemaphorePermit>,
    gate: Arc<ReplayGate>,
}

impl ReplayGate {
    pub fn new(config: &ReplayConfig) -> Arc<Self> {
        Arc::new(Self {
            node: Arc::new(Semaphore::new(config.per_node.max(1))),
            per_user: config.per_user.max(1),
            users: Mutex::new(HashMap::new()),
        })
    }

    /// Waits for a turn (the user's first, so one user's many sockets queue behind each
    /// other rather than filling the node's slots).
    pub async fn enter(self: Arc<Self>, user_id: Uuid) -> ReplayPermit {
        let user_slots = self
            .users
            .lock()
            .expect("replay gate lock")
            .entry(user_id)
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_user)))
            .clone();
        let user = user_slots.acquire_owned().await.expect("never closed");
        let node = self.node.clone().acquire_owned().await.expect("never closed");
        ReplayPermit {
            _node: node,
            user: Some(user),
            gate: self,
        }
    }

    /// Users with a replay running or queued on this node.
    pub fn users_tracked(&self) -> usize {
        self.users.lock().expect("replay gate lock").len()
    }
}

impl Drop for ReplayPermit {
    fn drop(&mut self) {
        drop(self.user.take());
        // Forget users with nobody replaying or waiting: then the map holds the only handle
        // (a permit and a waiter each hold one). This also sweeps the users whose waiters
        // were cancelled (their sockets left while queued).
        self.gate
            .users
            .lock()
            .expect("replay gate lock")
            .retain(|_, slots| Arc::strong_count(slots) > 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(per_node: usize, per_user: usize) -> Arc<ReplayGate> {
        ReplayGate::new(&ReplayConfig {
            per_node,
            per_user,
            stall_timeout: Duration::from_secs(1),
        })
    }

    #[tokio::test]
    async fn replays_queue_per_user_and_per_node() {
        let gate = gate(2, 1);
        let (ann, bob, cid) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let first = gate.clone().enter(ann).await;
        // Ann's second replay waits for her first, whatever the node has free.
        let second = tokio::spawn(gate.clone().enter(ann));
        tokio::task::yield_now().await;
        assert!(!second.is_finished());
        let bobs = gate.clone().enter(bob).await;
        // The node is full (2): Cid waits too.
        let cids = tokio::spawn(gate.clone().enter(cid));
        tokio::task::yield_now().await;
        assert!(!cids.is_finished());
        drop(bobs);
        let cids = cids.await.unwrap();
        drop(first);
        drop(cids);
        let second = second.await.unwrap();
        // A queued replay whose socket left (Ann's third, behind her second) is forgotten too.
        let cancelled = tokio::spawn(gate.clone().enter(ann));
        tokio::task::yield_now().await;
        assert!(!cancelled.is_finished());
        cancelled.abort();
        let _ = cancelled.await;
        drop(second);
        assert_eq!(gate.users_tracked(), 0, "idle users are forgotten");
    }
}
