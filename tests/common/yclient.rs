//! A y-websocket client in Rust (yrs) for tests: syncs a local document with
//! `/ws/artifacts/{id}` and makes edits the way a browser editor would.

use super::{Api, User};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;
use yrs::sync::{Message as YMessage, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, ReadTxn, Text, Transact, Update};

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub struct YClient {
    pub doc: Doc,
    socket: Socket,
    /// The server answered our state vector (the initial sync is done).
    synced: bool,
}

impl Api {
    /// A connect token for the artifact socket.
    pub async fn artifact_token(
        &self,
        user: &User,
        artifact: Uuid,
        access: &str,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        self.post(
            &format!("/api/artifacts/{artifact}/connect-token"),
            Some(&user.token),
            json!({ "access": access }),
        )
        .await
    }

    /// Connects a Rust Yjs client and waits for the initial sync.
    pub async fn yclient(&self, user: &User, artifact: Uuid, access: &str) -> YClient {
        let (status, body) = self.artifact_token(user, artifact, access).await;
        assert_eq!(status, 201, "{body}");
        self.yclient_with(artifact, body["token"].as_str().unwrap()).await
    }

    /// Connects a Rust Yjs client with a given connect token and waits for the initial sync.
    pub async fn yclient_with(&self, artifact: Uuid, token: &str) -> YClient {
        let url = format!("ws://127.0.0.1:{}/ws/artifacts/{artifact}?token={token}", self.port);
        let (socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("artifact socket connects");
        let mut client = YClient {
            doc: Doc::new(),
            socket,
            synced: false,
        };
        // Like y-websocket: send our state vector; the server sends its own, we answer.
        let sv = client.doc.transact().state_vector();
        client.send(YMessage::Sync(SyncMessage::SyncStep1(sv))).await;
        client.pump_until(|c| c.synced).await;
        client
    }

    /// The artifact's committed text over REST.
    pub async fn artifact_text(&self, user: &User, artifact: Uuid) -> String {
        let (status, body) = self.get(&format!("/api/artifacts/{artifact}"), &user.token).await;
        assert_eq!(status, 200, "{body}");
        body["content"].as_str().unwrap().to_owned()
    }
}

impl YClient {
    async fn send(&mut self, message: YMessage) {
        self.socket
            .send(Message::Binary(message.encode_v1().into()))
            .await
            .expect("sent");
    }

    /// Sends raw bytes as one binary frame (for protocol-limit tests).
    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.socket.send(Message::Binary(bytes.into())).await.expect("sent");
    }

    pub fn text(&self) -> String {
        let text = self.doc.get_or_insert_text("content");
        text.get_string(&self.doc.transact())
    }

    /// Handles one incoming message (waiting at most `wait`); false on timeout.
    async fn step(&mut self, wait: Duration) -> bool {
        let Ok(next) = tokio::time::timeout(wait, self.socket.next()).await else {
            return false;
        };
        let Some(Ok(Message::Binary(bytes))) = next else {
            return true;
        };
        match YMessage::decode_v1(&bytes).expect("y-websocket message") {
            YMessage::Sync(SyncMessage::SyncStep1(sv)) => {
                let diff = self.doc.transact().encode_diff_v1(&sv);
                self.send(YMessage::Sync(SyncMessage::SyncStep2(diff))).await;
            }
            YMessage::Sync(SyncMessage::SyncStep2(u)) => {
                self.doc
                    .transact_mut()
                    .apply_update(Update::decode_v1(&u).unwrap())
                    .unwrap();
                self.synced = true;
            }
            YMessage::Sync(SyncMessage::Update(u)) => {
                self.doc
                    .transact_mut()
                    .apply_update(Update::decode_v1(&u).unwrap())
                    .unwrap();
            }
            _ => {}
        }
        true
    }

    /// Processes messages until `done` holds (fails the test after a generous wait).
    pub async fn pump_until(&mut self, done: impl Fn(&YClient) -> bool) {
        let deadline = tokio::time::Instant::now() + super::ws::WAIT;
        while !done(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "document never reached the expected state: {:?}",
                self.text()
            );
            self.step(Duration::from_millis(200)).await;
        }
    }

    /// Waits until the text equals `expected`.
    pub async fn wait_text(&mut self, expected: &str) {
        self.pump_until(|c| c.text() == expected).await;
    }

    /// Processes whatever arrives within `wait`.
    pub async fn settle(&mut self, wait: Duration) {
        while self.step(wait).await {}
    }

    /// Reads until the server closes the socket; returns the close code.
    pub async fn closed(&mut self) -> Option<u16> {
        loop {
            match tokio::time::timeout(super::ws::WAIT, self.socket.next())
                .await
                .expect("the socket closes in time")
            {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    }

    /// Inserts text at a character index, as an editor would, and sends the update.
    pub async fn insert(&mut self, index: u32, chunk: &str) {
        let text = self.doc.get_or_insert_text("content");
        let update = {
            let mut txn = self.doc.transact_mut();
            text.insert(&mut txn, index, chunk);
            txn.encode_update_v1()
        };
        self.send(YMessage::Sync(SyncMessage::Update(update))).await;
    }

    /// Appends at the end.
    pub async fn append(&mut self, chunk: &str) {
        let len = self.text().len() as u32;
        self.insert(len, chunk).await;
    }
}
