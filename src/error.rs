//! The one error type of the server and its table of stable, machine-readable codes.
//!
//! Every code is declared once in [`codes!`] with its wire name, HTTP status and the
//! WebSocket close code used when the error is fatal to a connection. Bodies are always
//! `{"code": "...", "message": "..."}`; a 5xx body never carries internal text (the source
//! is logged instead).

use actix_web::{HttpResponse, ResponseError, http::StatusCode};
use serde::Serialize;
use std::borrow::Cow;

macro_rules! codes {
    ($( $(#[$doc:meta])* $variant:ident => ($wire:literal, $status:literal, $close:literal), )*) => {
        /// Stable error codes. The wire string never changes once published.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode { $( $(#[$doc])* $variant, )* }

        impl ErrorCode {
            /// Every code, in declaration order (used by docs and tests).
            pub const ALL: &'static [ErrorCode] = &[ $( ErrorCode::$variant, )* ];

            /// The machine-readable name sent to clients.
            pub fn as_str(self) -> &'static str {
                match self { $( ErrorCode::$variant => $wire, )* }
            }

            /// The HTTP status this code maps to.
            pub fn status(self) -> StatusCode {
                match self { $( ErrorCode::$variant => StatusCode::from_u16($status).expect("valid status"), )* }
            }

            /// The WebSocket close code (4000–4999) used when this error ends a connection.
            pub fn close_code(self) -> u16 {
                match self { $( ErrorCode::$variant => $close, )* }
            }
        }
    };
}

codes! {
    /// The request body is not valid JSON or does not have the expected shape.
    InvalidJson => ("invalid_json", 400, 4400),
    /// A query-string parameter is missing or malformed.
    InvalidQuery => ("invalid_query", 400, 4400),
    /// A path parameter (usually an id) is malformed.
    InvalidPath => ("invalid_path", 400, 4400),
    /// The input is well-formed but a field breaks a rule (length, format, allowed values).
    ValidationFailed => ("validation_failed", 422, 4422),
    /// The body is larger than the server accepts.
    PayloadTooLarge => ("payload_too_large", 413, 4413),
    /// No valid credentials were presented.
    Unauthenticated => ("unauthenticated", 401, 4401),
    /// Email or password is wrong.
    InvalidCredentials => ("invalid_credentials", 401, 4401),
    /// The caller is authenticated but lacks the permission for this action.
    PermissionDenied => ("permission_denied", 403, 4403),
    /// The action needs a logged-in user; API tokens cannot do it.
    UserRequired => ("user_required", 403, 4403),
    /// Unknown route (or a method the route does not have).
    RouteNotFound => ("route_not_found", 404, 4404),
    /// The workspace does not exist or the caller is not a member of it.
    WorkspaceNotFound => ("workspace_not_found", 404, 4404),
    /// The user is not a member of this workspace.
    MemberNotFound => ("member_not_found", 404, 4404),
    /// No such invitation (also returned for a wrong invitation token).
    InvitationNotFound => ("invitation_not_found", 404, 4404),
    /// No such API token in this workspace.
    TokenNotFound => ("token_not_found", 404, 4404),
    /// An account with this email already exists.
    EmailTaken => ("email_taken", 409, 4409),
    /// The user is already a member of the workspace.
    AlreadyMember => ("already_member", 409, 4409),
    /// The last owner cannot leave, be removed or be demoted.
    LastOwner => ("last_owner", 409, 4409),
    /// The invitation's seven days have passed.
    InvitationExpired => ("invitation_expired", 410, 4410),
    /// The invitation was already accepted.
    InvitationUsed => ("invitation_used", 410, 4410),
    /// The invitation was revoked by an admin.
    InvitationRevoked => ("invitation_revoked", 410, 4410),
    /// The invitation was sent to a different email address than the caller's account.
    InvitationEmailMismatch => ("invitation_email_mismatch", 403, 4403),
    /// The chat session does not exist or the caller cannot see it.
    SessionNotFound => ("session_not_found", 404, 4404),
    /// No such message in this session.
    MessageNotFound => ("message_not_found", 404, 4404),
    /// The session is archived; it can be read but not written.
    SessionArchived => ("session_archived", 409, 4409),
    /// A WebSocket frame is not valid JSON or not a known frame.
    InvalidFrame => ("invalid_frame", 400, 4400),
    /// The topic is malformed or of a kind this endpoint does not serve.
    UnknownTopic => ("unknown_topic", 404, 4404),
    /// The action names a topic this connection has not subscribed to.
    NotSubscribed => ("not_subscribed", 409, 4409),
    /// The WebSocket handshake came from an origin that is not allowed.
    OriginNotAllowed => ("origin_not_allowed", 403, 4403),
    /// The client read too slowly and its outbound buffer filled; reconnect and resume.
    SlowConsumer => ("slow_consumer", 503, 4008),
    /// The caller's access to the topic was revoked while connected.
    AccessRevoked => ("access_revoked", 403, 4403),
    /// The artifact does not exist or the caller cannot see it.
    ArtifactNotFound => ("artifact_not_found", 404, 4404),
    /// No such version of this artifact.
    VersionNotFound => ("version_not_found", 404, 4404),
    /// A three-way merge found conflicting changes; nothing was changed.
    MergeConflict => ("merge_conflict", 409, 4409),
    /// The artifact is not a branch (or was already merged).
    NotABranch => ("not_a_branch", 409, 4409),
    /// The AI reply has already ended (it cannot be stopped).
    GenerationEnded => ("generation_ended", 409, 4409),
    /// A reply to this question is already owed or streaming (a second `regenerate`).
    GenerationInProgress => ("generation_in_progress", 409, 4409),
    /// No such model proposal, or the caller cannot see its session.
    ProposalNotFound => ("proposal_not_found", 404, 4404),
    /// The session already has an open model proposal.
    ProposalOpen => ("proposal_open", 409, 4409),
    /// The proposal is already resolved (approved, rejected, withdrawn, cancelled or expired).
    ProposalClosed => ("proposal_closed", 409, 4409),
    /// The proposal's voting time is over (it ended `expired`).
    ProposalExpired => ("proposal_expired", 409, 4409),
    /// The caller is not one of the proposal's eligible voters (or cannot propose).
    NotEligible => ("not_eligible", 403, 4403),
    /// Too many attempts; retry later.
    RateLimited => ("rate_limited", 429, 4429),
    /// The database is unreachable or overloaded.
    ServiceUnavailable => ("service_unavailable", 503, 1013),
    /// Something failed inside the server; details are in its log, never in the response.
    Internal => ("internal", 500, 1011),
}

/// The error every handler returns.
#[derive(Debug)]
pub struct AppError {
    pub code: ErrorCode,
    pub message: Cow<'static, str>,
    pub source: Option<anyhow::Error>,
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code; the table is in docs/PROTOCOL.md.
    pub code: &'static str,
    /// Human-readable explanation; safe to show to users.
    pub message: String,
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            message: message.into(),
            source: None,
        }
    }

    /// An internal failure: the message goes to the log, clients see a generic text.
    pub fn internal(source: impl Into<anyhow::Error>) -> Self {
        Self {
            code: ErrorCode::Internal,
            message: Cow::Borrowed("internal server error"),
            source: Some(source.into()),
        }
    }

    pub fn validation(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::ValidationFailed, message)
    }

    pub fn forbidden(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::PermissionDenied, message)
    }

    /// Whether the database raised this error (the statement failed; an open transaction
    /// is aborted).
    pub fn from_database(&self) -> bool {
        self.source
            .as_ref()
            .is_some_and(|s| s.downcast_ref::<diesel::result::Error>().is_some())
    }

    pub fn body(&self) -> ErrorBody {
        let message = if self.code.status().is_server_error() {
            match self.code {
                ErrorCode::ServiceUnavailable => "service temporarily unavailable".to_owned(),
                _ => "internal server error".to_owned(),
            }
        } else {
            // Quoted input is cut short here, once for REST and WebSocket (issue 11).
            crate::validate::bound_quotes(&self.message).into_owned()
        };
        ErrorBody {
            code: self.code.as_str(),
            message,
        }
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)?;
        if let Some(source) = &self.source {
            write!(f, " ({source:#})")?;
        }
        Ok(())
    }
}

