//! The built-in offline provider: used when no AI backend is configured, so the server
//! works out of the box. Its replies are deterministic and say clearly what they are.

use crate::ai::provider::{ChatRequest, ModelInfo, ModelProvider, ProviderError, StreamEvent};
use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};
use std::time::Duration;

pub const MODEL: &str = "offline-echo";

pub struct OfflineProvider {
    /// Pause between streamed words.
    pub word_delay: Duration,
}

/// The reply the offline model gives to a conversation.
pub fn reply_to(request: &ChatRequest) -> String {
    let last = request
        .messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map(|m| m.content.as_str())
        .unwrap_or("");
    let words = last.split_whitespace().count();
    format!(
        "[offline model — no AI provider is configured on this server] You said {words} word(s): \"{}\". \
         Configure AI_BASE_URL to get real answers.",
        last.chars().take(200).collect::<String>()
    )
}

impl ModelProvider for OfflineProvider {
    fn models(&self) -> Vec<ModelInfo> {
        vec![ModelInfo {
            id: MODEL.to_owned(),
            provider: "offline".to_owned(),
            default: true,
        }]
    }

    fn stream(&self, request: ChatRequest) -> BoxStream<'static, Result<StreamEvent, ProviderError>> {
        if request.model != MODEL {
            return stream::iter([Err(ProviderError::UnknownModel(request.model))]).boxed();
        }
        let text = reply_to(&request);
        let prompt_tokens = request.messages.iter().map(|m| m.content.len() as u32 / 4 + 1).sum();
        let pieces: Vec<String> = text.split_inclusive(' ').map(str::to_owned).collect();
        let completion_tokens = pieces.len() as u32;
        let delay = self.word_delay;
        stream::iter(pieces)
            .then(move |piece| async move {
                tokio::time::sleep(delay).await;
                Ok(StreamEvent::Delta(piece))
            })
            .chain(stream::iter([Ok(StreamEvent::Usage {
                prompt_tokens,
                completion_tokens,
            })]))
            .boxed()
    }
}
