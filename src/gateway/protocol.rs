//! The client frames of the `/ws` protocol (version 1) that the gateway itself answers, and
//! the envelope every frame shares. docs/PROTOCOL.md shows an example of every frame; server
//! frames are `transport::ServerFrame`, rooms decode their own client frames.

use crate::error::AppError;
use serde::Deserialize;

/// The protocol version announced in `hello`.
pub const PROTOCOL_VERSION: u32 = 1;

/// What every client frame has: its type, the optional client-chosen `ref` echoed in the
/// `ack` or `error` that answers it, and (for topic frames) its topic.
#[derive(Debug, Deserialize)]
pub struct Envelope {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(rename = "ref")]
    pub reference: Option<serde_json::Value>,
    pub topic: Option<serde_json::Value>,
}

/// The frames the gateway answers itself, for every topic kind; a room decodes its own
/// (`Room::actions`).
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    Subscribe {
        #[serde(rename = "ref")]
        reference: Option<String>,
        topic: String,
        /// Replay every event after this seq, then go live; absent = live only.
        after_seq: Option<i64>,
    },
    Unsubscribe {
        #[serde(rename = "ref")]
        reference: Option<String>,
        topic: String,
    },
    Ping {
        #[serde(rename = "ref")]
        reference: Option<String>,
    },
}

/// The frame types of [`ClientFrame`].
pub const GATEWAY_FRAMES: &[&str] = &["subscribe", "unsubscribe", "ping"];

/// Refuses a frame holding a NUL character in any string (`\u0000`), whatever its type:
/// Postgres cannot store one, and the frame must fail here, with `validation_failed`,
/// rather than in a group commit shared with other writers.
pub fn refuse_nul(text: &str) -> Result<(), AppError> {
    if crate::validate::json_has_nul(text.as_bytes()) {
        return Err(crate::validate::nul_in_json(text));
    }
    Ok(())
}

/// Pulls `ref` out of a frame that failed to parse, so the error can still name it.
pub fn salvage_ref(text: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    value.get("ref")?.as_str().map(|s| s.chars().take(64).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_parse() {
        let f: ClientFrame = serde_json::from_str(r#"{"type":"ping","ref":"7"}"#).unwrap();
        assert!(matches!(f, ClientFrame::Ping { reference: Some(r) } if r == "7"));
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"fly","topic":"x"}"#).is_err());
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"ping","extra":1}"#).is_err());
        assert_eq!(salvage_ref(r#"{"type":"fly","ref":"a"}"#).as_deref(), Some("a"));
        let e: Envelope =
            serde_json::from_str(r#"{"type":"typing","ref":"r","topic":"session:x","typing":true}"#).unwrap();
        assert_eq!(e.kind, "typing");
        let nul = refuse_nul(r#"{"type":"send_message","topic":"t","body":"a\u0000"}"#).unwrap_err();
        assert_eq!(nul.code, crate::error::ErrorCode::ValidationFailed);
        assert_eq!(nul.message, "`body` must not contain NUL characters (U+0000)");
        assert!(refuse_nul(r#"{"type":"send_message","topic":"t","body":"a\\u0000"}"#).is_ok());
    }
}
