//! [`LifeElector`]: the elector in for-life mode.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{LifeHold, LifeLock};
use crate::elector::shared::Shared;
use crate::elector::Closing;
use crate::{
    ConfigError, ElectionConfig, ElectionEvent, ElectorHandle, Leadership, RunOutcome, StopReason,
};

/// Runs one candidate's side of a leader-for-life election over a [`LifeLock`].
///
/// The lock is held for the life of the process, as the platform tells it: no lease runs out
/// by time, no renew is sent, and [`Leadership::is_leader`] stays `true` until the platform
/// ends the hold ([`StopReason::HoldLost`]) or the election is cancelled; where the platform
/// ends a hold by the clock unless this process keeps it (an etcd session), the hold's
/// [deadline](crate::HoldDeadline) ends the term by the clock too, before any task has run to
/// hear that the session ended (after a long `SIGSTOP`, say). The fencing token
/// still grows with every term. Events, the [`ElectorHandle`] and [`RunOutcome`] are those of
/// [`LeaderElector`](crate::LeaderElector), so code that follows an election works with
/// either.
///
/// **Trade-off.** For-life never overlaps: two leaders never run at once, since nothing but the
/// end of the holder's process (or its graceful release) frees the lock, as long as the
/// platform is right that the process is gone (see the module documentation for a Kubernetes
/// lock deleted by hand while its leader is cut off). But a hung, stopped or
/// partitioned leader keeps leadership until the platform ends it: a file lock's holder until
/// its process is gone, an etcd session's until its TTL runs out without keep-alives, a
/// Kubernetes pod's until the pod is deleted (for an unreachable node, the taint's toleration
/// of five minutes by default). Leases fail over within a lease duration whatever the leader
/// does, at the price of a possible overlap that fencing tokens must guard.
///
/// Of the [`ElectionConfig`] it uses the identity, [`rejoin`](ElectionConfig::rejoin),
/// [`release_on_cancel`](ElectionConfig::release_on_cancel) and the retry period (how often a
/// standby reads who holds the lock, for [`ElectionEvent::NewLeader`]; the lease duration is
/// how long such a reading vouches for that holder in [`ElectorHandle::leader`]). The renew
/// deadline plays no part; where the backend has a session, its TTL is the backend's own
/// option.
///
/// ```
/// use lock_core::testing::MemoryLifeLock;
/// use lock_core::{ElectionConfig, ElectionEvent, LifeElector, RunOutcome};
/// use tokio_util::sync::CancellationToken;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let lock = MemoryLifeLock::new("orders");
/// let config = ElectionConfig::new("worker-a").with_release_on_cancel(true);
/// let elector = LifeElector::new(lock.clone(), config).expect("valid configuration");
/// let mut events = elector.subscribe();
/// let cancel = CancellationToken::new();
/// let running = tokio::spawn(elector.run(cancel.clone()));
/// let term = loop {
///     if let Some(ElectionEvent::StartedLeading(term)) = events.recv().await {
///         break term;
///     }
/// };
/// assert!(term.is_leader() && term.is_for_life());
/// cancel.cancel();
/// assert_eq!(running.await.unwrap(), RunOutcome::Cancelled { released: true });
/// assert!(!term.is_leader());
/// # }
/// ```
#[derive(Debug)]
pub struct LifeElector {
    lock: Arc<dyn LifeLock>,
    config: ElectionConfig,
    shared: Arc<Shared>,
}

/// How a term held for life ended.
enum Ended {
    Cancelled { released: bool },
    Lost,
}

impl LifeElector {
    /// An elector for `lock` with a validated `config`.
    pub fn new(lock: impl LifeLock, config: ElectionConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let lock: Arc<dyn LifeLock> = Arc::new(lock);
        let shared = Arc::new(Shared::new(config.identity.clone(), lock.describe()));
        Ok(Self {
            lock,
            config,
            shared,
        })
    }

    /// A handle for querying this elector while it runs (state, leadership, health).
    pub fn handle(&self) -> ElectorHandle {
        ElectorHandle::new(self.shared.clone(), self.config.lease_duration)
    }

