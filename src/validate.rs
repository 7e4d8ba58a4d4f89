//! Input rules shared by handlers: field lengths and formats, reported as `validation_failed`.

use crate::error::{AppError, AppResult};

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
    fn lengths() {
        assert!(text("name", "  ", 1, 10).is_err());
        assert!(text("name", &"x".repeat(11), 1, 10).is_err());
        assert_eq!(text("name", " ok ", 1, 10).unwrap(), "ok");
    }
}
