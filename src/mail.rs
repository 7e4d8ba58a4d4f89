//! Outgoing mail through an outbox table: a mail is written in the same transaction as
//! what caused it and sent by a background worker, so an SMTP outage delays mail but never
//! loses it. Sent mail has its body scrubbed (it may hold an invitation secret).

use crate::db::DbPool;
use crate::db::schema::email_outbox;
use crate::error::AppResult;
use chrono::Utc;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use uuid::Uuid;

/// Whether mail goes out, and a bell to wake the worker after a commit.
#[derive(Clone)]
pub struct Mailer {
    pub enabled: bool,
    wake: Arc<Notify>,
}

impl Mailer {
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Queues a mail in the caller's transaction.
    pub async fn enqueue(&self, conn: &mut AsyncPgConnection, to: &str, subject: &str, body: &str) -> AppResult<()> {
        diesel::insert_into(email_outbox::table)
            .values((
                email_outbox::id.eq(Uuid::new_v4()),
                email_outbox::to_address.eq(to),
                email_outbox::subject.eq(subject),
                email_outbox::body.eq(body),
            ))
            .execute(conn)
            .await?;
        Ok(())
    }

    /// Call after the enqueuing transaction committed, to send without waiting for a poll.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Starts the sending loop (only when SMTP is configured).
    pub fn spawn_worker(&self, pool: DbPool, smtp_url: String, from: String, poll: Duration) -> anyhow::Result<()> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&smtp_url)
            .map_err(|e| anyhow::anyhow!("SMTP_URL is not usable: {e}"))?
            .timeout(Some(Duration::from_secs(20)))
            .build();
        let from: Mailbox = from
            .parse()
            .map_err(|e| anyhow::anyhow!("SMTP_FROM is not a mailbox: {e}"))?;
        let wake = self.wake.clone();
        tokio::spawn(async move {
            loop {
                match send_due(&pool, &transport, &from).await {
                    Ok(sent) if sent > 0 => continue,
                    Ok(_) => {}
                    Err(err) => tracing::warn!(error = %err, "mail outbox pass failed"),
                }
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(poll) => {}
                }
            }
        });
        Ok(())
    }
}

type Pending = (Uuid, String, String, String, i32);

/// Sends up to a batch of due mails; returns how many were sent.
async fn send_due(
    pool: &DbPool,
    transport: &AsyncSmtpTransport<Tokio1Executor>,
    from: &Mailbox,
) -> anyhow::Result<usize> {
    let mut conn = pool.get().await?;
    // Claim rows by pushing their next attempt into the future: several nodes may run a
    // worker, and SKIP LOCKED keeps them off each other's rows.
    let batch: Vec<Pending> = conn
        .transaction::<_, diesel::result::Error, _>(async |conn| {
            async move {
                let rows: Vec<Pending> = email_outbox::table
                    .filter(email_outbox::sent_at.is_null())
                    .filter(email_outbox::next_attempt_at.le(diesel::dsl::now))
                    .order(email_outbox::next_attempt_at.asc())
                    .limit(20)
                    .for_update()
                    .skip_locked()
                    .select((
                        email_outbox::id,
                        email_outbox::to_address,
                        email_outbox::subject,
                        email_outbox::body,
                        email_outbox::attempts,
                    ))
                    .load(conn)
                    .await?;
                let ids: Vec<Uuid> = rows.iter().map(|r| r.0).collect();
                diesel::update(email_outbox::table.filter(email_outbox::id.eq_any(&ids)))
                    .set(email_outbox::next_attempt_at.eq(crate::db::now_plus(std::time::Duration::from_secs(5 * 60))))
                    .execute(conn)
                    .await?;
                Ok(rows)
            }
            .await
        })
        .await?;
    let mut sent = 0;
    for (id, to, subject, body, attempts) in batch {
        let result = async {
            let message = Message::builder()
                .from(from.clone())
                .to(to.parse::<Mailbox>()?)
                .subject(subject)
                .body(body)?;
            transport.send(message).await?;
            anyhow::Ok(())
        }
        .await;
        match result {
            Ok(()) => {
                sent += 1;
                diesel::update(email_outbox::table.find(id))
                    .set((
                        email_outbox::sent_at.eq(Utc::now()),
                        email_outbox::body.eq(""),
                        email_outbox::last_error.eq(None::<String>),
                    ))
                    .execute(&mut conn)
                    .await?;
                tracing::info!(outbox_id = %id, "mail sent");
            }
            Err(err) => {
                // Exponential backoff: 10 s, 20 s, 40 s … capped at an hour.
                let delay = 10i64 * 2i64.pow(attempts.clamp(0, 9) as u32);
                diesel::update(email_outbox::table.find(id))
                    .set((
                        email_outbox::attempts.eq(attempts + 1),
                        email_outbox::last_error.eq(format!("{err:#}")),
                        email_outbox::next_attempt_at.eq(crate::db::now_plus(std::time::Duration::from_secs(
                            delay.min(3600) as u64,
                        ))),
                    ))
                    .execute(&mut conn)
                    .await?;
                tracing::warn!(outbox_id = %id, error = %err, "mail not sent; will retry");
            }
        }
    }
    Ok(sent)
}
