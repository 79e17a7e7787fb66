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
    /// After a term ended, the lock was handed over (holder "" and a 1 s lease): on
    /// cancellation with [`release_on_cancel`](crate::ElectionConfig::release_on_cancel), for a
    /// planned handover or lost readiness, or when the first read after a lost term found that
    /// term's record still in place (a renew may have landed after the renew deadline).
    Released {
        /// The fencing token of the released term.
        fencing_token: u64,
    },
    /// A takeover of this candidate that could not start a term was found in place and
    /// released: its reply was lost and it was found after its renew deadline, or the lock
    /// said it was not confirmed durable (Redis `min_replicas`). Until then the lock named this
    /// candidate, and other candidates may have named it as leader, although it never led
    /// under that record.
    HandedBack {
        /// The fencing token the takeover wrote.
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
    /// A planned handover: the record named another candidate as its preferred holder (see
    /// [`request_handover`](crate::request_handover), or client-go's coordinated leader
    /// election), so the term ended and the lock was released for `to`.
    HandedOver {
        /// The preferred holder the record named.
        to: String,
    },
    /// This candidate's readiness turned false (see
    /// [`LeaderElector::with_readiness`](crate::LeaderElector::with_readiness)): the term ended
    /// and the lock was released for a ready standby.
    Unready,
    /// A term held for life ([`LifeElector`](crate::LifeElector)) ended because the platform
    /// ended the hold while this process still lives (an etcd session that expired, a lock
    /// object deleted).
    HoldLost,
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
            Self::HandedOver { to } => write!(f, "handed over to {to} on request"),
            Self::Unready => f.write_str("this instance is not ready"),
            Self::HoldLost => f.write_str("the platform ended the hold on the lock"),
        }
    }
}

/// The current state of one candidate, published on a `tokio::sync::watch` channel.
///
/// `leader` and `leadership` are what the elector last knew, which a partition or a pause can
/// make stale; [`current_leader`](Self::current_leader) (and
/// [`ElectorHandle::leader`](crate::ElectorHandle::leader)) check them against the clock, and
/// [`Leadership::is_leader`] does for this candidate's own term.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ElectionState {
    /// The holder last observed on the lock (`None`: free, or not read yet).
    pub leader: Option<String>,
    /// When the lease of `leader` runs out as this candidate observed it (its last observed
    /// change plus the record's lease), for a holder other than this candidate.
    pub leader_valid_until: Option<tokio::time::Instant>,
    /// This candidate's current term, if it leads.
    pub leadership: Option<Leadership>,
}

impl ElectionState {
    /// The leader as far as this candidate can vouch for it now: itself only while its term is
    /// valid by the clock, another holder only while the lease this candidate observed for it
    /// has not run out; `None` otherwise (nobody leads, or nobody is known to).
    pub fn current_leader(&self, identity: &str) -> Option<&str> {
        let leader = self.leader.as_deref()?;
        if leader == identity {
            return self
                .leadership
                .as_ref()
                .filter(|term| term.is_leader())
                .map(|_| leader);
        }
        self.leader_valid_until
            .filter(|until| tokio::time::Instant::now() < *until)
            .map(|_| leader)
    }
}
