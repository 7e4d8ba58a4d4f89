//! A topic: `<kind>:<uuid>`, the unit of ordering (one gap-free seq per topic) and of
//! subscription. The kinds are whatever rooms are registered (`session`, `artifact`, …).

use std::fmt;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Topic {
    pub kind: &'static str,
    pub id: Uuid,
}

impl Topic {
    pub const fn new(kind: &'static str, id: Uuid) -> Self {
        Self { kind, id }
    }

    /// Splits `kind:uuid`; the kind is checked against the registered rooms by the caller.
    pub fn split(topic: &str) -> Option<(&str, Uuid)> {
        let (kind, id) = topic.split_once(':')?;
        Some((kind, id.parse().ok()?))
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_split_and_print() {
        let id = Uuid::new_v4();
        assert_eq!(Topic::split(&format!("session:{id}")), Some(("session", id)));
        assert_eq!(Topic::split("session:nope"), None);
        assert_eq!(Topic::split("nothing"), None);
        assert_eq!(Topic::new("artifact", id).to_string(), format!("artifact:{id}"));
    }
}
