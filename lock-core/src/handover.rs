//! Planned handover: ask the leader to make way for a chosen candidate.
//!
//! A request writes the candidate's name into the record's `preferredHolder`, the field
//! client-go's coordinated leader election uses for the same purpose, and changes nothing else.
//! The leader hears of the write (by its hint, or at its next renew when the backend has
//! none), ends its term and releases the lock; the named candidate takes it at once while the
//! others hold back for one retry period, after which, if it has not, the election goes on as
//! usual. Every safety rule holds throughout: the term ends before the release is written, and
//! the new term's fencing token is above the old one.
//!
//! A request is an ordinary compare-and-swap write on the record's version, so it needs write
//! access to the lock, and it never touches holder, token or times: a request that races a
//! renew is simply retried on the fresh record.
//!
//! Two costs to know. Like any write, a request restarts every standby's lease clock: asked of
//! a leader that is already dead (or cut off), it delays the failover by up to one lease, and
//! repeated requests would keep delaying it; ask live leaders. And a request whose reply is
//! lost returns an error although it may have landed (the leader then acts on it).
//!
//! With [`rejoin`](crate::ElectionConfig::rejoin) off, a leader that hands over ends its
//! [`run`](crate::LeaderElector::run) with [`StopReason::HandedOver`](crate::StopReason).

use std::time::Duration;

use crate::{LeaderElectionRecord, Lock, LockError};

/// The strategy a request writes next to the preferred holder when the record has none: the
/// Kubernetes API accepts `preferredHolder` only with a `strategy`, and strategies other than
/// its own are prefixed with a domain.
pub const HANDOVER_STRATEGY: &str = "leader-election.rs/planned-handover";

/// How many times a request is written again after the leader renewed in between.
const ATTEMPTS: u32 = 5;

/// Why a handover could not be requested.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandoverError {
    /// The name to hand over to is empty.
    #[error("the candidate to hand over to has an empty name")]
    EmptyName,
    /// No record: nobody has led on this lock yet.
    #[error("{lock} holds no record: nobody leads, so there is nothing to hand over")]
    NoRecord {
        /// The lock, as [`Lock::describe`] names it.
        lock: String,
    },
    /// The record is free: nobody leads.
    #[error("nobody leads on {lock} (the lock is free): {to} can take it without a handover")]
    NoLeader {
        /// The lock, as [`Lock::describe`] names it.
        lock: String,
        /// The candidate named in the request.
        to: String,
    },
    /// The named candidate holds the lock already.
    #[error("{to} already leads on {lock} (term {fencing_token}): nothing to hand over")]
    AlreadyLeads {
        /// The lock, as [`Lock::describe`] names it.
        lock: String,
        /// The candidate named in the request.
        to: String,
        /// Its term.
        fencing_token: u64,
    },
    /// Reading or writing the record failed.
    #[error(transparent)]
    Lock(#[from] LockError),
}

/// A handover request that was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandoverRequest {
    /// The holder the record named when the request was written.
    pub from: String,
    /// The candidate asked to take over.
    pub to: String,
    /// The fencing token of the term asked to end: the next term's is above it.
    pub fencing_token: u64,
}

/// Asks whoever holds `lock` to hand leadership over to the candidate named `to`, by writing
/// `to` into the record's preferred holder (with [`HANDOVER_STRATEGY`] when the record names no
/// strategy). Returns once the request is written; the holder acts on it within milliseconds
/// where the backend has hints, else at its next renew. Refused when nobody holds the lock or
/// `to` holds it already. Each lock call is bounded by `timeout`.
///
/// ```
/// use lock_core::testing::MemoryLock;
/// use lock_core::{request_handover, HandoverError};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let lock = MemoryLock::new("orders");
/// let refused = request_handover(&lock, "worker-b", std::time::Duration::from_secs(5)).await;
/// assert!(matches!(refused, Err(HandoverError::NoRecord { .. })));
/// # }
/// ```
pub async fn request_handover(
    lock: &(impl Lock + ?Sized),
    to: &str,
    timeout: Duration,
) -> Result<HandoverRequest, HandoverError> {
    if to.is_empty() {
        return Err(HandoverError::EmptyName);
    }
    let lock_name = lock.describe();
    let bounded = |what: &'static str| LockError::Unavailable {
        lock: lock_name.clone(),
        reason: format!("no answer to the {what} within {timeout:?}"),
        source: None,
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let current = tokio::time::timeout(timeout, lock.get())
            .await
            .map_err(|_| bounded("read"))??;
        let Some(current) = current else {
            return Err(HandoverError::NoRecord { lock: lock_name });
        };
        let record = &current.record;
        let Some(holder) = record.holder() else {
            return Err(HandoverError::NoLeader {
                lock: lock_name,
                to: to.to_owned(),
            });
        };
        let fencing_token = u64::try_from(record.leader_transitions.max(0)).unwrap_or(0);
        if holder == to {
            return Err(HandoverError::AlreadyLeads {
                lock: lock_name,
                to: to.to_owned(),
                fencing_token,
            });
        }
        let request = HandoverRequest {
            from: holder.to_owned(),
            to: to.to_owned(),
            fencing_token,
        };
        let asked = asking(record, to);
        match tokio::time::timeout(timeout, lock.update(&asked, &current.version))
            .await
            .map_err(|_| bounded("write"))?
        {
            Ok(_) => return Ok(request),
            // The leader renewed (or someone else wrote) since the read: ask again on the
            // fresh record.
            Err(LockError::Conflict { .. }) if attempt < ATTEMPTS => continue,
            Err(err) => return Err(err.into()),
        }
    }
}

/// `record` with `to` as its preferred holder, and nothing else changed but a strategy where
/// there was none.
fn asking(record: &LeaderElectionRecord, to: &str) -> LeaderElectionRecord {
    let strategy = record
        .strategy
        .clone()
        .filter(|strategy| !strategy.is_empty())
        .unwrap_or_else(|| HANDOVER_STRATEGY.to_owned());
    LeaderElectionRecord {
        strategy: Some(strategy),
        preferred_holder: Some(to.to_owned()),
        ..record.clone()
    }
}
