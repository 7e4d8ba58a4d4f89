//! Paging of list endpoints: the rule for the `limit` parameter, and reading one row more
//! than a page holds to learn whether another page follows.

use crate::error::{AppError, AppResult};

/// A page size a request asked for: 1 to 200, 50 when absent.
#[derive(Debug, Clone, Copy)]
pub struct Limit(i64);

impl Limit {
    pub fn parse(requested: Option<i64>) -> AppResult<Self> {
        let limit = requested.unwrap_or(50);
        if !(1..=200).contains(&limit) {
            return Err(AppError::validation("`limit` must be between 1 and 200"));
        }
        Ok(Self(limit))
    }

    /// The page size.
    pub fn get(self) -> i64 {
        self.0
    }

    /// How many rows to read: one more than the page, to see whether another follows.
    pub fn probe(self) -> i64 {
        self.0 + 1
    }

    /// Cuts rows read with [`probe`](Self::probe) down to the page; `true` when more followed.
    pub fn page<T>(self, mut rows: Vec<T>) -> (Vec<T>, bool) {
        let more = rows.len() as i64 > self.0;
        rows.truncate(self.0 as usize);
        (rows, more)
    }
}
