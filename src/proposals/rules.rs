//! The rules that decide a model proposal (docs/PROTOCOL.md, "Model proposals"): approved
//! as soon as approvals exceed half of the eligible voters, rejected as soon as that can no
//! longer happen, otherwise still open. Pure, so the deciding transaction and the tests
//! share one definition.

use serde::{Deserialize, Serialize};

/// A voter's choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Vote {
    Approve,
    Reject,
    Abstain,
}

impl Vote {
    pub fn as_str(self) -> &'static str {
        match self {
            Vote::Approve => "approve",
            Vote::Reject => "reject",
            Vote::Abstain => "abstain",
        }
    }

    /// Reads a stored vote (the table allows nothing else; anything unknown counts as abstain).
    pub fn parse(s: &str) -> Self {
        match s {
            "approve" => Vote::Approve,
            "reject" => Vote::Reject,
            _ => Vote::Abstain,
        }
    }
}

/// Where a proposal stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Open,
    Approved,
    Rejected,
    Withdrawn,
    Cancelled,
    Expired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Approved => "approved",
            Status::Rejected => "rejected",
            Status::Withdrawn => "withdrawn",
            Status::Cancelled => "cancelled",
            Status::Expired => "expired",
        }
    }
}

/// The votes counted against the eligible voters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Tally {
    pub approve: u32,
    pub reject: u32,
    pub abstain: u32,
    /// How many may vote (the snapshot taken when the proposal opened).
    pub eligible: u32,
    /// Approvals needed: more than half of `eligible`.
    pub needed: u32,
}

impl Tally {
    pub fn new(eligible: usize, votes: impl IntoIterator<Item = Vote>) -> Self {
        let mut tally = Tally {
            eligible: eligible as u32,
            needed: eligible as u32 / 2 + 1,
            ..Tally::default()
        };
        for vote in votes {
            match vote {
                Vote::Approve => tally.approve += 1,
                Vote::Reject => tally.reject += 1,
                Vote::Abstain => tally.abstain += 1,
            }
        }
        tally
    }

    /// The outcome the votes decide now, if any: approved once approvals exceed half of
    /// the eligible voters; rejected once the voters who have not rejected could no longer
    /// make such a majority (a tie rejects).
    pub fn decide(&self) -> Option<Status> {
        if self.approve * 2 > self.eligible {
            Some(Status::Approved)
        } else if self.eligible.saturating_sub(self.reject) * 2 <= self.eligible {
            Some(Status::Rejected)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Vote::*;
    use super::*;

    fn decide(eligible: usize, votes: &[Vote]) -> Option<Status> {
        Tally::new(eligible, votes.iter().copied()).decide()
    }

    #[test]
    fn the_worked_example_of_the_protocol() {
        // Five eligible voters: three approvals are needed; three rejections end it.
        assert_eq!(decide(5, &[Approve]), None);
        assert_eq!(decide(5, &[Approve, Reject]), None);
        assert_eq!(decide(5, &[Approve, Reject, Abstain]), None);
        assert_eq!(decide(5, &[Approve, Reject, Abstain, Approve]), None);
        assert_eq!(
            decide(5, &[Approve, Reject, Abstain, Approve, Approve]),
            Some(Status::Approved)
        );
        assert_eq!(decide(5, &[Reject, Reject]), None);
        assert_eq!(decide(5, &[Reject, Reject, Reject]), Some(Status::Rejected));
    }

    #[test]
    fn a_single_voter_decides_alone() {
        assert_eq!(decide(1, &[Approve]), Some(Status::Approved));
        assert_eq!(decide(1, &[Reject]), Some(Status::Rejected));
        assert_eq!(decide(1, &[Abstain]), None);
    }

    #[test]
    fn votes_cast_alone_do_not_decide_unlike_the_seed() {
        // The seed approves on the first vote; here one approval of ten decides nothing.
        assert_eq!(decide(10, &[Approve]), None);
        // Half is not more than half.
        assert_eq!(decide(4, &[Approve, Approve]), None);
        assert_eq!(decide(4, &[Approve, Approve, Approve]), Some(Status::Approved));
        // Two rejections of four: at most two approvals remain, not a majority.
        assert_eq!(decide(4, &[Reject, Reject]), Some(Status::Rejected));
        // Abstentions never block: the abstainer may still change to approve.
        assert_eq!(decide(3, &[Abstain, Abstain]), None);
    }
}
