//! Input rules shared by handlers: field lengths and formats, reported as `validation_failed`;
//! and the NUL rule every text input obeys before it can reach the database (Postgres
//! refuses U+0000 in `text` and `jsonb`), checked once at the edges: JSON bodies
//! (`api::Json`), query strings and paths (`api::Query`, `api::Path`), WebSocket frames;
//! and how much of the input an error message may quote ([`bound_quotes`]).

use crate::error::{AppError, AppResult};
use std::borrow::Cow;

/// Whether a JSON text holds a NUL character: a `\u0000` escape inside a string (not
/// `\\u0000`, an escaped backslash followed by `u0000`), or a raw NUL byte anywhere.
pub fn json_has_nul(json: &[u8]) -> bool {
    #[derive(Clone, Copy)]
    enum State {
        Outside,
        InString,
        Escape,
        /// Inside `\uXXXX`: digits read so far and their value.
        Hex(u8, u16),
    }
    let mut state = State::Outside;
    for &b in json {
        if b == 0 {
            return true;
        }
        state = match (state, b) {
            (State::Outside, b'"') => State::InString,
            (State::Outside, _) => State::Outside,
            (State::InString, b'\\') => State::Escape,
            (State::InString, b'"') => State::Outside,
            (State::InString, _) => State::InString,
            (State::Escape, b'u') => State::Hex(0, 0),
            (State::Escape, _) => State::InString,
            (State::Hex(n, value), b) => match (b as char).to_digit(16) {
                Some(digit) => {
                    let value = value << 4 | digit as u16;
                    if n == 3 {
                        if value == 0 {
                            return true;
                        }
                        State::InString
                    } else {
                        State::Hex(n + 1, value)
                    }
                }
                // Not valid JSON: the parser reports it.
                None if b == b'"' => State::Outside,
                None => State::InString,
            },
        };
    }
    false
}

/// Where the first NUL in a JSON value is, as a JSON pointer-like path (`/messages/0/body`),
/// to name the field in the error.
pub fn nul_field(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => s.contains('\0').then(String::new),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| nul_field(v).map(|rest| format!("/{i}{rest}"))),
        serde_json::Value::Object(fields) => fields.iter().find_map(|(k, v)| {
            if k.contains('\0') {
                return Some(format!("/{}", k.replace('\0', "\\u0000")));
            }
            nul_field(v).map(|rest| format!("/{k}{rest}"))
        }),
        _ => None,
    }
}

/// The `validation_failed` error for a NUL in a JSON text.
pub fn nul_in_json(json: &str) -> AppError {
    let field = serde_json::from_str(json).ok().and_then(|v| nul_field(&v));
    match field.as_deref() {
        Some(field) if !field.is_empty() => {
            AppError::validation(format!("`{}` must not contain NUL characters (U+0000)", &field[1..]))
        }
        _ => AppError::validation("text must not contain NUL characters (U+0000)"),
    }
}

/// Whether a raw (percent-encoded) URL part decodes to text holding a NUL (`%00`).
pub fn url_has_nul(raw: &str) -> bool {
    raw.as_bytes().windows(3).any(|w| w == b"%00") || raw.contains('\0')
}

/// Text derived from other input (a Yjs document's rendering) made storable as `text`: a
/// NUL becomes U+FFFD, as a decoder shows a character it cannot represent.
pub fn storable(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(text)
    }
}

/// Trims `value` and checks its length in characters.
pub fn text(field: &str, value: &str, min: usize, max: usize) -> AppResult<String> {
    let trimmed = value.trim();
    let len = trimmed.chars().count();
    if len < min {
        return Err(AppError::validation(if min == 1 {
            format!("`{field}` must not be empty")
        } else {
            format!("`{field}` must be at least {min} characters")
        }));
    }
    if len > max {
        return Err(AppError::validation(format!(
            "`{field}` must be at most {max} characters"
        )));
    }
    if trimmed.chars().any(|c| c.is_control()) {
        return Err(AppError::validation(format!(
            "`{field}` must not contain control characters"
        )));
    }
    Ok(trimmed.to_owned())
}

/// A plausible email address (one `@`, something on each side, a dot in the domain),
/// normalised to lower case.
pub fn email(value: &str) -> AppResult<String> {
    let value = text("email", value, 3, 254)?;
    let bad = || AppError::validation("`email` is not a valid email address");
    let (local, domain) = value.split_once('@').ok_or_else(bad)?;
    if local.is_empty()
        || domain.contains('@')
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
        || value.contains(char::is_whitespace)
    {
        return Err(bad());
    }
    Ok(value.to_lowercase())
}

/// A password: 8 to 256 characters; not trimmed.
pub fn password(value: &str) -> AppResult<()> {
    let len = value.chars().count();
    if !(8..=256).contains(&len) {
        return Err(AppError::validation("`password` must be 8 to 256 characters"));
    }
    Ok(())
}

/// Most characters of one quoted piece of input an error message repeats.
pub const QUOTE_CHARS: usize = 100;

/// Most characters of an error message on the wire.
pub const MESSAGE_CHARS: usize = 1_000;

