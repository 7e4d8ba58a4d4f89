//! Artifact persistence: the artifact row and access checks, the Yjs update log (events on
//! `artifact:<id>`), snapshots, and loading a document from snapshot + log.

use crate::api::{Call, Caller};
use crate::auth::{Access, Permission, Principal, access};
use crate::db::DbConn;
use crate::db::schema::{artifact_snapshots, artifacts, events as events_table};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::events::{self, Event};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, ReadTxn, Text, Transact, Update};

/// Name of the shared text every artifact document holds.
pub const TEXT: &str = "content";
/// Event kind of one Yjs update in the log.
pub const UPDATE_KIND: &str = "yjs.update";

pub fn topic(id: Uuid) -> String {
    crate::artifacts::registry::topic(id).to_string()
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize, Deserialize, utoipa::ToSchema)]
#[diesel(table_name = artifacts)]
pub struct ArtifactRow {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub session_id: Option<Uuid>,
    pub message_id: Option<Uuid>,
    pub kind: String,
    pub title: String,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Set on a branch: the artifact it was forked from.
    pub branch_of: Option<Uuid>,
    pub fork_version_id: Option<Uuid>,
    pub branch_name: Option<String>,
    pub merged_at: Option<DateTime<Utc>>,
}

pub fn not_found() -> AppError {
    AppError::new(ErrorCode::ArtifactNotFound, "artifact not found")
}

pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> AppResult<ArtifactRow> {
    artifacts::table
        .find(id)
        .select(ArtifactRow::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or_else(not_found)
}

/// The artifact and the caller's access to its workspace, requiring `permission`.
/// Non-members get `artifact_not_found`.
pub async fn authorize(
    conn: &mut AsyncPgConnection,
    principal: &Principal,
    id: Uuid,
    permission: Permission,
) -> AppResult<(ArtifactRow, Access)> {
    let row = find(conn, id).await?;
    let acc = access(conn, principal, row.workspace_id).await;
    require(row, acc, permission)
}

/// Like [`authorize`] for a user known only by id (socket connects, re-checks).
pub async fn authorize_user(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    id: Uuid,
    permission: Permission,
) -> AppResult<(ArtifactRow, Access)> {
    let row = find(conn, id).await?;
    let acc = crate::auth::authorize::user_access(conn, user_id, row.workspace_id).await;
    require(row, acc, permission)
}

fn require(row: ArtifactRow, acc: AppResult<Access>, permission: Permission) -> AppResult<(ArtifactRow, Access)> {
    let acc = acc.map_err(|e| match e.code {
        ErrorCode::WorkspaceNotFound => not_found(),
        _ => e,
    })?;
    acc.require(permission)?;
    Ok((row, acc))
}

/// A pooled connection, the artifact and the caller's access, requiring `permission`: how
/// an artifact handler begins.
pub async fn authorized<C: Caller>(
    call: &Call<C>,
    id: Uuid,
    permission: Permission,
) -> AppResult<(DbConn, ArtifactRow, Access)> {
    let mut conn = call.state.pool.get().await?;
    let (row, acc) = authorize(&mut conn, &call.caller.principal(), id, permission).await?;
    Ok((conn, row, acc))
}

/// An update as stored in an event's data.
pub fn update_data(update: &[u8], user: Option<Uuid>) -> serde_json::Value {
    serde_json::json!({ "u": B64.encode(update), "by": user })
}

/// The update carried by a `yjs.update` event.
pub fn update_of(event: &Event) -> Option<Vec<u8>> {
    if event.kind != UPDATE_KIND {
        return None;
    }
    B64.decode(event.data.get("u")?.as_str()?).ok()
}

/// Applies encoded updates to a document; an undecodable one is an error.
pub fn apply(doc: &Doc, update: &[u8]) -> AppResult<()> {
    let update = Update::decode_v1(update).map_err(|e| AppError::validation(format!("invalid Yjs update: {e}")))?;
    doc.transact_mut()
        .apply_update(update)
        .map_err(|e| AppError::validation(format!("Yjs update does not apply: {e}")))
}

/// The document's text.
pub fn text_of(doc: &Doc) -> String {
    let text = doc.get_or_insert_text(TEXT);
    let txn = doc.transact();
    text.get_string(&txn)
}

/// The whole document as one update.
pub fn state_of(doc: &Doc) -> Vec<u8> {
    doc.transact().encode_state_as_update_v1(&yrs::StateVector::default())
}

/// A document holding `text` and nothing else (for new artifacts).
pub fn doc_with_text(text: &str) -> Vec<u8> {
    let doc = Doc::new();
    let t = doc.get_or_insert_text(TEXT);
    {
        let mut txn = doc.transact_mut();
        t.insert(&mut txn, 0, text);
    }
    state_of(&doc)
}

/// Loads a document: its snapshot, then every logged update after it. Returns the
/// document and the last seq it includes. Snapshot and log are read in one snapshot of the
/// database, so a compaction committing meanwhile cannot make updates vanish between them.
pub async fn load(conn: &mut AsyncPgConnection, id: Uuid) -> AppResult<(Doc, i64)> {
    let (snapshot, events) = since(conn, id, 0).await?;
    let doc = Doc::new();
    let mut last = 0;
    if let Some((upto, state)) = snapshot {
        apply(&doc, &state).map_err(AppError::internal)?;
        last = upto;
    }
    for event in events {
        if let Some(update) = update_of(&event)
            && let Err(err) = apply(&doc, &update)
        {
            // One unusable update must not make the whole document unloadable.
            tracing::error!(error = %err, artifact = %id, seq = event.seq, "skipping an update that does not apply");
        }
        last = event.seq;
    }
    Ok((doc, last))
}

/// Writes a snapshot of everything up to `upto_seq` and drops the updates it covers.
pub async fn compact(conn: &mut AsyncPgConnection, id: Uuid, upto_seq: i64, state: &[u8]) -> AppResult<()> {
    // Only ever move the snapshot forward (two nodes may compact at once).
    diesel::sql_query(
        "INSERT INTO artifact_snapshots (artifact_id, upto_seq, state) VALUES ($1, $2, $3) \
         ON CONFLICT (artifact_id) DO UPDATE SET upto_seq = EXCLUDED.upto_seq, state = EXCLUDED.state, \
         updated_at = now() WHERE artifact_snapshots.upto_seq < EXCLUDED.upto_seq",
    )
    .bind::<diesel::sql_types::Uuid, _>(id)
    .bind::<diesel::sql_types::BigInt, _>(upto_seq)
    .bind::<diesel::sql_types::Bytea, _>(state)
    .execute(conn)
    .await?;
    diesel::delete(
        events_table::table
            .filter(events_table::topic.eq(topic(id)))
            .filter(events_table::seq.le(upto_seq)),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// What a replica at `after` is missing: the snapshot if it covers more than `after`
/// (older updates were compacted away), and the logged updates after that.
pub async fn since(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    after: i64,
) -> AppResult<(Option<(i64, Vec<u8>)>, Vec<Event>)> {
    conn.build_transaction()
        .repeatable_read()
        .read_only()
        .run::<_, AppError, _>(async |conn| {
            async move {
                let snapshot: Option<(i64, Vec<u8>)> = artifact_snapshots::table
                    .find(id)
                    .filter(artifact_snapshots::upto_seq.gt(after))
                    .select((artifact_snapshots::upto_seq, artifact_snapshots::state))
                    .first(conn)
                    .await
                    .optional()?;
                let from = snapshot.as_ref().map(|s| s.0).unwrap_or(after);
                Ok((snapshot, events::all_after(conn, &topic(id), from).await?))
            }
            .await
        })
        .await
}
