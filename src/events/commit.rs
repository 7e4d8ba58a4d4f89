//! The one way to commit events: the caller's writes and its event rows in one
//! transaction, one NOTIFY for all of them (any number of topics) in that same
//! transaction, and — once committed — delivery to this node's rooms. The result is
//! `#[must_use]`: forgetting to publish locally does not compile silently.

use crate::cluster::Hub;
use crate::error::{AppError, AppResult};
use crate::events::Event;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use scoped_futures::ScopedBoxFuture;

/// Events committed by a transaction, not yet handed to this node's rooms.
#[must_use = "committed events must be published to this node's rooms: call `.publish(&hub)`"]
pub struct Committed<T> {
    value: T,
    events: Vec<Event>,
}

impl<T> Committed<T> {
    /// The events, in the order they were written.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// For a topic actor committing its own events: hands them to `deliver` (the actor's
    /// own ordering) instead of going through the hub; returns the value.
    pub fn publish_to(self, deliver: impl FnOnce(Vec<Event>)) -> T {
        if !self.events.is_empty() {
            deliver(self.events);
        }
        self.value
    }

    /// Hands the events to the rooms of their topics on this node; returns the value.
    pub fn publish(self, hub: &Hub) -> T {
        hub.deliver(self.events);
        self.value
    }
}

/// Runs `work` in a transaction; the events it returns are announced with one NOTIFY in
/// the same transaction (delivered to other nodes at commit, never on rollback).
pub async fn commit<'a, T, F>(conn: &mut AsyncPgConnection, hub: &'a Hub, work: F) -> AppResult<Committed<T>>
where
    F: for<'r> FnOnce(&'r mut AsyncPgConnection) -> ScopedBoxFuture<'a, 'r, AppResult<(T, Vec<Event>)>> + Send + 'a,
    T: Send + 'a,
{
    let (value, events) = conn
        .transaction::<_, AppError, _>(async |conn| {
            let (value, events) = work(conn).await?;
            hub.bus.notify_events(conn, &events).await?;
            Ok((value, events))
        })
        .await?;
    Ok(Committed { value, events })
}
