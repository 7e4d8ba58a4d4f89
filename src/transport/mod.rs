//! The WebSocket transport, below every feature: topics and id newtypes, the client handle
//! with its bounded outbound queue, and the typed server frames of docs/PROTOCOL.md.

pub mod client;
pub mod connections;
pub mod frames;
pub mod ids;
pub mod topic;

pub use client::{ClientHandle, Outbound, ToClient, wire_size};
pub use connections::{Connections, ServerClose};
pub use frames::{ServerFrame, ack_frame, error_frame};
pub use ids::{ConnId, NodeId};
use std::time::Duration;
pub use topic::Topic;

/// WebSocket limits and timings.
#[derive(Debug, Clone)]
pub struct WsLimits {
    pub heartbeat_interval: Duration,
    pub client_timeout: Duration,
    pub max_frame_bytes: usize,
    pub outbound_buffer_bytes: usize,
    pub frames_per_second: u32,
}
