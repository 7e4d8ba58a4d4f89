//! Clients that connect from a chosen loopback address (127.0.0.2, 127.0.0.3, … all reach a
//! server on 127.0.0.1 on Linux), so tests can play several client addresses, and the
//! `Retry-After` of an answer.

use crate::common::Api;
use reqwest::StatusCode;
use serde_json::Value;
use std::net::IpAddr;

/// An answer: status, JSON body, and `Retry-After` in seconds if sent.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub retry_after: Option<u64>,
}

impl Answer {
    /// As `(status, body)`, for `assert_error`.
    pub fn pair(&self) -> (StatusCode, Value) {
        (self.status, self.body.clone())
    }
}

/// A client of `api`'s server whose connections come from `ip`.
pub fn client_from(api: &Api, ip: &str) -> Api {
    let http = reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().expect("an IP address"))
        .build()
        .expect("an HTTP client");
    Api {
        base: api.base.clone(),
        port: api.port,
        http,
    }
}

/// POSTs `body` to `path` and keeps the `Retry-After` header.
pub async fn post(api: &Api, path: &str, body: &Value) -> Answer {
    let res = api
        .http
        .post(format!("{}{}", api.base, path))
        .json(body)
        .send()
        .await
        .expect("request sent");
    let status = res.status();
    let retry_after = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let text = res.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        body,
        retry_after,
    }
}