    /// A stream of this elector's events, in order, from now on; it ends when
    /// [`run`](Self::run) returns.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<ElectionEvent> {
        self.shared.subscribe()
    }

    /// Calls `callback` with every event, in order, on the elector's own task, before it
    /// makes its next lock call (as [`LeaderElector::on_event`](crate::LeaderElector::on_event)
    /// does): `StoppedLeading` reaches it before the lock is released.
    pub fn on_event(&self, callback: impl Fn(&ElectionEvent) + Send + Sync + 'static) {
        self.shared.add_callback(Arc::new(callback));
    }

    /// The configuration in force.
    pub fn config(&self) -> &ElectionConfig {
        &self.config
    }

    /// Takes part in the election until `cancel` is cancelled (or, with `rejoin` off, until
    /// the platform ends a hold). On cancellation a leader first ends its term, then, with
    /// [`release_on_cancel`](ElectionConfig::release_on_cancel), releases the lock; without
    /// it the lock stays held until this process is gone.
    pub fn run(self, cancel: CancellationToken) -> impl Future<Output = RunOutcome> + Send {
        let span = tracing::info_span!(
            "election_for_life",
            identity = %self.config.identity,
            lock = %self.shared.lock_name
        );
        let closing = Closing(self.shared.clone());
        async move {
            let _closing = closing;
            self.run_until_done(cancel).instrument(span).await
        }
    }

    async fn run_until_done(&self, cancel: CancellationToken) -> RunOutcome {
        let mut failures = 0u32;
        loop {
            let acquired = tokio::select! {
                acquired = self.lock.acquire(&self.config.identity, &cancel) => acquired,
                never = self.watch_holder() => match never {},
            };
            let hold = match acquired {
                Ok(Some(hold)) => hold,
                Ok(None) => return RunOutcome::Cancelled { released: false },
                Err(err) => {
                    failures = failures.saturating_add(1);
                    let wait = crate::backend::reconnect_backoff(failures);
                    tracing::warn!(error = %err, ?wait, "cannot take the lock; trying again");
                    tokio::select! {
                        () = cancel.cancelled() => return RunOutcome::Cancelled { released: false },
                        () = tokio::time::sleep(wait) => continue,
                    }
                }
            };
            failures = 0;
            match self.lead(hold, &cancel).await {
                Ended::Cancelled { released } => return RunOutcome::Cancelled { released },
                Ended::Lost if !self.config.rejoin => {
                    return RunOutcome::LostLeadership(StopReason::HoldLost)
                }
                Ended::Lost => {}
            }
        }
    }

    /// Leads until the platform ends the hold or `cancel` is cancelled.
    async fn lead(&self, hold: LifeHold, cancel: &CancellationToken) -> Ended {
        let LifeHold {
            fencing_token,
            lost,
            release,
            deadline,
        } = hold;
        let term = Leadership::for_life(self.config.identity.clone(), fencing_token, deadline);
        tracing::info!(fencing_token, "leading for life");
        self.shared.started(&term);
        // The platform's word, or the hold's deadline by the clock where it has one.
        let hold_over = async {
            tokio::select! {
                () = lost.cancelled() => {}
                () = term.ended() => {}
            }
        };
        tokio::select! {
            biased;
            () = hold_over => {
                tracing::warn!(fencing_token, "the platform ended the hold");
                self.shared.stopped(&term, StopReason::HoldLost);
                drop(release);
                Ended::Lost
            }
            () = cancel.cancelled() => {
                self.shared.stopped(&term, StopReason::Cancelled);
                if !self.config.release_on_cancel || lost.is_cancelled() {
                    // Kept until the process is gone, as the platform tells.
                    drop(release);
                    return Ended::Cancelled { released: false };
                }
                match release.release().await {
                    Ok(()) => {
                        self.shared.released(term.fencing_token());
                        Ended::Cancelled { released: true }
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot release the lock; it is free once this process is gone");
                        Ended::Cancelled { released: false }
                    }
                }
            }
        }
    }

    /// Reads who holds the lock every retry period while this candidate stands by, for
    /// `NewLeader` events and the handle; never completes.
    async fn watch_holder(&self) -> std::convert::Infallible {
        loop {
            match self.lock.holder().await {
                Ok(Some((holder, _))) => {
                    let until = Instant::now() + self.config.lease_duration;
                    self.shared.observed_leader(Some(&holder), Some(until));
                }
                Ok(None) => self.shared.observed_leader(None, None),
                Err(err) => tracing::debug!(error = %err, "cannot read who holds the lock"),
            }
            tokio::time::sleep(self.config.retry_period).await;
        }
    }
}
