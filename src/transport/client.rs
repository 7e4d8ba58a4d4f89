//! How rooms reach a WebSocket connection: a `ClientHandle` (an actor recipient plus the
//! connection's bounded outbound queue). A frame that would overflow the queue closes the
//! connection with `slow_consumer` instead of being dropped (DESIGN principle 10).

use actix::prelude::*;
use bytestring::ByteString;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

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
}

impl Outbound {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            queued: AtomicUsize::new(0),
            limit,
            slow: AtomicBool::new(false),
            grace: AtomicUsize::new(0),
        })
    }

    /// Reserves room for `bytes`; `Err(true)` the first time the limit is crossed (the
    /// connection must be told), `Err(false)` after that.
    pub fn reserve(&self, bytes: usize) -> Result<(), bool> {
        if self.slow.load(Ordering::Relaxed) {
            return Err(false);
        }
        let limit = self.limit + self.grace.load(Ordering::Relaxed);
        if self.queued.fetch_add(bytes, Ordering::Relaxed) + bytes > limit {
            return Err(!self.slow.swap(true, Ordering::Relaxed));
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
        for counter in [&self.queued, &self.grace] {
            let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| Some(q.saturating_sub(bytes)));
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