impl std::error::Error for AppError {}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        self.code.status()
    }

    fn error_response(&self) -> HttpResponse {
        if self.code.status().is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let mut response = HttpResponse::build(self.status_code());
        if self.code == ErrorCode::RateLimited {
            response.insert_header(("Retry-After", "60"));
        }
        response.json(self.body())
    }
}

impl From<diesel::result::Error> for AppError {
    /// Database errors are internal, except a database that went away (`service_unavailable`:
    /// retry) and text Postgres refuses to store: a backstop for input that got past the edge
    /// checks (`validate`), reported as the caller's `validation_failed` (the statement
    /// failed, so nothing was written).
    fn from(err: diesel::result::Error) -> Self {
        if database_unreachable(&err) {
            return AppError {
                code: ErrorCode::ServiceUnavailable,
                message: Cow::Borrowed("database unavailable"),
                source: Some(err.into()),
            };
        }
        if let diesel::result::Error::DatabaseError(_, info) = &err
            && is_unstorable_text(info.message())
        {
            return AppError {
                source: Some(err.into()),
                ..AppError::validation("the input holds a character that cannot be stored (such as NUL, U+0000)")
            };
        }
        AppError::internal(err)
    }
}

/// The database went away under a statement (a restart, a failover, a terminated backend,
/// a dropped socket): the client should retry, so it is `service_unavailable`, not `internal`.
fn database_unreachable(err: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    /// Postgres's messages for admin_shutdown, crash_shutdown and cannot_connect_now (57P01–03);
    /// diesel-async keeps only the message of an SQLSTATE it does not name.
    const GOING_AWAY: [&str; 5] = [
        "terminating connection due to administrator command",
        "terminating connection because of crash of another server process",
        "the database system is shutting down",
        "the database system is starting up",
        "the database system is in recovery mode",
    ];
    match err {
        Error::DatabaseError(DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand, _) => true,
        Error::DatabaseError(DatabaseErrorKind::Unknown, info) => {
            GOING_AWAY.iter().any(|m| info.message().starts_with(m))
        }
        Error::BrokenTransactionManager => true,
        _ => false,
    }
}

