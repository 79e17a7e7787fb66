//! A cheap, cloneable view of a running elector: state, leadership and health.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::elector::shared::Shared;
use crate::{ElectionEvent, ElectionState, Leadership};

/// Queries a [`LeaderElector`](crate::LeaderElector) while it runs. Clones are cheap.
#[derive(Clone, Debug)]
pub struct ElectorHandle {
    shared: Arc<Shared>,
    lease_duration: Duration,
}

/// The health check failed: this instance believes it leads but has stopped renewing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{identity} believes it leads {lock} but last renewed {since:?} ago, longer than the lease duration {lease:?} plus the tolerance {tolerance:?}")]
pub struct Unhealthy {
    /// This instance's identity.
    pub identity: String,
    /// The lock, as its `describe` names it.
    pub lock: String,
    /// Time since the last successful renew was sent.
    pub since: Duration,
    /// The configured lease duration.
    pub lease: Duration,
    /// The tolerance the check was given.
    pub tolerance: Duration,
}

impl ElectorHandle {
    pub(crate) fn new(shared: Arc<Shared>, lease_duration: Duration) -> Self {
        Self {
            shared,
            lease_duration,
        }
    }

    /// This candidate's identity.
    pub fn identity(&self) -> &str {
        &self.shared.identity
    }

    /// The lock's name, as its `describe` gives it.
    pub fn lock_name(&self) -> &str {
        &self.shared.lock_name
    }

    /// A receiver of the current state, updated on every change.
    pub fn state(&self) -> watch::Receiver<ElectionState> {
        self.shared.state.subscribe()
    }

    /// The current term, if this candidate leads (as far as the elector last knew; check
    /// [`Leadership::is_leader`] for a decision that must not be stale).
    pub fn leadership(&self) -> Option<Leadership> {
        self.shared.state.borrow().leadership.clone()
    }

    /// The leader as far as this candidate can vouch for it now (never stale): this
    /// candidate only while its term is valid by the clock, another holder only while the
    /// lease this candidate observed for it has not run out, else `None`. A leader cut off from
    /// the store stops naming itself at its renew deadline, and a process resumed after a long
    /// pause names nobody until it has read the lock again.
    pub fn leader(&self) -> Option<String> {
        self.shared
            .state
            .borrow()
            .current_leader(&self.shared.identity)
            .map(str::to_owned)
    }

    /// The holder last observed on the lock, however long ago: what the health check judges.
    /// For "who leads now" use [`leader`](Self::leader).
    pub fn last_observed_holder(&self) -> Option<String> {
        self.shared.state.borrow().leader.clone()
    }

    /// Why the last release of a term failed, when one did: the lock was not handed over, so
    /// the others wait for the lease to run out. `None` when every release succeeded (or
    /// found the lock no longer this term's, which needs none). A program may exit non-zero
    /// on it after [`run`](crate::LeaderElector::run) returned.
    pub fn release_error(&self) -> Option<String> {
        self.shared.release_error()
    }

    /// True while this candidate holds a valid term; never stale (checks the monotonic clock).
    pub fn is_leader(&self) -> bool {
        self.leadership().is_some_and(|term| term.is_leader())
    }

    /// A stream of this elector's events, in order, from now on; it ends when the elector's
    /// `run` returns.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<ElectionEvent> {
        self.shared.subscribe()
    }

    /// Fails when this instance believes it leads — the lock, as last observed, names it — but
    /// its last successful renew was sent longer ago than the lease duration plus `tolerance`
    /// (client-go's health adaptor semantics). That is a leader whose backend stopped answering
    /// (it stepped down at its renew deadline, but could not see anyone take over since) or
    /// whose elector is wedged: a liveness probe should restart it. Passes for standbys, and
    /// for a term held for life ([`LifeElector`](crate::LifeElector)), which has no renews.
    pub fn check_health(&self, tolerance: Duration) -> Result<(), Unhealthy> {
        if self.last_observed_holder().as_deref() != Some(self.identity()) {
            return Ok(());
        }
        let Some(term) = self.shared.last_term() else {
            return Ok(());
        };
        if term.is_for_life() {
            // A term held for life is never renewed: the platform, not a clock, ends it.
            return Ok(());
        }
        let since = Instant::now().saturating_duration_since(term.renewed_at());
        if since > self.lease_duration + tolerance {
            return Err(Unhealthy {
                identity: self.shared.identity.clone(),
                lock: self.shared.lock_name.clone(),
                since,
                lease: self.lease_duration,
                tolerance,
            });
        }
        Ok(())
    }
}
