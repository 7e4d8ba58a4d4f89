//! An OpenAI-compatible Chat Completions streaming client (server-sent events). Works with
//! OpenAI, vLLM, Ollama and the llama.cpp server: `POST {base}/chat/completions` with
//! `stream: true`, reading `data:` lines (role delta, content deltas, a usage chunk,
//! `[DONE]`), skipping `:` keep-alive comments.

use crate::ai::provider::{ChatRequest, ModelInfo, ModelProvider, ProviderError, StreamEvent};
use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};
use serde_json::{Value, json};
use std::time::Duration;

pub struct OpenAiProvider {
    pub base_url: String,
    pub api_key: Option<String>,
    pub models: Vec<String>,
    pub http: reqwest::Client,
    /// Longest silence allowed between two pieces of a reply.
    pub idle_timeout: Duration,
}

impl OpenAiProvider {
    pub fn new(base_url: &str, api_key: Option<String>, models: Vec<String>, idle_timeout: Duration) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key,
            models,
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .build()
                .expect("HTTP client"),
            idle_timeout,
        }
    }
}

/// Splits an SSE byte stream into events' `data` payloads. Handles events split across
/// chunks (also inside a multi-byte character), CRLF, comments and multi-line data.
#[derive(Default)]
pub struct SseParser {
    buffer: Vec<u8>,
    data: Vec<String>,
}

impl SseParser {
    /// Feeds bytes; returns the data of every event completed by them.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<String> {
        self.buffer.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(pos) = self.buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buffer.drain(..=pos).collect();
            // A whole line: its characters are complete.
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !self.data.is_empty() {
                    out.push(self.data.join("\n"));
                    self.data.clear();
                }
            } else if line.starts_with(':') {
                // keep-alive comment
            } else if let Some(value) = line.strip_prefix("data:") {
                self.data.push(value.strip_prefix(' ').unwrap_or(value).to_owned());
            }
        }
        out
    }
}

/// Interprets one `data:` payload: no events for the role delta, deltas and usage
/// otherwise; `Err` for an error object.
pub fn parse_chunk(data: &str) -> Result<Vec<StreamEvent>, ProviderError> {
    let value: Value =
        serde_json::from_str(data).map_err(|e| ProviderError::Stream(format!("unreadable chunk: {e}")))?;
    if let Some(error) = value.get("error") {
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("unknown error")
            .to_owned();
        return Err(ProviderError::Stream(message));
    }
    let mut events = Vec::new();
    if let Some(choices) = value.get("choices").and_then(Value::as_array) {
        for choice in choices {
            if let Some(text) = choice.pointer("/delta/content").and_then(Value::as_str)
                && !text.is_empty()
            {
                // The reply is stored as `text`, which cannot hold a NUL (same width in UTF-16).
                events.push(StreamEvent::Delta(crate::validate::storable(text).into_owned()));
            }
        }
    }
    if let Some(usage) = value.get("usage").filter(|u| !u.is_null()) {
        let n = |k: &str| usage.get(k).and_then(Value::as_u64).unwrap_or(0) as u32;
        events.push(StreamEvent::Usage {
            prompt_tokens: n("prompt_tokens"),
            completion_tokens: n("completion_tokens"),
        });
    }
    Ok(events)
}

impl ModelProvider for OpenAiProvider {
    fn models(&self) -> Vec<ModelInfo> {
        self.models
            .iter()
            .enumerate()
            .map(|(i, m)| ModelInfo {
                id: m.clone(),
                provider: "openai-compatible".to_owned(),
                default: i == 0,
            })
            .collect()
    }