/// Postgres's messages for text it cannot store: a NUL in `text` ("invalid byte sequence
/// for encoding \"UTF8\": 0x00", SQLSTATE 22021), `\u0000` in `jsonb` ("unsupported Unicode
/// escape sequence", 22P05), a character outside the server encoding (22021 / 22P05).
fn is_unstorable_text(message: &str) -> bool {
    message.starts_with("invalid byte sequence for encoding")
        || message.starts_with("unsupported Unicode escape sequence")
        || message.starts_with("character with byte sequence")
        || message.starts_with("untranslatable character")
}

impl From<diesel_async::pooled_connection::deadpool::PoolError> for AppError {
    fn from(err: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        AppError {
            code: ErrorCode::ServiceUnavailable,
            message: Cow::Borrowed("database unavailable"),
            source: Some(err.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_are_unique_and_close_codes_in_range() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "duplicate wire name {}", code.as_str());
            let close = code.close_code();
            assert!((4000..5000).contains(&close) || close == 1011 || close == 1013);
        }
    }

    #[test]
    fn a_database_going_away_is_service_unavailable_not_internal() {
        use diesel::result::{DatabaseErrorKind, Error};
        let gone = |kind, message: &str| AppError::from(Error::DatabaseError(kind, Box::new(message.to_owned())));
        for err in [
            gone(DatabaseErrorKind::UnableToSendCommand, "connection closed"),
            gone(
                DatabaseErrorKind::ClosedConnection,
                "server closed the connection unexpectedly",
            ),
            gone(
                DatabaseErrorKind::Unknown,
                "terminating connection due to administrator command",
            ),
            gone(DatabaseErrorKind::Unknown, "the database system is shutting down"),
            gone(DatabaseErrorKind::Unknown, "the database system is starting up"),
            AppError::from(Error::BrokenTransactionManager),
        ] {
            assert_eq!(err.code, ErrorCode::ServiceUnavailable, "{err}");
        }
        // A real failure of a statement stays internal.
        let bug = gone(DatabaseErrorKind::Unknown, "column \"nope\" does not exist");
        assert_eq!(bug.code, ErrorCode::Internal);
        assert_eq!(AppError::from(Error::NotFound).code, ErrorCode::Internal);
    }

    #[test]
    fn text_postgres_refuses_is_a_validation_error() {
        use diesel::result::{DatabaseErrorKind, Error};
        for message in [
            "invalid byte sequence for encoding \"UTF8\": 0x00",
            "unsupported Unicode escape sequence",
        ] {
            let err = AppError::from(Error::DatabaseError(
                DatabaseErrorKind::Unknown,
                Box::new(message.to_owned()),
            ));
            assert_eq!(err.code, ErrorCode::ValidationFailed, "{message}");
            assert!(err.source.is_some());
        }
        let other = Error::DatabaseError(DatabaseErrorKind::Unknown, Box::new("deadlock detected".to_owned()));
        assert_eq!(AppError::from(other).code, ErrorCode::Internal);
    }

    #[test]
    fn server_errors_hide_their_text() {
        let err = AppError::internal(anyhow::anyhow!("password=hunter2 at db.rs:12"));
        let body = err.body();
        assert_eq!(body.code, "internal");
        assert!(!body.message.contains("hunter2"));
    }
}
