//! The JSON frames of the `/ws` protocol (version 1). docs/PROTOCOL.md shows an example of
//! every frame; server frames are built in `sessions::live` and `gateway::connection`.

use serde::Deserialize;
use uuid::Uuid;

/// The protocol version announced in `hello`.
pub const PROTOCOL_VERSION: u32 = 1;

/// A frame from the client. `ref` is an optional client-chosen id echoed in the `ack` or
/// `error` that answers the frame.
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
    SendMessage {
        #[serde(rename = "ref")]
        reference: Option<String>,
        topic: String,
        body: String,
    },
    EditMessage {
        #[serde(rename = "ref")]
        reference: Option<String>,
        topic: String,
        message_id: Uuid,
        body: String,
    },
    DeleteMessage {
        #[serde(rename = "ref")]
        reference: Option<String>,
        topic: String,
        message_id: Uuid,
    },
    React {
        #[serde(rename = "ref")]
        reference: Option<String>,
        topic: String,
        message_id: Uuid,
        emoji: String,
    },
    Typing {
        #[serde(rename = "ref")]
        reference: Option<String>,
        topic: String,
        #[serde(default = "yes")]
        typing: bool,
    },
    Presence {
        #[serde(rename = "ref")]
        reference: Option<String>,
        topic: String,
        status: String,
    },
    Ping {
        #[serde(rename = "ref")]
        reference: Option<String>,
    },
    /// Stop an AI reply that is streaming (who asked, or `manage_sessions`).
    StopGeneration {
        #[serde(rename = "ref")]
        reference: Option<String>,
        topic: String,
        message_id: Uuid,
    },
    /// Ask the AI again: a new reply to the question this reply answered.
    Regenerate {
        #[serde(rename = "ref")]
        reference: Option<String>,
        topic: String,
        message_id: Uuid,
    },
}

fn yes() -> bool {
    true
}

impl ClientFrame {
    pub fn reference(&self) -> Option<&str> {
        match self {
            ClientFrame::Subscribe { reference, .. }
            | ClientFrame::Unsubscribe { reference, .. }
            | ClientFrame::SendMessage { reference, .. }
            | ClientFrame::EditMessage { reference, .. }
            | ClientFrame::DeleteMessage { reference, .. }
            | ClientFrame::React { reference, .. }
            | ClientFrame::Typing { reference, .. }
            | ClientFrame::Presence { reference, .. }
            | ClientFrame::StopGeneration { reference, .. }
            | ClientFrame::Regenerate { reference, .. }
            | ClientFrame::Ping { reference } => reference.as_deref(),
        }
    }
}

/// A parsed topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    Session(Uuid),
    /// An artifact's durable watermark (`saved` frames after each commit).
    Artifact(Uuid),
}

impl Topic {
    pub fn parse(topic: &str) -> Option<Topic> {
        let (kind, id) = topic.split_once(':')?;
        let id: Uuid = id.parse().ok()?;
        match kind {
            "session" => Some(Topic::Session(id)),
            "artifact" => Some(Topic::Artifact(id)),
            _ => None,
        }
    }
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
        let f: ClientFrame = serde_json::from_str(
            r#"{"type":"send_message","ref":"7","topic":"session:00000000-0000-0000-0000-000000000001","body":"hi"}"#,
        )
        .unwrap();
        assert_eq!(f.reference(), Some("7"));
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"fly","topic":"x"}"#).is_err());
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"ping","extra":1}"#).is_err());
        assert_eq!(salvage_ref(r#"{"type":"fly","ref":"a"}"#).as_deref(), Some("a"));
    }

    #[test]
    fn topics_parse() {
        let id = Uuid::new_v4();
        assert_eq!(Topic::parse(&format!("session:{id}")), Some(Topic::Session(id)));
        assert_eq!(Topic::parse("session:nope"), None);
        assert_eq!(Topic::parse(&format!("artifact:{id}")), Some(Topic::Artifact(id)));
        assert_eq!(Topic::parse(&format!("galaxy:{id}")), None);
    }
}
