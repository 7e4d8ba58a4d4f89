//! The session room's own client frames (besides `subscribe`/`unsubscribe`, which the
//! gateway handles for every room) and its ephemeral traffic between nodes.

use crate::error::AppResult;
use crate::sessions::store::{self, Action};
use crate::transport::NodeId;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A client frame for a subscribed session (docs/PROTOCOL.md, "Client frames").
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SessionFrame {
    SendMessage {
        #[serde(rename = "ref")]
        _reference: Option<String>,
        #[serde(rename = "topic")]
        _topic: String,
        body: String,
    },
    EditMessage {
        #[serde(rename = "ref")]
        _reference: Option<String>,
        #[serde(rename = "topic")]
        _topic: String,
        message_id: Uuid,
        body: String,
    },
    DeleteMessage {
        #[serde(rename = "ref")]
        _reference: Option<String>,
        #[serde(rename = "topic")]
        _topic: String,
        message_id: Uuid,
    },
    React {
        #[serde(rename = "ref")]
        _reference: Option<String>,
        #[serde(rename = "topic")]
        _topic: String,
        message_id: Uuid,
        emoji: String,
    },
    Typing {
        #[serde(rename = "ref")]
        _reference: Option<String>,
        #[serde(rename = "topic")]
        _topic: String,
        #[serde(default = "yes")]
        typing: bool,
    },
    Presence {
        #[serde(rename = "ref")]
        _reference: Option<String>,
        #[serde(rename = "topic")]
        _topic: String,
        status: String,
    },
    /// Stop an AI reply that is streaming (who asked, or `manage_sessions`).
    StopGeneration {
        #[serde(rename = "ref")]
        _reference: Option<String>,
        #[serde(rename = "topic")]
        _topic: String,
        message_id: Uuid,
    },
    /// Ask the AI again: a new reply to the question this reply answered.
    Regenerate {
        #[serde(rename = "ref")]
        _reference: Option<String>,
        #[serde(rename = "topic")]
        _topic: String,
        message_id: Uuid,
    },
}

/// The frame types of [`SessionFrame`].
pub const ACTIONS: &[&str] = &[
    "send_message",
    "edit_message",
    "delete_message",
    "react",
    "typing",
    "presence",
    "stop_generation",
    "regenerate",
    // Model proposals (decoded and run by `src/proposals/frames.rs`).
    "propose_model",
    "vote_proposal",
    "withdraw_proposal",
];

fn yes() -> bool {
    true
}

/// What a session actor is asked to do, decoded and cheaply validated at the edge (the
/// actor checks permissions).
#[derive(Debug)]
pub enum SessionAction {
    Write(Action),
    Typing(bool),
    Status(String),
    Generation { message_id: Uuid, regenerate: bool },
}

impl SessionAction {
    pub fn decode(frame: &str) -> AppResult<Self> {
        let frame: SessionFrame = serde_json::from_str(frame).map_err(|e| {
            crate::error::AppError::new(crate::error::ErrorCode::InvalidFrame, format!("invalid frame: {e}"))
        })?;
        Ok(match frame {
            SessionFrame::SendMessage { body, .. } => {
                store::validate_body(&body)?;
                Self::Write(Action::Send { body })
            }
            SessionFrame::EditMessage { message_id, body, .. } => {
                store::validate_body(&body)?;
                Self::Write(Action::Edit { message_id, body })
            }
            SessionFrame::DeleteMessage { message_id, .. } => Self::Write(Action::Delete { message_id }),
            SessionFrame::React { message_id, emoji, .. } => {
                store::validate_emoji(&emoji)?;
                Self::Write(Action::React { message_id, emoji })
            }
            SessionFrame::Typing { typing, .. } => Self::Typing(typing),
            SessionFrame::Presence { status, .. } => Self::Status(crate::validate::text("status", &status, 1, 32)?),
            SessionFrame::StopGeneration { message_id, .. } => Self::Generation {
                message_id,
                regenerate: false,
            },
            SessionFrame::Regenerate { message_id, .. } => Self::Generation {
                message_id,
                regenerate: true,
            },
        })
    }
}

/// A user's presence as one node holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceState {
    pub display_name: String,
    pub status: String,
}

/// The session room's traffic between nodes (opaque to the bus).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SessionEphemeral {
    Typing {
        session: Uuid,
        user: Uuid,
        typing: bool,
    },
    /// A user's presence in a session through one node; `None` = gone from that node.
    Presence {
        session: Uuid,
        user: Uuid,
        node: NodeId,
        state: Option<PresenceState>,
    },
    /// A session's visibility or participants changed.
    SessionAccess {
        session: Uuid,
        user: Option<Uuid>,
    },
    /// A coalesced piece of an AI reply (offset in UTF-16 code units).
    AiChunk {
        session: Uuid,
        message_id: Uuid,
        offset: usize,
        text: String,
        model: String,
    },
    /// Stop an AI reply (the node generating it acts).
    StopGeneration {
        session: Uuid,
        message_id: Uuid,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_decode_and_validate() {
        let t = "session:00000000-0000-0000-0000-000000000001";
        let send = format!(r#"{{"type":"send_message","ref":"7","topic":"{t}","body":"hi"}}"#);
        assert!(matches!(
            SessionAction::decode(&send),
            Ok(SessionAction::Write(Action::Send { .. }))
        ));
        let extra = format!(r#"{{"type":"typing","topic":"{t}","extra":1}}"#);
        assert!(SessionAction::decode(&extra).is_err());
        let typing = format!(r#"{{"type":"typing","topic":"{t}"}}"#);
        assert!(matches!(
            SessionAction::decode(&typing),
            Ok(SessionAction::Typing(true))
        ));
        let empty = format!(r#"{{"type":"send_message","topic":"{t}","body":""}}"#);
        assert_eq!(
            SessionAction::decode(&empty).unwrap_err().code,
            crate::error::ErrorCode::ValidationFailed
        );
    }
}
