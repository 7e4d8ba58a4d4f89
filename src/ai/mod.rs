//! AI replies: the `ModelProvider` trait with an OpenAI-compatible streaming client and a
//! built-in offline provider, the durable side of a generation (start, finish, interrupt,
//! usage), and the model list endpoint. The streaming itself runs in the session actor
//! (`sessions::ai`).

use crate::feature::Feature;
use crate::routes;

pub mod generation;
pub mod handlers;
pub mod intent;
pub mod offline;
pub mod openai;
pub mod provider;

use provider::{ModelInfo, ModelProvider};
use std::sync::Arc;
use std::time::Duration;

/// The configured provider and how replies are produced.
pub struct Ai {
    pub provider: Arc<dyn ModelProvider>,
    /// Stream pieces are coalesced and sent at most this often.
    pub chunk_interval: Duration,
    /// The partial text is checkpointed in Postgres this often.
    pub checkpoint_interval: Duration,
    /// Recent history sent with a question, in (estimated) tokens.
    pub history_tokens: usize,
    pub max_tokens: Option<u32>,
    /// Test hook (`--ai-start-delay-ms`): wait this long before starting each reply.
    pub start_delay: Duration,
    /// Tries of a reply's start before it ends `failed` (`--ai-start-attempts`).
    pub start_attempts: u32,
    /// A request its own node has not started this long after taking it is tried again
    /// (`--ai-retry-after-ms`, default `intent::RETRY_AFTER`).
    pub retry_after: Duration,
}

impl Ai {
    /// The models clients may choose.
    pub fn models(&self) -> Vec<ModelInfo> {
        self.provider.models()
    }

    /// The model a session uses: its own choice when the provider serves it, else the default.
    pub fn model_for(&self, chosen: Option<&str>) -> String {
        let models = self.models();
        chosen
            .filter(|c| models.iter().any(|m| m.id == *c))
            .map(str::to_owned)
            .or_else(|| models.iter().find(|m| m.default).map(|m| m.id.clone()))
            .unwrap_or_else(|| offline::MODEL.to_owned())
    }
}

/// The provider the configuration asks for.
pub fn build(config: &crate::config::Config) -> Ai {
    let provider: Arc<dyn ModelProvider> = match &config.ai_base_url {
        Some(url) => Arc::new(openai::OpenAiProvider::new(
            url,
            config.ai_api_key.clone(),
            config.ai_models.clone(),
            Duration::from_millis(config.ai_timeout_ms),
        )),
        None => Arc::new(offline::OfflineProvider {
            word_delay: Duration::from_millis(config.ai_offline_word_ms),
        }),
    };
    Ai {
        provider,
        chunk_interval: Duration::from_millis(config.ai_chunk_ms.max(10)),
        checkpoint_interval: Duration::from_millis(config.ai_checkpoint_ms),
        history_tokens: config.ai_history_tokens,
        max_tokens: Some(config.ai_max_tokens),
        start_delay: Duration::from_millis(config.ai_start_delay_ms),
        start_attempts: config.ai_start_attempts.max(1),
        retry_after: Duration::from_millis(config.ai_retry_after_ms),
    }
}

/// Whether a message asks the AI, under a session's `ai_mode`.
pub fn asks_ai(ai_mode: &str, body: &str) -> bool {
    match ai_mode {
        "every_message" => true,
        "mention" => mentions_ai(body),
        _ => false,
    }
}

/// `@ai` as a word of its own (not `@aiden`, not inside `bob@airmail.com`).
fn mentions_ai(body: &str) -> bool {
    let lower = body.to_lowercase();
    let bytes = lower.as_bytes();
    lower.match_indices("@ai").any(|(i, _)| {
        let before = i.checked_sub(1).map(|j| bytes[j]);
        let after = bytes.get(i + 3).copied();
        !before.is_some_and(|b| b.is_ascii_alphanumeric())
            && !after.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
    })
}

/// Models and usage.
pub const FEATURE: Feature = Feature::new("ai", routes! { handlers::list_models, handlers::workspace_usage });

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions() {
        assert!(asks_ai("mention", "@ai what now?"));
        assert!(asks_ai("mention", "hey @AI, help"));
        assert!(!asks_ai("mention", "ask @aiden"));
        assert!(!asks_ai("mention", "mail bob@airmail.com"));
        assert!(!asks_ai("off", "@ai"));
        assert!(asks_ai("every_message", "anything"));
    }
}
