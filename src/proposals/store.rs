//! The durable side of model proposals: the rows, their events on the session's log, and
//! every change as one function that runs inside the caller's `events::commit`
//! transaction. Each change locks the proposal row (`FOR UPDATE`) and checks that it is
//! still open, so whatever node or path gets there first decides, and exactly once.

use crate::auth::permissions::Permission;
use crate::db::schema::{
    chat_sessions, model_proposal_votes, model_proposals, session_participants, workspace_members,
};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::events::{self, Event};
use crate::proposals::rules::{Status, Tally, Vote};
use crate::sessions::access::{SessionAccess, SessionRow, resolve, session_access};
use crate::sessions::events::SessionEvent;
use chrono::{DateTime, Utc};
use diesel::dsl::now;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use uuid::Uuid;

/// How long a proposal stays open unless its proposer says otherwise.
pub const DEFAULT_EXPIRY: Duration = Duration::from_secs(300);
/// The shortest and longest voting time a proposer may ask for.
pub const MIN_EXPIRY: Duration = Duration::from_secs(30);
pub const MAX_EXPIRY: Duration = Duration::from_secs(24 * 3600);
/// Reasoning text length.
pub const MAX_REASONING: usize = 2000;
pub const MAX_COMMENT: usize = 1000;

/// A proposal as stored.
#[derive(Debug, Clone, Queryable, Selectable, Serialize, Deserialize, utoipa::ToSchema)]
#[diesel(table_name = model_proposals)]
pub struct ProposalRow {
    pub id: Uuid,
    pub session_id: Uuid,
    pub proposed_by: Option<Uuid>,
    /// The model proposed (one of `GET /api/models`).
    pub model: String,
    pub reasoning: String,
    #[schema(value_type = Status)]
    pub status: String,
    /// Who may vote: the participants holding `vote_on_models` when it opened.
    pub eligible: Vec<Uuid>,
    pub created_at: DateTime<Utc>,
    /// When voting ends (the database's clock).
    pub expires_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// Who withdrew, cancelled or cast the deciding vote (none for `expired`).
    pub resolved_by: Option<Uuid>,
    /// The node whose actor holds the expiry timer.
    pub owner_node: Uuid,
}

impl ProposalRow {
    fn is_open(&self) -> bool {
        self.status == Status::Open.as_str()
    }
}

