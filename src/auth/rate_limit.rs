//! Login rate limits per account and per client address (governor, in-memory per node).

use crate::error::{AppError, ErrorCode};
use governor::clock::DefaultClock;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use std::num::NonZeroU32;

type Keyed = RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock>;

pub struct LoginLimits {
    per_account: Keyed,
    per_address: Keyed,
}

impl LoginLimits {
    pub fn new(per_account_per_minute: u32, per_address_per_minute: u32) -> Self {
        let quota = |n: u32| Quota::per_minute(NonZeroU32::new(n.max(1)).expect("non-zero"));
        Self {
            per_account: RateLimiter::keyed(quota(per_account_per_minute)),
            per_address: RateLimiter::keyed(quota(per_address_per_minute)),
        }
    }

    /// Counts one login attempt; refuses when either budget is spent.
    pub fn check(&self, email: &str, address: Option<&str>) -> Result<(), AppError> {
        let limited = || AppError::new(ErrorCode::RateLimited, "too many login attempts; try again in a minute");
        if let Some(address) = address {
            self.per_address.check_key(&address.to_owned()).map_err(|_| limited())?;
        }
        self.per_account
            .check_key(&email.to_lowercase())
            .map_err(|_| limited())?;
        Ok(())
    }

    /// Drops the state of keys that are back to full budget (called periodically).
    pub fn shrink(&self) {
        self.per_account.retain_recent();
        self.per_address.retain_recent();
    }
}
