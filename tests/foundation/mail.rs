//! Invitation mail through the outbox: delivered to a real (tiny, in-test) SMTP server,
//! scrubbed once sent, and kept for retry — never lost — while SMTP is down.

use crate::common::*;
use base64::Engine;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use uuid::Uuid;

/// One message the SMTP server accepted.
#[derive(Debug, Clone)]
struct Mail {
    from: String,
    to: Vec<String>,
    /// Headers and body as sent, dot-stuffing undone.
    data: String,
}

impl Mail {
    fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or_default();
        head.split("\r\n")
            .find(|line| line.split_once(':').is_some_and(|(n, _)| n.eq_ignore_ascii_case(name)))
            .map(|line| line.split_once(':').unwrap().1.trim().to_owned())
    }

    /// The body with its transfer encoding undone.
    fn text(&self) -> String {
        let body = self.data.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
        match self
            .header("Content-Transfer-Encoding")
            .unwrap_or_default()
            .to_ascii_lowercase()
            .as_str()
        {
            "base64" => {
                let compact: String = body.split_whitespace().collect();
                String::from_utf8(base64::engine::general_purpose::STANDARD.decode(compact).unwrap()).unwrap()
            }
            "quoted-printable" => quoted_printable(body),
            _ => body.to_owned(),
        }
    }
}

fn quoted_printable(body: &str) -> String {
    let joined = body.replace("=\r\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// A minimal SMTP server on a free port that records what it is sent. While `down` is
/// set it greets with `421` and hangs up, as a server refusing service does.
struct SmtpServer {
    port: u16,
    inbox: Arc<Mutex<Vec<Mail>>>,
    down: Arc<AtomicBool>,
}

impl SmtpServer {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let inbox = Arc::new(Mutex::new(Vec::new()));
        let down = Arc::new(AtomicBool::new(false));
        let (inbox2, down2) = (inbox.clone(), down.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (inbox, down) = (inbox2.clone(), down2.clone());
                tokio::spawn(async move {
                    let _ = smtp_session(stream, inbox, down).await;
                });
            }
        });
        Self { port, inbox, down }
    }

    fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    fn received(&self) -> Vec<Mail> {
        self.inbox.lock().unwrap().clone()
    }
}

/// Extracts `addr` from `MAIL FROM:<addr> …` / `RCPT TO:<addr>`.
fn address(arg: &str) -> String {
    let start = arg.find('<').map(|i| i + 1).unwrap_or(0);
    let end = arg.find('>').unwrap_or(arg.len());
    arg[start..end].trim().to_owned()
}

async fn smtp_session(stream: TcpStream, inbox: Arc<Mutex<Vec<Mail>>>, down: Arc<AtomicBool>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    if down.load(Ordering::SeqCst) {
        write.write_all(b"421 test-smtp service not available\r\n").await?;
        return Ok(());
    }
    write.write_all(b"220 test-smtp ESMTP ready\r\n").await?;
    let mut from = String::new();
    let mut to = Vec::new();
    loop {
        let mut line = Vec::new();
        if reader.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let line = String::from_utf8_lossy(&line).trim_end().to_owned();
        let upper = line.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            b"250 test-smtp\r\n"
        } else if upper.starts_with("MAIL FROM:") {
            from = address(&line[10..]);
            to.clear();
            b"250 OK\r\n"
        } else if upper.starts_with("RCPT TO:") {
            to.push(address(&line[8..]));
            b"250 OK\r\n"
        } else if upper == "DATA" {
            write.write_all(b"354 end data with <CR><LF>.<CR><LF>\r\n").await?;
            let mut data = String::new();
            loop {
                let mut raw = Vec::new();
                if reader.read_until(b'\n', &mut raw).await? == 0 {
                    return Ok(());
                }
                let text = String::from_utf8_lossy(&raw).into_owned();
                if text == ".\r\n" {
                    break;
                }
                // Undo dot-stuffing.
                data.push_str(text.strip_prefix('.').unwrap_or(&text));
            }
            inbox.lock().unwrap().push(Mail {
                from: from.clone(),
                to: std::mem::take(&mut to),
                data,
            });
            b"250 OK queued\r\n"
        } else if upper == "QUIT" {
            write.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            // RSET, NOOP and the like.
            b"250 OK\r\n"
        };
        write.write_all(reply).await?;
    }
}

/// Polls `check` until it returns `Some`, failing after a generous deadline.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The outbox row: (to, body, attempts, sent, last_error).
type OutboxRow = (String, String, i32, bool, Option<String>);

