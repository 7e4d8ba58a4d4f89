//! A real WebSocket client for tests (tokio-tungstenite), speaking the `/ws` JSON protocol.

use super::{Api, User};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Longest a test waits for an expected frame before failing (a guard, not a measurement).
pub const WAIT: Duration = Duration::from_secs(15);

pub struct WsClient {
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub hello: Value,
}

/// How a connection ended.
#[derive(Debug)]
pub enum Ended {
    Closed(Option<CloseFrame>),
    Error(String),
}

impl Api {
    /// A single-use connect ticket for `user`.
    pub async fn ticket(&self, user: &User) -> String {
        let (status, body) = self.post("/api/ws-tickets", Some(&user.token), json!({})).await;
        assert_eq!(status, reqwest::StatusCode::CREATED, "{body}");
        body["ticket"].as_str().unwrap().to_owned()
    }

    /// Connects as `user` the way a browser does (ticket in the query string).
    pub async fn ws(&self, user: &User) -> WsClient {
        let ticket = self.ticket(user).await;
        let url = format!("ws://127.0.0.1:{}/ws?ticket={ticket}", self.port);
        let (stream, _) = tokio_tungstenite::connect_async(url).await.expect("WebSocket connects");
        WsClient::after_connect(stream).await
    }

    /// Connects as `user` with a tiny receive buffer (to play a slow reader).
    pub async fn ws_small_buffer(&self, user: &User) -> WsClient {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let tcp = socket
            .connect(format!("127.0.0.1:{}", self.port).parse().unwrap())
            .await
            .unwrap();
        let mut request = format!("ws://127.0.0.1:{}/ws", self.port)
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("Authorization", format!("Bearer {}", user.token).parse().unwrap());
        let (stream, _) = tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(tcp))
            .await
            .unwrap();
        WsClient::after_connect(stream).await
    }
}

impl WsClient {
    async fn after_connect(stream: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Self {
        let mut client = WsClient {
            stream,
            hello: Value::Null,
        };
        let hello = client.next().await;
        assert_eq!(hello["type"], "hello", "{hello}");
        client.hello = hello;
        client
    }

    pub async fn send(&mut self, frame: Value) {
        self.stream
            .send(Message::Text(frame.to_string().into()))
            .await
            .expect("frame sent");
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.stream.send(message).await.expect("frame sent");
    }

    /// The next JSON frame (pings are answered by the library).
    pub async fn next(&mut self) -> Value {
        // One deadline for the frame, however many pings arrive meanwhile.
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let message = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .expect("a frame arrives in time")
                .expect("the connection is open")
                .expect("no WebSocket error");
            match message {
                Message::Text(text) => return serde_json::from_str(&text).expect("frames are JSON"),
                Message::Close(frame) => panic!("connection closed unexpectedly: {frame:?}"),
                _ => continue,
            }
        }
    }

    /// Frames until one matches, returning all of them (the match last).
    pub async fn until(&mut self, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let frame = self.next().await;
            let done = pred(&frame);
            seen.push(frame);
            if done {
                return seen;
            }
        }
    }

    /// Reads until the connection ends; returns how.
    pub async fn ended(&mut self) -> Ended {
        loop {
            match tokio::time::timeout(WAIT, self.stream.next())
                .await
                .expect("the connection ends in time")
            {
                None => return Ended::Closed(None),
                Some(Ok(Message::Close(frame))) => return Ended::Closed(frame),
                Some(Ok(_)) => continue,
                Some(Err(WsError::ConnectionClosed)) | Some(Err(WsError::AlreadyClosed)) => return Ended::Closed(None),
                Some(Err(err)) => return Ended::Error(err.to_string()),
            }
        }
    }

    /// Subscribes and waits until caught up; returns the replayed events.
    pub async fn subscribe(&mut self, topic: &str, after_seq: Option<i64>) -> (Value, Vec<Value>) {
        self.send(json!({ "type": "subscribe", "ref": "sub", "topic": topic, "after_seq": after_seq }))
            .await;
        let frames = self.until(|f| f["type"] == "caught_up" || f["type"] == "error").await;
        let last = frames.last().unwrap();
        assert_eq!(last["type"], "caught_up", "subscribe failed: {frames:?}");
        let subscribed = frames
            .iter()
            .find(|f| f["type"] == "subscribed")
            .cloned()
            .expect("subscribed frame");
        let events = frames.into_iter().filter(|f| f["type"] == "event").collect();
        (subscribed, events)
    }

    /// Sends a message and waits for its ack; returns the acked seq.
    pub async fn say(&mut self, topic: &str, body: &str, reference: &str) -> i64 {
        self.send(json!({ "type": "send_message", "ref": reference, "topic": topic, "body": body }))
            .await;
        let frames = self
            .until(|f| (f["type"] == "ack" || f["type"] == "error") && f["ref"] == reference)
            .await;
        let answer = frames.last().unwrap();
        assert_eq!(answer["type"], "ack", "{answer}");
        answer["seq"].as_i64().unwrap()
    }

    /// The next frame of the given type, skipping others.
    pub async fn next_of(&mut self, kind: &str) -> Value {
        self.until(|f| f["type"] == kind).await.pop().unwrap()
    }
}

impl Api {
    /// A session in `workspace` created by `owner`; returns (id, topic).
    pub async fn create_session(&self, owner: &User, workspace: uuid::Uuid, visibility: &str) -> (uuid::Uuid, String) {
        let (status, body) = self
            .post(
                &format!("/api/workspaces/{workspace}/sessions"),
                Some(&owner.token),
                json!({ "title": "Planning", "visibility": visibility }),
            )
            .await;
        assert_eq!(status, reqwest::StatusCode::CREATED, "{body}");
        let id: uuid::Uuid = body["id"].as_str().unwrap().parse().unwrap();
        (id, format!("session:{id}"))
    }
}

/// Two people in one workspace-visible session, both subscribed: the owner (`a`, connected
/// through `owner_api`) and `bob` with `role` (`b`, through `member_api`, which may be another
/// node).
pub struct Duo {
    pub owner: User,
    pub bob: User,
    pub workspace: uuid::Uuid,
    pub topic: String,
    pub a: WsClient,
    pub b: WsClient,
}

impl Duo {
    pub async fn start(owner_api: &Api, member_api: &Api, role: &str) -> Duo {
        let owner = owner_api.register("owner").await;
        let workspace = owner_api.create_workspace(&owner, "Team").await;
        let bob = owner_api.add_member(&owner, workspace, "bob", role).await;
        let (_, topic) = owner_api.create_session(&owner, workspace, "workspace").await;
        let mut a = owner_api.ws(&owner).await;
        a.subscribe(&topic, None).await;
        let mut b = member_api.ws(&bob).await;
        b.subscribe(&topic, None).await;
        Duo {
            owner,
            bob,
            workspace,
            topic,
            a,
            b,
        }
    }
}
