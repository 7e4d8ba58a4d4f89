//! Every frame the server sends on `/ws` (docs/PROTOCOL.md, "Server frames"), as one serde
//! enum: the compiler, not a reviewer, finds the places a new frame must be handled. A frame
//! is encoded once and the bytes are shared by every recipient.

use crate::error::AppError;
use bytestring::ByteString;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

/// The limits announced in `hello`.
#[derive(Debug, Serialize)]
pub struct HelloLimits {
    pub max_frame_bytes: usize,
    pub max_message_chars: usize,
    pub frames_per_second: u32,
}

/// A user as presence shows them.
#[derive(Debug, Clone, Serialize)]
pub struct PresenceView<'a> {
    pub user_id: Uuid,
    pub display_name: &'a str,
    pub status: &'a str,
}

/// A reply streaming when a subscriber joins (`generations` in `subscribed`).
#[derive(Debug, Clone, Serialize)]
pub struct GenerationView<'a> {
    pub message_id: Uuid,
    pub model: &'a str,
    pub offset: usize,
    pub text: &'a str,
}

/// The live state a session subscriber starts from (part of its `subscribed`).
#[derive(Debug, Serialize)]
pub struct LiveState<'a> {
    pub presence: Vec<PresenceView<'a>>,
    pub typing: Vec<Uuid>,
    pub generations: Vec<GenerationView<'a>>,
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    Hello {
        protocol: u32,
        connection_id: Uuid,
        user_id: Uuid,
        heartbeat_ms: u64,
        limits: HelloLimits,
    },
    Pong {
        #[serde(rename = "ref")]
        reference: Option<&'a str>,
    },
    Error {
        #[serde(rename = "ref")]
        reference: Option<&'a str>,
        topic: Option<&'a str>,
        code: &'static str,
        message: String,
    },
    Subscribed {
        #[serde(rename = "ref")]
        reference: Option<&'a str>,
        topic: &'a str,
        head_seq: i64,
        #[serde(flatten, skip_serializing_if = "Option::is_none")]
        live: Option<LiveState<'a>>,
    },
    CaughtUp {
        topic: &'a str,
        seq: i64,
    },
    Event {
        topic: &'a str,
        seq: i64,
        kind: &'a str,
        data: &'a serde_json::Value,
        actor_id: Option<Uuid>,
        at: DateTime<Utc>,
    },
    Ack {
        #[serde(rename = "ref")]
        reference: Option<&'a str>,
        topic: &'a str,
        seq: Option<i64>,
    },
    Unsubscribed {
        #[serde(rename = "ref")]
        reference: Option<&'a str>,
        topic: &'a str,
        reason: &'a str,
    },
    Presence {
        topic: &'a str,
        joins: Vec<PresenceView<'a>>,
        leaves: Vec<Uuid>,
    },
    Typing {
        topic: &'a str,
        user_id: Uuid,
        typing: bool,
    },
    AiChunk {
        topic: &'a str,
        message_id: Uuid,
        offset: usize,
        text: &'a str,
    },
    Saved {
        topic: &'a str,
        seq: i64,
    },
}

impl ServerFrame<'_> {
    /// The frame as it goes on the wire.
    pub fn encode(&self) -> ByteString {
        serde_json::to_string(self)
            .expect("server frames always serialize")
            .into()
    }
}

/// An `error` frame for `err`, answering the frame `reference` on `topic`.
pub fn error_frame(reference: Option<&str>, topic: Option<&str>, err: &AppError) -> ByteString {
    let body = err.body();
    ServerFrame::Error {
        reference,
        topic,
        code: body.code,
        message: body.message,
    }
    .encode()
}

/// An `ack` frame.
pub fn ack_frame(reference: Option<&str>, topic: &str, seq: Option<i64>) -> ByteString {
    ServerFrame::Ack { reference, topic, seq }.encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_encode_as_documented() {
        let v: serde_json::Value = serde_json::from_str(&ack_frame(Some("7"), "session:x", Some(3))).unwrap();
        assert_eq!(
            v,
            serde_json::json!({ "type": "ack", "ref": "7", "topic": "session:x", "seq": 3 })
        );
        let plain = ServerFrame::Subscribed {
            reference: None,
            topic: "artifact:x",
            head_seq: 4,
            live: None,
        };
        let v: serde_json::Value = serde_json::from_str(&plain.encode()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({ "type": "subscribed", "ref": null, "topic": "artifact:x", "head_seq": 4 })
        );
        let err = AppError::new(crate::error::ErrorCode::NotSubscribed, "no");
        let v: serde_json::Value = serde_json::from_str(&error_frame(None, Some("t"), &err)).unwrap();
        assert_eq!(v["code"], "not_subscribed");
        assert_eq!(v["ref"], serde_json::Value::Null);
    }
}
