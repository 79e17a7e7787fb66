//! What a leader's renew attempts report: for metrics and alerting, not for decisions.

use std::time::Duration;

/// One renew attempt of a leader, reported through
/// [`LeaderElector::on_renew`](crate::LeaderElector::on_renew) as soon as it has an outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenewReport {
    /// The fencing token of the term that was renewed.
    pub fencing_token: u64,
    /// From sending the first write of the attempt to its outcome: one write on the fast path;
    /// a write, a read and a second write on the slow path.
    pub latency: Duration,
    /// How the attempt ended.
    pub outcome: RenewOutcome,
}

/// How one renew attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RenewOutcome {
    /// The lease was renewed.
    Renewed {
        /// `true` when the write with the cached version met a conflict, so the leader read the
        /// record and wrote again over the fresh version (client-go's "slow path").
        slow_path: bool,
    },
    /// The record now belongs to someone else (or nobody): the term ends.
    Superseded {
        /// The holder the record names now.
        holder: Option<String>,
    },
    /// The record is still this term's but names another preferred holder (a planned
    /// handover): the term ends and the lock is released for it.
    HandedOver {
        /// The preferred holder the record names.
        to: String,
    },
    /// The attempt failed (the backend was unreachable, slow or kept conflicting); the leader
    /// retries until its renew deadline.
    Failed {
        /// The error, as text.
        error: String,
    },
}

impl RenewOutcome {
    /// True when the lease was renewed, on either path.
    pub fn is_renewed(&self) -> bool {
        matches!(self, Self::Renewed { .. })
    }
}