async fn outbox(app: &TestApp) -> Vec<OutboxRow> {
    let db = app.db.client().await;
    db.query(
        "SELECT to_address, body, attempts, sent_at IS NOT NULL, last_error FROM email_outbox ORDER BY created_at",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
    .collect()
}

async fn invite(app: &TestApp, owner: &User, ws: Uuid, email: &str) -> Value {
    let (status, body) = app
        .post(
            &format!("/api/workspaces/{ws}/invitations"),
            Some(&owner.token),
            json!({ "email": email, "role": "editor" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["email_queued"], true);
    body
}

#[actix_web::test]
async fn an_invitation_is_mailed_and_the_sent_mail_is_scrubbed() {
    let smtp = SmtpServer::start().await;
    let app = spawn_app_with(|c| {
        c.smtp_url = Some(smtp.url());
        c.outbox_poll_ms = 100;
    })
    .await;
    let owner = app.register("olga").await;
    let ws = app.create_workspace(&owner, "Research").await;
    let created = invite(&app, &owner, ws, "ivy@example.com").await;
    let link = created["link"].as_str().unwrap();

    let mail = eventually("the invitation mail", || async { smtp.received().into_iter().next() }).await;
    assert_eq!(mail.to, ["ivy@example.com"]);
    assert_eq!(mail.from, "no-reply@bedda.ai");
    assert!(mail.header("To").unwrap().contains("ivy@example.com"), "{}", mail.data);
    assert!(mail.header("Subject").unwrap().contains("Research"), "{}", mail.data);
    let text = mail.text();
    assert!(text.contains(link), "the mail carries the invitation link: {text}");
    assert!(text.contains("olga"), "{text}");

    // Once sent, the outbox keeps the fact but not the secret.
    let row = eventually("the outbox row to be marked sent", || async {
        outbox(&app).await.into_iter().next().filter(|r| r.3)
    })
    .await;
    assert_eq!(row.0, "ivy@example.com");
    assert_eq!(row.1, "");
    assert_eq!(row.4, None);
    let token = created["token"].as_str().unwrap();
    let dump: String = app
        .db
        .client()
        .await
        .query_one("SELECT string_agg(t::text, '|') FROM email_outbox t", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!dump.contains(token.trim_start_matches("bci_")));
    assert_eq!(smtp.received().len(), 1, "sent exactly once");

    // The mailed link works for the invited address.
    let (status, body) = app
        .post(
            "/api/auth/register",
            None,
            json!({ "email": "ivy@example.com", "password": "correct horse battery", "display_name": "Ivy" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let from_mail = text
        .split_whitespace()
        .find_map(|w| w.split_once("#token=").map(|(_, t)| t.to_owned()))
        .expect("a token in the mail");
    let (status, member) = app
        .post(
            "/api/invitations/accept",
            body["token"].as_str(),
            json!({ "token": from_mail }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{member}");
    assert_eq!(member["role"], "editor");
}

#[actix_web::test]
async fn with_smtp_down_the_invitation_succeeds_and_the_mail_waits() {
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let app = spawn_app_with(|c| {
        c.smtp_url = Some(format!("smtp://127.0.0.1:{port}"));
        c.outbox_poll_ms = 100;
    })
    .await;
    let owner = app.register("olga").await;
    let ws = app.create_workspace(&owner, "Research").await;
    let created = invite(&app, &owner, ws, "ivy@example.com").await;

    let row = eventually("a failed delivery attempt", || async {
        outbox(&app)
            .await
            .into_iter()
            .next()
            .filter(|r| r.2 > 0 && r.4.is_some())
    })
    .await;
    assert!(!row.3, "not marked sent");
    assert_eq!(row.0, "ivy@example.com");
    assert!(
        row.1.contains(created["link"].as_str().unwrap()),
        "the mail is kept whole"
    );
    // The invitation itself stands.
    let (_, pending) = app
        .get(&format!("/api/workspaces/{ws}/invitations"), &owner.token)
        .await;
    assert_eq!(pending.as_array().unwrap().len(), 1);
}

#[actix_web::test]
async fn mail_held_back_by_an_outage_goes_out_once_smtp_is_back() {
    let smtp = SmtpServer::start().await;
    smtp.down.store(true, Ordering::SeqCst);
    let app = spawn_app_with(|c| {
        c.smtp_url = Some(smtp.url());
        c.outbox_poll_ms = 100;
    })
    .await;
    let owner = app.register("olga").await;
    let ws = app.create_workspace(&owner, "Research").await;
    let created = invite(&app, &owner, ws, "ivy@example.com").await;
    eventually("a refused delivery attempt", || async {
        outbox(&app)
            .await
            .into_iter()
            .next()
            .filter(|r| r.2 > 0 && r.4.is_some())
    })
    .await;
    assert!(smtp.received().is_empty());

    // The server comes back; skip the backoff wait rather than sleep through it.
    smtp.down.store(false, Ordering::SeqCst);
    app.db
        .client()
        .await
        .execute("UPDATE email_outbox SET next_attempt_at = now()", &[])
        .await
        .unwrap();
    let mail = eventually("the held-back mail", || async { smtp.received().into_iter().next() }).await;
    assert_eq!(mail.to, ["ivy@example.com"]);
    assert!(mail.text().contains(created["link"].as_str().unwrap()));
    let row = eventually("the outbox row to be marked sent", || async {
        outbox(&app).await.into_iter().next().filter(|r| r.3)
    })
    .await;
    assert_eq!(row.1, "");
    assert_eq!(row.4, None);
}
