//! A small local server that speaks the OpenAI Chat Completions streaming wire format, so
//! the real client code is exercised without the real service. What it answers depends on
//! the last user message: `fail-now` → HTTP 500 with an error body; `fail-midway` → a few
//! deltas then an error chunk; `slow` → many deltas 150 ms apart; anything else → a short
//! reply in pieces. Every stream starts with a keep-alive comment and a role delta and ends
//! with a usage chunk and `[DONE]`.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub struct FakeOpenAi {
    pub url: String,
    /// Bodies of the requests received.
    pub requests: Arc<Mutex<Vec<serde_json::Value>>>,
}

/// The reply the fake model streams for a normal question.
pub const PIECES: [&str; 6] = ["Hello", " team", ", here", " is the", " answer", " ✓"];

impl FakeOpenAi {
    pub async fn start() -> FakeOpenAi {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let _ = serve(socket, seen).await;
                });
            }
        });
        FakeOpenAi { url, requests }
    }
}

async fn serve(mut socket: tokio::net::TcpStream, seen: Arc<Mutex<Vec<serde_json::Value>>>) -> std::io::Result<()> {
    // Read headers, then the body by Content-Length.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
        .unwrap_or(0);
    while buf.len() < header_end + length {
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body: serde_json::Value = serde_json::from_slice(&buf[header_end..]).unwrap_or_default();
    seen.lock().unwrap().push(body.clone());
    let question = body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_owned();

    if question.contains("fail-now") {
        let error = r#"{"error":{"message":"the model is overloaded","type":"server_error"}}"#;
        let response = format!(
            "HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{error}",
            error.len()
        );
        socket.write_all(response.as_bytes()).await?;
        return Ok(());
    }
    socket
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n")
        .await?;
    let model = body["model"].as_str().unwrap_or("?").to_owned();
    let chunk = |delta: serde_json::Value| {
        format!(
            "data: {}\n\n",
            serde_json::json!({ "id": "chatcmpl-1", "object": "chat.completion.chunk", "model": model,
                "choices": [{ "index": 0, "delta": delta, "finish_reason": null }] })
        )
    };
    socket.write_all(b": keep-alive\n\n").await?;
    socket
        .write_all(chunk(serde_json::json!({ "role": "assistant", "content": "" })).as_bytes())
        .await?;
    let (pieces, delay): (Vec<String>, u64) = if question.contains("slow") {
        ((0..60).map(|i| format!("word{i} ")).collect(), 150)
    } else if question.contains("medium") {
        ((0..15).map(|i| format!("word{i} ")).collect(), 150)
    } else {
        (PIECES.iter().map(|s| s.to_string()).collect(), 20)
    };
    for (i, piece) in pieces.iter().enumerate() {
        if question.contains("fail-midway") && i == 3 {
            socket
                .write_all(b"data: {\"error\":{\"message\":\"the backend crashed\"}}\n\n")
                .await?;
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(delay)).await;
        socket
            .write_all(chunk(serde_json::json!({ "content": piece })).as_bytes())
            .await?;
        if i == 2 {
            socket.write_all(b": keep-alive\n\n").await?;
        }
    }
    let usage = serde_json::json!({ "id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [],
        "usage": { "prompt_tokens": 42, "completion_tokens": pieces.len(), "total_tokens": 42 + pieces.len() } });
    socket.write_all(format!("data: {usage}\n\n").as_bytes()).await?;
    socket.write_all(b"data: [DONE]\n\n").await?;
    socket.shutdown().await
}