/// One voter's current vote.
#[derive(Debug, Clone, Queryable, Selectable, Serialize, Deserialize, utoipa::ToSchema)]
#[diesel(table_name = model_proposal_votes)]
pub struct VoteRow {
    pub user_id: Uuid,
    #[schema(value_type = Vote)]
    pub vote: String,
    pub comment: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// A proposal with its votes and their count (the REST view).
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProposalView {
    #[serde(flatten)]
    pub proposal: ProposalRow,
    pub votes: Vec<VoteRow>,
    pub tally: Tally,
}

/// The proposal events on the session's log (docs/PROTOCOL.md, "Model proposals").
#[derive(Debug, Serialize)]
#[serde(tag = "kind", content = "data")]
pub enum ProposalEvent<'a> {
    #[serde(rename = "proposal.created")]
    Created { proposal: &'a ProposalRow, tally: Tally },
    #[serde(rename = "proposal.voted")]
    Voted {
        proposal_id: Uuid,
        user_id: Uuid,
        vote: Vote,
        comment: Option<&'a str>,
        tally: Tally,
    },
    #[serde(rename = "proposal.resolved")]
    Resolved { proposal: &'a ProposalRow, tally: Tally },
}

impl ProposalEvent<'_> {
    async fn append(&self, conn: &mut AsyncPgConnection, session_id: Uuid, actor: Option<Uuid>) -> AppResult<Event> {
        let (kind, data) = events::parts(self)?;
        events::append(conn, &crate::sessions::store::topic(session_id), &kind, data, actor).await
    }
}

fn not_found() -> AppError {
    AppError::new(ErrorCode::ProposalNotFound, "proposal not found")
}

/// What a proposer asks for, validated.
#[derive(Debug, Clone)]
pub struct NewProposal {
    pub model: String,
    pub reasoning: String,
    pub expires_in: Duration,
}

impl NewProposal {
    /// Checks the text rules and the voting time; `models` are the ids clients may choose.
    pub fn new(
        model: String,
        reasoning: String,
        expires_in_seconds: Option<u64>,
        models: &[String],
    ) -> AppResult<Self> {
        let model = crate::validate::text("model", &model, 1, 200)?;
        if !models.contains(&model) {
            return Err(AppError::validation(format!(
                "`model` must be one of GET /api/models ({})",
                models.join(", ")
            )));
        }
        let reasoning = crate::validate::text("reasoning", &reasoning, 1, MAX_REASONING)?;
        let expires_in = match expires_in_seconds {
            None => DEFAULT_EXPIRY,
            Some(s) if (MIN_EXPIRY.as_secs()..=MAX_EXPIRY.as_secs()).contains(&s) => Duration::from_secs(s),
            Some(_) => {
                return Err(AppError::validation(format!(
                    "`expires_in_seconds` must be between {} and {}",
                    MIN_EXPIRY.as_secs(),
                    MAX_EXPIRY.as_secs()
                )));
            }
        };
        Ok(Self {
            model,
            reasoning,
            expires_in,
        })
    }
}

/// Checks a vote's comment.
pub fn validate_comment(comment: Option<String>) -> AppResult<Option<String>> {
    comment
        .map(|c| crate::validate::text("comment", &c, 1, MAX_COMMENT))
        .transpose()
}

/// The session's participants who hold `vote_on_models` now (sorted).
async fn eligible_voters(conn: &mut AsyncPgConnection, session: &SessionRow) -> AppResult<Vec<Uuid>> {
    let rows: Vec<(Uuid, Option<String>, crate::auth::authorize::MemberRow)> = session_participants::table
        .inner_join(
            workspace_members::table.on(workspace_members::user_id
                .eq(session_participants::user_id)
                .and(workspace_members::workspace_id.eq(session.workspace_id))),
        )
        .filter(session_participants::session_id.eq(session.id))
        .select((
            session_participants::user_id,
            session_participants::role_override,
            crate::auth::authorize::MemberRow::as_select(),
        ))
        .load(conn)
        .await?;
    let mut eligible: Vec<Uuid> = rows
        .into_iter()
        .filter_map(|(user, role_override, member)| resolve(session.clone(), &member, Some(role_override), user))
        .filter(|access| access.can(Permission::VoteOnModels))
        .map(|access| access.user_id)
        .collect();
    eligible.sort();
    Ok(eligible)
}

async fn votes_of(conn: &mut AsyncPgConnection, id: Uuid) -> AppResult<Vec<VoteRow>> {
    Ok(model_proposal_votes::table
        .filter(model_proposal_votes::proposal_id.eq(id))
        .order(model_proposal_votes::updated_at)
        .select(VoteRow::as_select())
        .load(conn)
        .await?)
}

fn tally(proposal: &ProposalRow, votes: &[VoteRow]) -> Tally {
    Tally::new(proposal.eligible.len(), votes.iter().map(|v| Vote::parse(&v.vote)))
}

/// Opens a proposal as `access`'s user (holding `vote_on_models`; made a participant if
/// they were not), owned by `node` (whose actor holds the expiry timer). A second open proposal in the session is
/// refused with `proposal_open`.
pub async fn create(
    conn: &mut AsyncPgConnection,
    access: &SessionAccess,
    new: NewProposal,
    node: Uuid,
) -> AppResult<(ProposalRow, Vec<Event>)> {
    access.require(Permission::VoteOnModels)?;
    access.require_active()?;
    if access.session.default_model.as_deref() == Some(new.model.as_str()) {
        return Err(AppError::validation("the session already uses this model"));
    }
    let mut written = Vec::new();
    // As with a first message: proposing makes the proposer a participant (and so a voter).
    if !access.participant {
        written.push(
            crate::sessions::store::add_participant(conn, access.session.id, access.user_id, None, access.user_id)
                .await?,
        );
    }
    let eligible = eligible_voters(conn, &access.session).await?;
    let row: ProposalRow = diesel::insert_into(model_proposals::table)
        .values((
            model_proposals::id.eq(Uuid::new_v4()),
            model_proposals::session_id.eq(access.session.id),
            model_proposals::proposed_by.eq(access.user_id),
            model_proposals::model.eq(&new.model),
            model_proposals::reasoning.eq(&new.reasoning),
            model_proposals::eligible.eq(&eligible),
            model_proposals::expires_at.eq(crate::db::now_plus(new.expires_in)),
            model_proposals::owner_node.eq(node),
        ))
        .returning(ProposalRow::as_returning())
        .get_result(conn)
        .await
        .map_err(|e| match e {
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => AppError::new(
                ErrorCode::ProposalOpen,
                "this session already has an open model proposal; vote on it or wait for it to end",
            ),
            e => e.into(),
        })?;
    let tally = tally(&row, &[]);
    written.push(
        ProposalEvent::Created { proposal: &row, tally }
            .append(conn, row.session_id, Some(access.user_id))
            .await?,
    );
    Ok((row, written))
}

/// The proposal, locked until the transaction ends, and the caller's access to its session
/// (`proposal_not_found` when they cannot see the session).
/// `session`: the session topic a frame came on (the proposal must be one of its own).
async fn lock(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    user: Uuid,
    session: Option<Uuid>,
) -> AppResult<(ProposalRow, SessionAccess)> {
    let row: ProposalRow = model_proposals::table
        .find(id)
        .select(ProposalRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()?
        .filter(|row| session.is_none_or(|s| s == row.session_id))
        .ok_or_else(not_found)?;
    let access = session_access(conn, row.session_id, user).await.map_err(|e| {
        if e.code == ErrorCode::SessionNotFound {
            not_found()
        } else {
            e
        }
    })?;
    Ok((row, access))
}

fn closed(row: &ProposalRow) -> AppError {
    AppError::new(
        ErrorCode::ProposalClosed,
        format!("this proposal has already ended ({})", row.status),
    )
}

/// Whether the proposal's time is over by the database's clock.
async fn overdue(conn: &mut AsyncPgConnection, id: Uuid) -> AppResult<bool> {
    let due: Option<Uuid> = model_proposals::table
        .filter(model_proposals::id.eq(id))
        .filter(model_proposals::expires_at.le(now))
        .select(model_proposals::id)
        .first(conn)
        .await
        .optional()?;
    Ok(due.is_some())
}

/// Which proposal a vote or withdrawal is for, by whom, and on which session topic (for a
/// frame; `None` over REST).
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub id: Uuid,
    pub user: Uuid,
    pub session: Option<Uuid>,
}

/// Records (or changes) `user`'s vote; when the votes now decide, resolves the proposal in
/// the same transaction (an approval sets the session's model: `session.updated`).
pub async fn vote(
    conn: &mut AsyncPgConnection,
    target: Target,
    vote: Vote,
    comment: Option<String>,
) -> AppResult<(ProposalRow, Vec<Event>)> {
    let Target { id, user, session } = target;
    let (row, access) = lock(conn, id, user, session).await?;
    if !row.is_open() {
        return Err(closed(&row));
    }
    if overdue(conn, id).await? {
        return Err(AppError::new(
            ErrorCode::ProposalExpired,
            "voting on this proposal has ended",
        ));
    }
    access.require(Permission::VoteOnModels)?;
    access.require_active()?;
    if !row.eligible.contains(&user) {
        return Err(AppError::new(
            ErrorCode::NotEligible,
            "only the participants who held `vote_on_models` when the proposal opened can vote on it",
        ));
    }
    diesel::insert_into(model_proposal_votes::table)
        .values((
            model_proposal_votes::proposal_id.eq(id),
            model_proposal_votes::user_id.eq(user),
            model_proposal_votes::vote.eq(vote.as_str()),
            model_proposal_votes::comment.eq(&comment),
        ))
        .on_conflict((model_proposal_votes::proposal_id, model_proposal_votes::user_id))
        .do_update()
        .set((
            model_proposal_votes::vote.eq(vote.as_str()),
            model_proposal_votes::comment.eq(&comment),
            model_proposal_votes::updated_at.eq(now),
        ))
        .execute(conn)
        .await?;
    let votes = votes_of(conn, id).await?;
    let tally = tally(&row, &votes);
    let decided = tally.decide();
    // The session row is locked before the log's topic row, in the order every session
    // settings change takes them.
    let session = match decided {
        Some(Status::Approved) => Some(set_model(conn, row.session_id, &row.model).await?),
        _ => None,
    };
    let mut written = vec![
        ProposalEvent::Voted {
            proposal_id: id,
            user_id: user,
            vote,
            comment: comment.as_deref(),
            tally,
        }
        .append(conn, row.session_id, Some(user))
        .await?,
    ];
    let row = match decided {
        Some(status) => {
            let (row, events) = resolve_with(conn, row, status, Some(user), tally, session.as_ref()).await?;
            written.extend(events);
            row
        }
        None => row,
    };
    Ok((row, written))
}

/// Ends an open proposal early: the proposer withdraws it, or someone with
/// `manage_sessions` cancels it.
pub async fn withdraw(conn: &mut AsyncPgConnection, target: Target) -> AppResult<(ProposalRow, Vec<Event>)> {
    let Target { id, user, session } = target;
    let (row, access) = lock(conn, id, user, session).await?;
    let status = if row.proposed_by == Some(user) {
        Status::Withdrawn
    } else if access.can(Permission::ManageSessions) {
        Status::Cancelled
    } else {
        return Err(AppError::forbidden(
            "only the proposer (withdraw) or someone with `manage_sessions` (cancel) can end a proposal",
        ));
    };
    if !row.is_open() {
        return Err(closed(&row));
    }
    let votes = votes_of(conn, id).await?;
    let tally = tally(&row, &votes);
    resolve_with(conn, row, status, Some(user), tally, None).await
}

/// Ends the proposal `expired` if it is still open and its time is over by the database's
/// clock (`Ok(None)` otherwise: already resolved, or not yet due). Skips a proposal another
/// transaction holds (`SKIP LOCKED`): that one decides it, or a later try does.
pub async fn expire(conn: &mut AsyncPgConnection, id: Uuid) -> AppResult<Option<(ProposalRow, Vec<Event>)>> {
    let row: Option<ProposalRow> = model_proposals::table
        .find(id)
        .filter(model_proposals::status.eq(Status::Open.as_str()))
        .filter(model_proposals::expires_at.le(now))
        .select(ProposalRow::as_select())
        .for_update()
        .skip_locked()
        .first(conn)
        .await
        .optional()?;
    let Some(row) = row else { return Ok(None) };
    let votes = votes_of(conn, id).await?;
    let tally = tally(&row, &votes);
    resolve_with(conn, row, Status::Expired, None, tally, None)
        .await
        .map(Some)
}

/// The open proposals whose time is over (any owner), for the heartbeat's sweep.
pub async fn overdue_ids(conn: &mut AsyncPgConnection, limit: i64) -> AppResult<Vec<Uuid>> {
    Ok(model_proposals::table
        .filter(model_proposals::status.eq(Status::Open.as_str()))
        .filter(model_proposals::expires_at.le(now))
        .order(model_proposals::expires_at)
        .limit(limit)
        .select(model_proposals::id)
        .load(conn)
        .await?)
}

async fn set_model(conn: &mut AsyncPgConnection, session_id: Uuid, model: &str) -> AppResult<SessionRow> {
    Ok(diesel::update(chat_sessions::table.find(session_id))
        .set((
            chat_sessions::default_model.eq(model),
            chat_sessions::updated_at.eq(Utc::now()),
        ))
        .returning(SessionRow::as_returning())
        .get_result(conn)
        .await?)
}

/// Writes the resolution: the status, `proposal.resolved`, and — for an approval — the
/// `session.updated` of the session row already changed.
async fn resolve_with(
    conn: &mut AsyncPgConnection,
    row: ProposalRow,
    status: Status,
    by: Option<Uuid>,
    tally: Tally,
    session: Option<&SessionRow>,
) -> AppResult<(ProposalRow, Vec<Event>)> {
    let row: ProposalRow = diesel::update(model_proposals::table.find(row.id))
        .set((
            model_proposals::status.eq(status.as_str()),
            model_proposals::resolved_at.eq(now),
            model_proposals::resolved_by.eq(by),
        ))
        .returning(ProposalRow::as_returning())
        .get_result(conn)
        .await?;
    let mut written = vec![
        ProposalEvent::Resolved { proposal: &row, tally }
            .append(conn, row.session_id, by)
            .await?,
    ];
    if let Some(session) = session {
        written.push(
            SessionEvent::SessionUpdated { session }
                .append(conn, row.session_id, by)
                .await?,
        );
    }
    Ok((row, written))
}

/// One proposal with its votes, as the caller may see it.
pub async fn view(conn: &mut AsyncPgConnection, id: Uuid, user: Uuid) -> AppResult<ProposalView> {
    let row: ProposalRow = model_proposals::table
        .find(id)
        .select(ProposalRow::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or_else(not_found)?;
    session_access(conn, row.session_id, user).await.map_err(|e| {
        if e.code == ErrorCode::SessionNotFound {
            not_found()
        } else {
            e
        }
    })?;
    let votes = votes_of(conn, id).await?;
    let tally = tally(&row, &votes);
    Ok(ProposalView {
        proposal: row,
        votes,
        tally,
    })
}

/// A session's proposals, newest first, with their votes (the caller can see the session).
pub async fn list(conn: &mut AsyncPgConnection, session_id: Uuid, limit: i64) -> AppResult<Vec<ProposalView>> {
    let rows: Vec<ProposalRow> = model_proposals::table
        .filter(model_proposals::session_id.eq(session_id))
        .order((model_proposals::created_at.desc(), model_proposals::id))
        .limit(limit)
        .select(ProposalRow::as_select())
        .load(conn)
        .await?;
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let all: Vec<(Uuid, VoteRow)> = model_proposal_votes::table
        .filter(model_proposal_votes::proposal_id.eq_any(&ids))
        .order(model_proposal_votes::updated_at)
        .select((model_proposal_votes::proposal_id, VoteRow::as_select()))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|proposal| {
            let votes: Vec<VoteRow> = all
                .iter()
                .filter(|(p, _)| *p == proposal.id)
                .map(|(_, v)| v.clone())
                .collect();
            let tally = tally(&proposal, &votes);
            ProposalView { proposal, votes, tally }
        })
        .collect())
}

/// Whether the proposal is still open.
pub async fn still_open(conn: &mut AsyncPgConnection, id: Uuid) -> AppResult<bool> {
    let status: Option<String> = model_proposals::table
        .find(id)
        .select(model_proposals::status)
        .first(conn)
        .await
        .optional()?;
    Ok(status.as_deref() == Some(Status::Open.as_str()))
}