    fn stream(&self, request: ChatRequest) -> BoxStream<'static, Result<StreamEvent, ProviderError>> {
        if !self.models.contains(&request.model) {
            return stream::iter([Err(ProviderError::UnknownModel(request.model))]).boxed();
        }
        let mut body = json!({
            "model": request.model,
            "messages": request.messages,
            "stream": true,
            "stream_options": { "include_usage": true },
        });
        if let Some(max) = request.max_tokens {
            body["max_tokens"] = json!(max);
        }
        let mut call = self
            .http
            .post(format!("{}/chat/completions", self.base_url))
            .json(&body);
        if let Some(key) = &self.api_key {
            call = call.bearer_auth(key);
        }
        let idle = self.idle_timeout;
        let started = async move {
            let response = tokio::time::timeout(idle, call.send())
                .await
                .map_err(|_| ProviderError::Unreachable("no response in time".into()))?
                .map_err(|e| ProviderError::Unreachable(e.to_string()))?;
            let status = response.status();
            if !status.is_success() {
                let text = response.text().await.unwrap_or_default();
                let message = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| v.pointer("/error/message").and_then(Value::as_str).map(str::to_owned))
                    .unwrap_or_else(|| text.chars().take(300).collect());
                return Err(ProviderError::Refused {
                    status: status.as_u16(),
                    message,
                });
            }
            Ok(response)
        };
        stream::once(started)
            .flat_map(move |started| match started {
                Err(e) => stream::iter([Err(e)]).boxed(),
                Ok(response) => events(response, idle),
            })
            .boxed()
    }
}

/// The events of a successful streaming response, until `[DONE]`.
fn events(response: reqwest::Response, idle: Duration) -> BoxStream<'static, Result<StreamEvent, ProviderError>> {
    let bytes = response.bytes_stream();
    let state = (
        bytes.boxed(),
        SseParser::default(),
        std::collections::VecDeque::new(),
        false,
    );
    stream::unfold(state, move |(mut bytes, mut parser, mut queue, mut done)| async move {
        loop {
            if let Some(item) = queue.pop_front() {
                return Some((item, (bytes, parser, queue, done)));
            }
            if done {
                return None;
            }
            let next = match tokio::time::timeout(idle, bytes.next()).await {
                Err(_) => Some(Err(ProviderError::Stream("the reply stalled".into()))),
                Ok(None) => Some(Err(ProviderError::Stream("the stream ended before [DONE]".into()))),
                Ok(Some(Err(e))) => Some(Err(ProviderError::Stream(e.to_string()))),
                Ok(Some(Ok(chunk))) => {
                    for data in parser.feed(&chunk) {
                        if data.trim() == "[DONE]" {
                            done = true;
                            break;
                        }
                        match parse_chunk(&data) {
                            Ok(events) => queue.extend(events.into_iter().map(Ok)),
                            Err(e) => {
                                queue.push_back(Err(e));
                                done = true;
                                break;
                            }
                        }
                    }
                    None
                }
            };
            if let Some(err) = next {
                done = true;
                queue.push_back(err);
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_split_across_chunks_and_comments() {
        let mut p = SseParser::default();
        assert!(p.feed(b": keep-alive\n\ndata: {\"a\"").is_empty());
        assert_eq!(
            p.feed(b":1}\r\n\r\ndata: [DONE]\n\n"),
            vec!["{\"a\":1}".to_owned(), "[DONE]".to_owned()]
        );
        // A character split between two reads arrives whole.
        let bytes = "data: {\"t\":\"✓\"}\n\n".as_bytes();
        let cut = bytes.iter().position(|b| *b == 0xE2).unwrap() + 1;
        assert!(p.feed(&bytes[..cut]).is_empty());
        assert_eq!(p.feed(&bytes[cut..]), vec!["{\"t\":\"✓\"}".to_owned()]);
    }

    #[test]
    fn chunks_give_deltas_usage_and_errors() {
        assert_eq!(
            parse_chunk(r#"{"choices":[{"delta":{"role":"assistant"}}]}"#),
            Ok(vec![])
        );
        assert_eq!(
            parse_chunk(r#"{"choices":[{"delta":{"content":"Hi"}}]}"#),
            Ok(vec![StreamEvent::Delta("Hi".into())])
        );
        assert_eq!(
            parse_chunk(r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5}}"#),
            Ok(vec![StreamEvent::Usage {
                prompt_tokens: 3,
                completion_tokens: 5
            }])
        );
        assert!(parse_chunk(r#"{"error":{"message":"overloaded"}}"#).is_err());
    }

    #[test]
    fn a_nul_from_the_provider_becomes_storable() {
        let events = parse_chunk(r#"{"choices":[{"delta":{"content":"a\u0000b"}}]}"#).unwrap();
        assert!(
            matches!(&events[..], [StreamEvent::Delta(t)] if t == "a\u{FFFD}b"),
            "{events:?}"
        );
    }
}
