//! How rooms reach a WebSocket connection: a `ClientHandle` (an actor recipient plus the
//! connection's bounded outbound queue). A frame that would overflow the queue closes the
//! connection with `slow_consumer` instead of being dropped (DESIGN principle 10). A sender
//! with much to send (a replay) waits for the queue to drain instead ([`Outbound::drained_to`]).

use actix::prelude::*;
use bytestring::ByteString;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tokio::sync::Notify;

/// What a room sends to a connection.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub enum ToClient {
    /// A frame to write as-is (serialized once, shared between recipients).
    Frame(ByteString),
    /// The subscription ended on the server's side (access revoked, topic gone).
    Dropped { topic: String },
    /// The client fell too far behind: close it with `slow_consumer`.
    Slow,
    /// A binary frame (the y-websocket protocol).
    Binary(bytes::Bytes),
    /// Close the connection with this code (e.g. access revoked).
    Close { code: u16, reason: String },
}

/// A connection's outbound queue as its senders see it: bytes handed over and not yet
/// taken by the socket writer. Senders reserve before they enqueue, so a connection whose
/// reader stopped (and whose actor is therefore no longer polled) cannot make its mailbox
/// grow past the limit.
pub struct Outbound {
    queued: AtomicUsize,
    limit: usize,
    slow: AtomicBool,
    /// Room granted beyond `limit` for a frame larger than the limit itself (a document's
    /// whole state when it is opened); given back as the writer drains.
    grace: AtomicUsize,
    /// The connection is gone (or cut off): nothing it is sent will be read.
    closed: AtomicBool,
    /// Woken when the socket writer takes bytes or the connection closes.
    drained: Notify,
    /// Whether anyone waits on `drained` (spares the lock on every frame otherwise).
    waiting: AtomicUsize,
}

impl Outbound {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            queued: AtomicUsize::new(0),
            limit,
            slow: AtomicBool::new(false),
            grace: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            drained: Notify::new(),
            waiting: AtomicUsize::new(0),
        })
    }

    /// Bytes queued and not yet taken by the socket writer.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// The most bytes the queue holds before the connection is cut off.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The connection ended (or was cut off as slow): wake whoever waits for it to drain.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.drained.notify_waiters();
    }

    /// Waits until at most `level` bytes are queued: the credit a bulk sender (a replay)
    /// needs before it sends its next page. False when the connection ended or was cut
    /// off meanwhile (nothing more should be sent).
    pub async fn drained_to(&self, level: usize) -> bool {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let open = loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.closed.load(Ordering::SeqCst) || self.slow.load(Ordering::SeqCst) {
                break false;
            }
            if self.queued.load(Ordering::SeqCst) <= level {
                break true;
            }
            notified.await;
        };
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        open
    }

    /// Reserves room for `bytes`; `Err(true)` the first time the limit is crossed (the
    /// connection must be told), `Err(false)` after that.
    pub fn reserve(&self, bytes: usize) -> Result<(), bool> {
        if self.slow.load(Ordering::Relaxed) {
            return Err(false);
        }
        let limit = self.limit + self.grace.load(Ordering::SeqCst);
        if self.queued.fetch_add(bytes, Ordering::SeqCst) + bytes > limit {
            let first = !self.slow.swap(true, Ordering::SeqCst);
            self.drained.notify_waiters();
            return Err(first);
        }
        Ok(())
    }

    /// Reserves room for one frame that may be larger than the whole limit: the state a
    /// client needs before anything else (y-websocket sync step 2). Refusing it would make a
    /// large document impossible to open; it is let through once, and the frames behind it
    /// get the room it takes until the writer has sent it (memory stays within the limit
    /// plus that one frame).
    pub fn reserve_whole(&self, bytes: usize) -> Result<(), bool> {
        if bytes > self.limit / 2 {
            self.grace.fetch_add(bytes, Ordering::Relaxed);
        }
        self.reserve(bytes)
    }

    /// The socket writer took `bytes`.
    pub fn release(&self, bytes: usize) {
        let _ = self
            .queued
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |q| Some(q.saturating_sub(bytes)));
        // Grace is rare (a document's first state): skip the second atomic update otherwise.
        if self.grace.load(Ordering::Relaxed) > 0 {
            let _ = self
                .grace
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |q| Some(q.saturating_sub(bytes)));
        }
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.drained.notify_waiters();
        }
    }
}

/// Size of a server-to-client frame on the wire (unmasked header + payload).
pub fn wire_size(payload: usize) -> usize {
    payload
        + match payload {
            0..=125 => 2,
            126..=65535 => 4,
            _ => 10,
        }
}

/// How rooms and writers reach a connection.
#[derive(Clone)]
pub struct ClientHandle {
    pub recipient: Recipient<ToClient>,
    pub outbound: Arc<Outbound>,
}

impl ClientHandle {
    /// Enqueues a message; a frame that would overflow the connection's outbound limit
    /// is replaced by `Slow` (once) and the connection closes with `slow_consumer`.
    pub fn do_send(&self, msg: ToClient) {
        let size = match &msg {
            ToClient::Frame(frame) => Some(frame.len()),
            ToClient::Binary(bytes) => Some(bytes.len()),
            _ => None,
        };
        match size.map(|n| self.outbound.reserve(wire_size(n))) {
            None | Some(Ok(())) => self.recipient.do_send(msg),
            Some(Err(true)) => self.recipient.do_send(ToClient::Slow),
            Some(Err(false)) => {}
        }
    }

    /// Enqueues the one binary frame a client needs first, however large
    /// ([`Outbound::reserve_whole`]).
    pub fn send_whole(&self, bytes: bytes::Bytes) {
        match self.outbound.reserve_whole(wire_size(bytes.len())) {
            Ok(()) => self.recipient.do_send(ToClient::Binary(bytes)),
            Err(true) => self.recipient.do_send(ToClient::Slow),
            Err(false) => {}
        }
    }

    /// Enqueues a text frame.
    pub fn frame(&self, frame: ByteString) {
        self.do_send(ToClient::Frame(frame));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bulk_sender_waits_for_the_socket_to_drain() {
        let out = Outbound::new(1000);
        out.reserve(800).unwrap();
        let waiter = {
            let out = out.clone();
            tokio::spawn(async move { out.drained_to(300).await })
        };
        tokio::task::yield_now().await;
        out.release(400);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "400 queued is still above 300");
        out.release(100);
        assert!(waiter.await.unwrap(), "drained to 300");
        // A connection that ends releases its waiters with `false`.
        let waiter = {
            let out = out.clone();
            tokio::spawn(async move { out.drained_to(0).await })
        };
        tokio::task::yield_now().await;
        out.close();
        assert!(!waiter.await.unwrap());
    }
}
