//! What an observer reports: who leads, in which term, until when as far as it can vouch.

use std::fmt;
use std::sync::Arc;

use tokio::time::Instant;

use crate::LockError;

/// A holder whose lease, as this process observed it, has not run out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedLeader {
    /// The holder's identity, as the record names it.
    pub identity: String,
    /// The term's fencing token: the record's `leaderTransitions` (negative values count as 0).
    pub term: u64,
    /// When the lease runs out on this process's monotonic clock: the moment this process first
    /// read the current version of the record, plus the record's `leaseDurationSeconds`. The
    /// record's `renewTime` is never trusted. Every renew the observer reads moves it on.
    pub lease_expires_at: Instant,
}

/// Why nobody can be named as leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoLeader {
    /// No read of the lock has succeeded yet.
    NotReadYet,
    /// The lock holds no record (never created, or deleted).
    NoRecord,
    /// The record is free: its last holder released it.
    Released {
        /// The `leaderTransitions` of the released record: the last term's token.
        last_term: u64,
    },
    /// The lease of the last holder ran out without a new version of the record being
    /// observed: the holder may be gone, or cut off from the store.
    LeaseRanOut {
        /// The holder whose lease ran out.
        identity: String,
        /// Its term.
        term: u64,
    },
}

impl fmt::Display for NoLeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotReadYet => f.write_str("the lock has not been read yet"),
            Self::NoRecord => f.write_str("the lock holds no record"),
            Self::Released { last_term } => {
                write!(f, "the leader of term {last_term} released the lock")
            }
            Self::LeaseRanOut { identity, term } => write!(
                f,
                "the lease of {identity} (term {term}) ran out without a renew being observed"
            ),
        }
    }
}

/// The answer to "who leads" at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observed {
    /// A holder whose observed lease has not run out.
    Leader(ObservedLeader),
    /// Nobody can be named.
    NoLeader(NoLeader),
}

impl Observed {
    /// The leader this observation names at `now`: `None` when it names nobody, or when the
    /// observed lease ran out by `now` (a value kept in a `watch` channel grows stale; this
    /// check does not).
    pub fn leader_at(&self, now: Instant) -> Option<&ObservedLeader> {
        match self {
            Self::Leader(leader) if now < leader.lease_expires_at => Some(leader),
            _ => None,
        }
    }

    /// The identity and term this observation names, if any, without looking at the clock:
    /// what tells one reported change from the next.
    pub fn term_key(&self) -> Option<(&str, u64)> {
        match self {
            Self::Leader(leader) => Some((leader.identity.as_str(), leader.term)),
            Self::NoLeader(_) => None,
        }
    }
}

impl fmt::Display for Observed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Leader(leader) => write!(f, "leader {} (term {})", leader.identity, leader.term),
            Self::NoLeader(why) => write!(f, "no leader: {why}"),
        }
    }
}

/// What an [`Observer`](super::Observer) sends to its subscribers, in order.
#[derive(Clone, Debug)]
pub enum ObserverEvent {
    /// The answer to "who leads" changed: another holder, another term, or nobody. Renewals of
    /// the same term are not changes. The first successful read is always reported.
    LeaderChanged(Observed),
    /// A read of the lock failed (the first failure after a success, or the first ever; later
    /// ones in a row only go to the log). The last leader is still named until its observed
    /// lease runs out.
    ReadFailed(Arc<LockError>),
}
