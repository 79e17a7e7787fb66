//! What the elector tells its users: ordered events and the current state.

use crate::Leadership;

/// One step of an election, as seen by one candidate. Events reach every subscriber in the
/// order they happened.
#[derive(Clone, Debug)]
pub enum ElectionEvent {
    /// The observed holder of the lock changed: `Some(identity)` (possibly this candidate's own),
    /// or `None` when the lock became free.
    NewLeader(Option<String>),
    /// This candidate started a term.
    StartedLeading(Leadership),
    /// This candidate's term ended; its cancellation token is already cancelled.
    StoppedLeading {
        /// The fencing token of the term that ended.
        fencing_token: u64,
        /// Why it ended.
        reason: StopReason,
    },
    /// After a term ended on cancellation, the lock was handed over (holder "" and a 1 s lease).
    Released {
        /// The fencing token of the released term.
        fencing_token: u64,
    },
}

/// Why a term ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// No renew succeeded within the renew deadline (the backend was unreachable or slow).
    RenewDeadlineExceeded,
    /// Another writer changed the record: the lock now names `holder` (or nobody).
    Superseded {
        /// The holder the record names now.
        holder: Option<String>,
    },
    /// The election was cancelled by its owner.
    Cancelled,
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::RenewDeadlineExceeded => f.write_str("could not renew within the renew deadline"),
            Self::Superseded {
                holder: Some(holder),
            } => write!(f, "the lock was taken by {holder}"),
            Self::Superseded { holder: None } => {
                f.write_str("the lock was freed by another writer")
            }
            Self::Cancelled => f.write_str("the election was cancelled"),
        }
    }
}

/// The current state of one candidate, published on a `tokio::sync::watch` channel.
///
/// `leadership` is what the elector last knew; for a decision that must not be stale ask
/// [`Leadership::is_leader`], which checks the clock.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ElectionState {
    /// The holder last observed on the lock (`None`: free, or not read yet).
    pub leader: Option<String>,
    /// This candidate's current term, if it leads.
    pub leadership: Option<Leadership>,
}
