//! Keeps credentials out of the logs: the access log's request line with credential query
//! parameters blanked, and a log writer that blanks anything shaped like one of our secrets
//! (`bcs_…`, `bct_…`, `bca_…`, … — see [`SecretKind`]) in every line, whoever logged it.

use crate::auth::secrets::SecretKind;
use actix_web::dev::ServiceRequest;
use std::io::Write;

/// What a blanked credential reads as.
pub const REDACTED: &str = "[redacted]";

/// Query parameters whose value is a credential whatever it looks like.
const SECRET_PARAMS: &[&str] = &[
    "token",
    "ticket",
    "password",
    "secret",
    "api_key",
    "access_token",
    "key",
];

const KINDS: [SecretKind; 5] = [
    SecretKind::Session,
    SecretKind::ApiToken,
    SecretKind::Invitation,
    SecretKind::ConnectTicket,
    SecretKind::ArtifactToken,
];

/// A secret's body is 43 base64url characters; shorter runs after a prefix are ordinary
/// words (`bca_` in a sentence), longer ones are redacted wherever they stand (also inside
/// a percent-encoded URL, `%3Dbca_…`).
const MIN_BODY: usize = 16;

/// `text` with every secret of ours (prefix plus its base64url body) replaced by
/// [`REDACTED`].
pub fn secrets(text: &str) -> std::borrow::Cow<'_, str> {
    let starts = |at: usize| KINDS.iter().map(|k| k.prefix()).find(|p| text[at..].starts_with(p));
    let secret_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if !KINDS.iter().any(|k| text.contains(k.prefix())) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = 0;
    let mut at = 0;
    while at < text.len() {
        if let Some(prefix) = starts(at) {
            let body = text[at + prefix.len()..]
                .find(|c: char| !secret_char(c))
                .unwrap_or(text.len() - at - prefix.len());
            if body >= MIN_BODY {
                out.push_str(&text[rest..at]);
                out.push_str(REDACTED);
                at += prefix.len() + body;
                rest = at;
                continue;
            }
        }
        at += text[at..].chars().next().map_or(1, char::len_utf8);
    }
    out.push_str(&text[rest..]);
    out.into()
}

/// A query string with the values of credential parameters (and any secret of ours)
/// replaced by [`REDACTED`].
pub fn query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if SECRET_PARAMS.iter().any(|p| name.eq_ignore_ascii_case(p)) => {
                format!("{name}={REDACTED}")
            }
            _ => secrets(pair).into_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// The access log's request line (`GET /path?query HTTP/1.1`), credentials redacted.
pub fn request_line(req: &ServiceRequest) -> String {
    let path = secrets(req.path());
    let query = match req.query_string() {
        "" => String::new(),
        q => format!("?{}", self::query(q)),
    };
    format!("{} {path}{query} {:?}", req.method(), req.version())
}

/// Standard output through [`secrets`]: the log writer (tracing formats each event into one
/// buffer and writes it at once, so a secret is never split between two writes).
pub struct Stdout;

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stdout().lock().write_all(secrets(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_of_every_kind_are_blanked_and_nothing_else() {
        for kind in KINDS {
            let (secret, _) = crate::auth::secrets::generate(kind);
            let line = format!("GET /ws/artifacts/1?token={secret}&x=1 error=\"{secret}\"");
            let clean = secrets(&line);
            assert!(!clean.contains(&secret[4..]), "{clean}");
            assert_eq!(clean, "GET /ws/artifacts/1?token=[redacted]&x=1 error=\"[redacted]\"");
        }
        assert_eq!(secrets("rebca_x bca_ and bcs_short"), "rebca_x bca_ and bcs_short");
        let (secret, _) = crate::auth::secrets::generate(SecretKind::ConnectTicket);
        assert_eq!(
            secrets(&format!("next=%2Fws%3Fticket%3D{secret}")),
            "next=%2Fws%3Fticket%3D[redacted]"
        );
    }

    #[test]
    fn credential_parameters_are_blanked_whatever_they_hold() {
        assert_eq!(
            query("ticket=abc&room=r1&TOKEN=x&after=bcs_AAAAAAAAAAAAAAAAAAAA"),
            "ticket=[redacted]&room=r1&TOKEN=[redacted]&after=[redacted]"
        );
    }
}