/// An error message with every quoted piece (between backticks or double quotes, as serde
/// quotes an unknown variant or field and an unexpected string) cut to [`QUOTE_CHARS`]
/// characters and `…`, and the whole cut to [`MESSAGE_CHARS`]: a client's 20,000-character
/// input is not echoed back (or into logs) whole. Applied where every error body is built
/// (`AppError::body`), so it holds for REST responses and WebSocket error frames alike.
pub fn bound_quotes(message: &str) -> Cow<'_, str> {
    if message.chars().count() <= QUOTE_CHARS {
        return Cow::Borrowed(message);
    }
    let mut out = String::with_capacity(message.len().min(4 * MESSAGE_CHARS));
    let mut chars = message.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '`' && c != '"' {
            continue;
        }
        // Inside a quoted piece: keep up to QUOTE_CHARS of it, skip the rest, up to and
        // including its closing quote (a `"` piece is Debug-escaped: `\"` does not close it).
        let mut kept = 0;
        let mut cut = false;
        while let Some(q) = chars.next() {
            let escaped = c == '"' && q == '\\';
            let closes = q == c;
            if closes {
                if cut {
                    out.push('…');
                }
                out.push(q);
                break;
            }
            let next = if escaped { chars.next() } else { None };
            if kept < QUOTE_CHARS {
                out.push(q);
                out.extend(next);
                kept += 1;
            } else if !cut {
                cut = true;
            }
        }
        if cut && !out.ends_with(c) {
            out.push('…');
        }
    }
    if out.chars().count() > MESSAGE_CHARS {
        out = out.chars().take(MESSAGE_CHARS).collect();
        out.push('…');
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(email(" Ann@Example.COM ").unwrap(), "ann@example.com");
        for bad in ["ann", "@x.io", "ann@x", "a b@x.io", "a@b@c.io", "ann@.io"] {
            assert!(email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn nul_detection() {
        assert!(json_has_nul(br#"{"a":"x\u0000y"}"#));
        assert!(json_has_nul(br#"{"a\u0000":1}"#));
        assert!(
            json_has_nul(br#"["\\\u0000"]"#),
            "an escaped backslash, then a NUL escape"
        );
        assert!(json_has_nul(b"{\"a\":\"\0\"}"));
        assert!(
            !json_has_nul(br#"{"a":"\\u0000"}"#),
            "an escaped backslash and the text u0000"
        );
        assert!(json_has_nul(br#"{"a":"\u00001"}"#), "a NUL followed by a digit");
        assert!(!json_has_nul(br#"{"a":"\u0001","b":"\u1000"}"#));
        assert!(!json_has_nul(br#"{"u0000":"\"u0000"}"#));
        assert!(json_has_nul(br#"{"a":"\u0041\u0000"}"#));
        for (text, nul) in [("x\0", true), ("x\\0", false), ("\0\u{1}", true), ("ok", false)] {
            let json = serde_json::to_string(&serde_json::json!({ "k": [text] })).unwrap();
            assert_eq!(json_has_nul(json.as_bytes()), nul, "{json}");
        }
        let value = serde_json::json!({ "a": 1, "b": [{ "c": "ok" }, { "d": "n\0" }] });
        assert_eq!(nul_field(&value).as_deref(), Some("/b/1/d"));
        assert_eq!(
            super::nul_in_json(&value.to_string()).message,
            "`b/1/d` must not contain NUL characters (U+0000)"
        );
    }

    #[test]
    fn nul_in_urls() {
        assert!(url_has_nul("a=%00"));
        assert!(url_has_nul("a=%%00"));
        assert!(!url_has_nul("a=%2500&b=%0A"));
        assert_eq!(storable("a\0b"), "a\u{FFFD}b");
        assert!(matches!(storable("ab"), Cow::Borrowed(_)));
    }

    #[test]
    fn quotes_are_bounded() {
        let long = "a".repeat(20_000);
        let message = format!("unknown variant `{long}`, expected one of `a`, `b` at line 1 column 20010");
        let bounded = bound_quotes(&message);
        assert_eq!(
            bounded,
            format!(
                "unknown variant `{}…`, expected one of `a`, `b` at line 1 column 20010",
                "a".repeat(QUOTE_CHARS)
            )
        );
        let debug = format!("invalid type: string {:?}, expected u32", format!("x\"{long}"));
        assert_eq!(
            bound_quotes(&debug),
            format!(
                "invalid type: string \"x\\\"{}…\", expected u32",
                "a".repeat(QUOTE_CHARS - 2)
            ),
            "an escaped quote counts as one character and does not end the quote"
        );
        let unclosed = format!("unknown field `{long}");
        assert_eq!(
            bound_quotes(&unclosed),
            format!("unknown field `{}…", "a".repeat(QUOTE_CHARS))
        );
        let short = "unknown variant `fly`, expected `ping`";
        assert_eq!(bound_quotes(short), short);
        let unquoted = "b ".repeat(5_000);
        assert_eq!(bound_quotes(&unquoted).chars().count(), MESSAGE_CHARS + 1);
    }

    #[test]
    fn lengths() {
        assert!(text("name", "  ", 1, 10).is_err());
        assert!(text("name", &"x".repeat(11), 1, 10).is_err());
        assert_eq!(text("name", " ok ", 1, 10).unwrap(), "ok");
    }
}
