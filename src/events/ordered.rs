//! Ordering committed events inside a topic actor. Events reach an actor from its own
//! writer, from REST handlers and from other nodes, in any order and sometimes twice; the
//! actor applies each exactly once, in seq order. An event that arrives ahead of a gap
//! waits (`gap_timeout`) for the missing ones, which are then read from the log.

use actix::prelude::*;
use std::collections::BTreeMap;
use std::time::Duration;

/// The ordering state of one topic: last applied seq and what waits beyond a gap.
pub struct OrderedTopic<T> {
    last_seq: i64,
    pending: BTreeMap<i64, T>,
    gap_fill_scheduled: bool,
    gap_timeout: Duration,
}

impl<T> OrderedTopic<T> {
    pub fn new(gap_timeout: Duration) -> Self {
        Self {
            last_seq: 0,
            pending: BTreeMap::new(),
            gap_fill_scheduled: false,
            gap_timeout,
        }
    }

    /// Highest seq applied; every event up to it was applied in order.
    pub fn last_seq(&self) -> i64 {
        self.last_seq
    }

    /// Starts (or restarts, after a snapshot) from `seq`: what waits at or below it is gone.
    pub fn reset_to(&mut self, seq: i64) {
        self.last_seq = seq;
        self.pending.retain(|s, _| *s > seq);
    }

    /// The first seq waiting beyond the gap.
    pub fn first_pending(&self) -> Option<i64> {
        self.pending.keys().next().copied()
    }

    /// Takes items in any order; returns those that are now next, in order, each once.
    pub fn take(&mut self, items: impl IntoIterator<Item = (i64, T)>) -> Vec<T> {
        for (seq, item) in items {
            if seq > self.last_seq {
                self.pending.entry(seq).or_insert(item);
            }
        }
        let mut ready = Vec::new();
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() != self.last_seq + 1 {
                break;
            }
            self.last_seq = *entry.key();
            ready.push(entry.remove());
        }
        ready
    }

    /// When a gap fill should be scheduled (something waits and none is scheduled yet).
    fn gap_fill_due(&mut self) -> Option<Duration> {
        if self.pending.is_empty() || self.gap_fill_scheduled {
            return None;
        }
        self.gap_fill_scheduled = true;
        Some(self.gap_timeout)
    }
}

/// An actor that owns an ordered topic.
pub trait OrderedActor: Actor<Context = Context<Self>> {
    type Item;
    fn ordered(&mut self) -> &mut OrderedTopic<Self::Item>;
    /// Applies the next item of the topic.
    fn apply(&mut self, item: Self::Item, ctx: &mut Context<Self>);
    /// After a call to [`accept`] applied something (`before` = the last seq before it).
    fn applied(&mut self, before: i64, ctx: &mut Context<Self>) {
        let _ = (before, ctx);
    }
    /// Reads what is missing from the log (up to the first pending seq, or further) and
    /// passes it to [`accept`].
    fn fill_gap(&mut self, ctx: &mut Context<Self>);
}

/// Takes committed items into an ordered actor: applies what is next, schedules a gap
/// fill when something waits beyond a gap.
pub fn accept<A: OrderedActor>(act: &mut A, items: impl IntoIterator<Item = (i64, A::Item)>, ctx: &mut Context<A>) {
    let before = act.ordered().last_seq();
    let ready = act.ordered().take(items);
    for item in ready {
        act.apply(item, ctx);
    }
    if act.ordered().last_seq() > before {
        act.applied(before, ctx);
    }
    if let Some(delay) = act.ordered().gap_fill_due() {
        ctx.run_later(delay, |act, ctx| {
            act.ordered().gap_fill_scheduled = false;
            act.fill_gap(ctx);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_come_out_in_order_once() {
        let mut t = OrderedTopic::new(Duration::from_millis(1));
        t.reset_to(2);
        assert_eq!(t.take([(4, "d"), (2, "old"), (3, "c")]), vec!["c", "d"]);
        assert_eq!(t.take([(6, "f")]), Vec::<&str>::new());
        assert_eq!(t.first_pending(), Some(6));
        assert_eq!(t.gap_fill_due(), Some(Duration::from_millis(1)));
        assert_eq!(t.gap_fill_due(), None, "one fill at a time");
        assert_eq!(t.take([(5, "e"), (6, "f again")]), vec!["e", "f"]);
        assert_eq!(t.last_seq(), 6);
        t.take([(9, "i")]);
        t.reset_to(9);
        assert_eq!(t.first_pending(), None);
    }
}
