//! The one `ModelProvider` trait every AI backend implements, and the types it speaks.

use futures_util::stream::BoxStream;
use serde::{Deserialize, Serialize};

/// One message of the conversation sent to the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    pub content: String,
}

#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    pub max_tokens: Option<u32>,
}

/// What a streaming reply yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// More text of the reply.
    Delta(String),
    /// Token counts (usually at the end).
    Usage { prompt_tokens: u32, completion_tokens: u32 },
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ProviderError {
    #[error("the model provider refused the request ({status}): {message}")]
    Refused { status: u16, message: String },
    #[error("the model provider failed mid-reply: {0}")]
    Stream(String),
    #[error("could not reach the model provider: {0}")]
    Unreachable(String),
    #[error("unknown model `{0}`")]
    UnknownModel(String),
}

/// A model clients may choose.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModelInfo {
    pub id: String,
    /// `openai-compatible` or `offline`.
    pub provider: String,
    /// The model sessions use unless they choose another.
    pub default: bool,
}

pub trait ModelProvider: Send + Sync {
    /// The models this provider serves.
    fn models(&self) -> Vec<ModelInfo>;

    /// Streams one reply. The stream ends after the last event; an `Err` item ends it too.
    fn stream(&self, request: ChatRequest) -> BoxStream<'static, Result<StreamEvent, ProviderError>>;
}
