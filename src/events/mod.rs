//! The ordered event log: one gap-free sequence per topic, appended inside the caller's
//! transaction, and read back for replay. A topic is `<kind>:<id>` (`session`, `artifact`,
//! …). Beside the log: the one way to commit events (`commit`), the ordering of committed
//! events in a topic actor (`ordered`) and the group-commit writer (`writer`).

pub mod commit;
pub mod ordered;
pub mod writer;

pub use commit::{Committed, commit};

use crate::db::schema::events;
use crate::error::AppResult;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use uuid::Uuid;

/// A committed, durable event.
#[derive(Debug, Clone, Serialize, Deserialize, Queryable, Selectable)]
#[diesel(table_name = events)]
pub struct Event {
    pub topic: String,
    pub seq: i64,
    pub kind: String,
    pub data: serde_json::Value,
    pub actor_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

/// An event with its wire frame serialized once, shared by every recipient.
#[derive(Debug, Clone)]
pub struct SharedEvent {
    pub seq: i64,
    pub frame: bytestring::ByteString,
}

impl SharedEvent {
    pub fn new(event: &Event) -> Arc<Self> {
        let frame = crate::transport::ServerFrame::Event {
            topic: &event.topic,
            seq: event.seq,
            kind: &event.kind,
            data: &event.data,
            actor_id: event.actor_id,
            at: event.created_at,
        }
        .encode();
        Arc::new(Self { seq: event.seq, frame })
    }
}

/// Reserves `n` consecutive seqs on `topic` and returns the first. Locks the topic row
/// until the transaction ends, so concurrent writers (on any node) queue up behind it.
/// Built with the query builder (not raw SQL) so each connection prepares it once and
/// reuses it: a raw `sql_query` is prepared anew on every call, one more round trip.
pub async fn reserve(conn: &mut AsyncPgConnection, topic: &str, n: i64) -> AppResult<i64> {
    use crate::db::schema::topics;
    use diesel::upsert::excluded;
    let last: i64 = diesel::insert_into(topics::table)
        .values((topics::topic.eq(topic), topics::last_seq.eq(n)))
        .on_conflict(topics::topic)
        .do_update()
        .set(topics::last_seq.eq(topics::last_seq + excluded(topics::last_seq)))
        .returning(topics::last_seq)
        .get_result(conn)
        .await?;
    Ok(last - n + 1)
}

/// A typed event payload's kind and data: the payload serializes adjacently tagged
/// (`#[serde(tag = "kind", content = "data")]`), as each room's event enum does.
pub fn parts(payload: &impl Serialize) -> AppResult<(String, serde_json::Value)> {
    let mut value = serde_json::to_value(payload).map_err(crate::error::AppError::internal)?;
    let kind = value
        .get("kind")
        .and_then(|k| k.as_str())
        .map(str::to_owned)
        .ok_or_else(|| crate::error::AppError::internal(anyhow::anyhow!("an event payload without a kind")))?;
    let data = value.get_mut("data").map(serde_json::Value::take).unwrap_or_default();
    Ok((kind, data))
}

/// Appends one event at the topic's next seq.
pub async fn append(
    conn: &mut AsyncPgConnection,
    topic: &str,
    kind: &str,
    data: serde_json::Value,
    actor_id: Option<Uuid>,
) -> AppResult<Event> {
    let seq = reserve(conn, topic, 1).await?;
    insert(conn, topic, seq, kind, data, actor_id).await
}

/// Appends one event at a seq reserved with [`reserve`].
pub async fn insert(
    conn: &mut AsyncPgConnection,
    topic: &str,
    seq: i64,
    kind: &str,
    data: serde_json::Value,
    actor_id: Option<Uuid>,
) -> AppResult<Event> {
    Ok(diesel::insert_into(events::table)
        .values((
            events::topic.eq(topic),
            events::seq.eq(seq),
            events::kind.eq(kind),
            events::data.eq(data),
            events::actor_id.eq(actor_id),
        ))
        .returning(Event::as_returning())
        .get_result(conn)
        .await?)
}

/// The topic's last committed seq (0 when it has none).
pub async fn last_seq(conn: &mut AsyncPgConnection, topic: &str) -> AppResult<i64> {
    use crate::db::schema::topics;
    Ok(topics::table
        .find(topic)
        .select(topics::last_seq)
        .first(conn)
        .await
        .optional()?
        .unwrap_or(0))
}

/// Events with `seq > after`, in order, at most `limit`.
pub async fn after(conn: &mut AsyncPgConnection, topic: &str, after: i64, limit: i64) -> AppResult<Vec<Event>> {
    Ok(events::table
        .filter(events::topic.eq(topic))
        .filter(events::seq.gt(after))
        .order(events::seq.asc())
        .limit(limit)
        .select(Event::as_select())
        .load(conn)
        .await?)
}

/// Every event with `seq > after`, paging through the log however many there are.
pub async fn all_after(conn: &mut AsyncPgConnection, topic: &str, mut after: i64) -> AppResult<Vec<Event>> {
    const PAGE: i64 = 500;
    let mut all = Vec::new();
    loop {
        let page = self::after(conn, topic, after, PAGE).await?;
        let done = (page.len() as i64) < PAGE;
        if let Some(last) = page.last() {
            after = last.seq;
        }
        all.extend(page);
        if done {
            return Ok(all);
        }
    }
}

/// Appends several events at consecutive seqs from `first` in one statement (one round trip
/// however many), returning them in seq order.
pub async fn insert_many(
    conn: &mut AsyncPgConnection,
    topic: &str,
    first: i64,
    rows: Vec<(&str, serde_json::Value, Option<Uuid>)>,
) -> AppResult<Vec<Event>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let values: Vec<_> = rows
        .into_iter()
        .enumerate()
        .map(|(i, (kind, data, actor))| {
            (
                events::topic.eq(topic),
                events::seq.eq(first + i as i64),
                events::kind.eq(kind),
                events::data.eq(data),
                events::actor_id.eq(actor),
            )
        })
        .collect();
    let mut inserted: Vec<Event> = diesel::insert_into(events::table)
        .values(values)
        .returning(Event::as_returning())
        .get_results(conn)
        .await?;
    inserted.sort_by_key(|e| e.seq);
    Ok(inserted)
}

#[cfg(test)]
mod tests {
    #[derive(serde::Serialize)]
    #[serde(tag = "kind", content = "data")]
    enum Sample {
        #[serde(rename = "thing.done")]
        Done { id: u32 },
    }

    #[test]
    fn a_typed_payload_splits_into_kind_and_data() {
        let (kind, data) = super::parts(&Sample::Done { id: 7 }).unwrap();
        assert_eq!(kind, "thing.done");
        assert_eq!(data, serde_json::json!({ "id": 7 }));
    }
}
