//! The proposal frames clients send on a session topic (`propose_model`, `vote_proposal`,
//! `withdraw_proposal`; docs/PROTOCOL.md, "Model proposals"): decoded here for the session
//! room, run here for the session actor, acked after commit with the seq of the last event
//! written.

use crate::error::{AppError, AppResult, ErrorCode};
use crate::proposals::room::Proposals;
use crate::proposals::rules::Vote;
use crate::proposals::store::{self, Target};
use crate::transport::ClientHandle;
use crate::transport::frames::{ack_frame, error_frame};
use serde::Deserialize;
use std::sync::Arc;
use uuid::Uuid;

/// The frame types below.
pub const ACTIONS: &[&str] = &["propose_model", "vote_proposal", "withdraw_proposal"];

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ProposalFrame {
    ProposeModel {
        #[serde(rename = "ref")]
        _reference: Option<String>,
        #[serde(rename = "topic")]
        _topic: String,
        model: String,
        reasoning: String,
        expires_in_seconds: Option<u64>,
    },
    VoteProposal {
        #[serde(rename = "ref")]
        _reference: Option<String>,
        #[serde(rename = "topic")]
        _topic: String,
        proposal_id: Uuid,
        vote: Vote,
        comment: Option<String>,
    },
    WithdrawProposal {
        #[serde(rename = "ref")]
        _reference: Option<String>,
        #[serde(rename = "topic")]
        _topic: String,
        proposal_id: Uuid,
    },
}

/// A decoded proposal frame, as the session actor receives it.
#[derive(Debug)]
pub enum ProposalAction {
    Propose {
        model: String,
        reasoning: String,
        expires_in_seconds: Option<u64>,
    },
    Vote {
        proposal_id: Uuid,
        vote: Vote,
        comment: Option<String>,
    },
    Withdraw {
        proposal_id: Uuid,
    },
}

#[derive(Deserialize)]
struct Peek {
    #[serde(rename = "type")]
    kind: String,
}

/// Decodes `frame` when it is a proposal frame (`Ok(None)`: some other frame type).
pub fn decode(frame: &str) -> AppResult<Option<ProposalAction>> {
    match serde_json::from_str::<Peek>(frame) {
        Ok(peek) if ACTIONS.contains(&peek.kind.as_str()) => {}
        _ => return Ok(None),
    }
    let frame: ProposalFrame = serde_json::from_str(frame)
        .map_err(|e| AppError::new(ErrorCode::InvalidFrame, format!("invalid frame: {e}")))?;
    Ok(Some(match frame {
        ProposalFrame::ProposeModel {
            model,
            reasoning,
            expires_in_seconds,
            ..
        } => ProposalAction::Propose {
            model,
            reasoning,
            expires_in_seconds,
        },
        ProposalFrame::VoteProposal {
            proposal_id,
            vote,
            comment,
            ..
        } => ProposalAction::Vote {
            proposal_id,
            vote,
            comment: store::validate_comment(comment)?,
        },
        ProposalFrame::WithdrawProposal { proposal_id, .. } => ProposalAction::Withdraw { proposal_id },
    }))
}

/// A proposal frame from a connection on a session topic (`subscribed`: it is a live
/// subscriber there). Runs off the session actor; answers `ack` once committed, else an
/// `error` frame.
pub struct Run {
    pub room: Arc<Proposals>,
    pub session_id: Uuid,
    pub topic: String,
    pub user_id: Uuid,
    pub subscribed: bool,
    pub reference: Option<String>,
    pub reply: ClientHandle,
}

impl Run {
    pub fn spawn(self, action: ProposalAction) {
        actix::spawn(async move {
            let result = self.perform(action).await;
            let frame = match result {
                Ok(seq) => ack_frame(self.reference.as_deref(), &self.topic, Some(seq)),
                Err(err) => error_frame(self.reference.as_deref(), Some(&self.topic), &err),
            };
            self.reply.frame(frame);
        });
    }

    async fn perform(&self, action: ProposalAction) -> AppResult<i64> {
        if !self.subscribed {
            return Err(AppError::new(
                ErrorCode::NotSubscribed,
                "subscribe to the session before writing to it",
            ));
        }
        let target = |proposal_id| Target {
            id: proposal_id,
            user: self.user_id,
            session: Some(self.session_id),
        };
        let (_, seq) = match action {
            ProposalAction::Propose {
                model,
                reasoning,
                expires_in_seconds,
            } => {
                self.room
                    .propose(self.session_id, self.user_id, model, reasoning, expires_in_seconds)
                    .await?
            }
            ProposalAction::Vote {
                proposal_id,
                vote,
                comment,
            } => self.room.vote(target(proposal_id), vote, comment).await?,
            ProposalAction::Withdraw { proposal_id } => self.room.withdraw(target(proposal_id)).await?,
        };
        Ok(seq)
    }
}
