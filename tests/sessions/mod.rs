//! Tests of live chat sessions over WebSocket: ordering, acks, replay, presence, typing,
//! connection health, permissions, and the REST side.

mod bad_input;
mod connection;
mod live;
mod presence;
mod replay;
mod replay_retry;
mod rest;
