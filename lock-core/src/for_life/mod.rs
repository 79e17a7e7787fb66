//! Leader-for-life: leadership that no clock ends.
//!
//! In the lease mode of [`LeaderElector`](crate::LeaderElector) a leader must renew, and a
//! standby takes over once the lease it observed runs out. In for-life mode the holder takes a
//! lock that the *platform* keeps for it as long as its process lives (an OS file lock, an
//! etcd lease kept alive by the process, a Kubernetes object owned by the pod) and gives up
//! only when the process is gone, or when it shuts down gracefully. A [`LifeLock`] is such a
//! lock; a [`LifeElector`] runs the election over one and reports it with the same
//! [`ElectionEvent`](crate::ElectionEvent)s and [`ElectorHandle`](crate::ElectorHandle).
//!
//! # The trade-off
//!
//! - **No overlap.** Two leaders never run at once: nobody takes over from a leader that is
//!   merely slow, paused, or cut off from the store, because no clock ends its term. This
//!   holds as long as the platform's word that a process is gone is right: an etcd session
//!   ends on both sides by its TTL, but a Kubernetes lock deleted by hand, or the Pod of a
//!   leader on a cut-off node force-deleted, frees the lock while that leader may still run
//!   and hear of it only when it reaches the API server again.
//! - **No automatic recovery from a hung leader.** A leader that is stopped (`SIGSTOP`),
//!   wedged or on an unreachable node keeps leadership until the platform says its process is
//!   gone: at once for a file lock when the process dies, after the session's TTL for etcd,
//!   after the node is declared lost and the pod deleted for Kubernetes (minutes, by default).
//!   Leases with fencing tokens fail over faster, at the price of a possible overlap that the
//!   tokens must guard.

mod elector;

use std::sync::{Arc, Mutex};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::LockResult;

pub use elector::LifeElector;

/// A lock held for the life of the holder's process, as the platform tells it (see the
/// [module documentation](crate::for_life)). Implementations: `lock_file::FileLifeLock`,
/// `lock_etcd::EtcdLifeLock`; [`MemoryLifeLock`](crate::testing::MemoryLifeLock) for tests.
#[async_trait::async_trait]
pub trait LifeLock: Send + Sync + std::fmt::Debug + 'static {
    /// Holds the lock for the life of this process once nobody else holds it; until then waits
    /// (woken by the backend's watch where it has one, else retrying with a capped exponential
    /// back-off). Ok(None) when `cancel` was cancelled first. The hold's fencing token is above
    /// every earlier term's.
    async fn acquire(
        &self,
        identity: &str,
        cancel: &CancellationToken,
    ) -> LockResult<Option<LifeHold>>;

    /// The current holder's identity and fencing token, without waiting; None when free.
    async fn holder(&self) -> LockResult<Option<(String, u64)>>;

    /// A human-readable name of the lock, for logs and errors.
    fn describe(&self) -> String;
}

/// One hold of a [`LifeLock`]: this process leads until the platform ends the hold or it is
/// released.
pub struct LifeHold {
    /// The fencing token of this term: above every earlier term's on the lock.
    pub fencing_token: u64,
    /// Cancelled when the platform ends the hold while this process still lives (an etcd
    /// session that expired, a Kubernetes ConfigMap deleted by hand or by the garbage collector).
    pub lost: CancellationToken,
    /// Gives the lock up on a graceful shutdown; dropping it without calling it keeps the lock
    /// until the process is gone, as the platform tells.
    pub release: Box<dyn LifeRelease>,
    /// For a hold that the platform ends by the clock unless this process keeps it (an etcd
    /// session kept alive): the deadline the backend moves on with every acknowledged
    /// keep-alive. The term is over once it passes, before any task of the backend has run to
    /// cancel [`lost`](Self::lost) (a process resumed from a stop longer than the session, say).
    /// `None` where only the platform's word ends the hold (a file lock, a Kubernetes object).
    pub deadline: Option<HoldDeadline>,
}

/// The deadline by the clock of a [`LifeHold`] that ends unless it is kept (an etcd session):
/// the platform may have ended the hold once it has passed, so the term ends then, whether or
/// not a task has run to say so. It never moves back, and never moves on once it has passed:
/// a term that [`is_leader`](crate::Leadership::is_leader) said was over stays over. Clones
/// share it.
#[derive(Clone, Debug)]
pub struct HoldDeadline(Arc<Mutex<Instant>>);

impl HoldDeadline {
    /// A deadline at `at`.
    pub fn new(at: Instant) -> Self {
        Self(Arc::new(Mutex::new(at)))
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, Instant> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// When the hold ends unless the deadline is moved on.
    pub fn at(&self) -> Instant {
        *self.guard()
    }

    /// True once the deadline has passed: the hold is over for good.
    pub fn has_passed(&self) -> bool {
        Instant::now() >= self.at()
    }

    /// Moves the deadline on to `at` (never back). False, and no change, once it has passed:
    /// the hold is over, whatever a late acknowledgement says.
    #[must_use]
    pub fn extend(&self, at: Instant) -> bool {
        let mut deadline = self.guard();
        if Instant::now() >= *deadline {
            return false;
        }
        if at > *deadline {
            *deadline = at;
        }
        true
    }
}

impl std::fmt::Debug for LifeHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LifeHold")
            .field("fencing_token", &self.fencing_token)
            .field("lost", &self.lost.is_cancelled())
            .finish_non_exhaustive()
    }
}

/// How a [`LifeHold`] is given up on a graceful shutdown.
#[async_trait::async_trait]
pub trait LifeRelease: Send + Sync {
    /// Gives the lock up, so that a standby takes it at once.
    async fn release(self: Box<Self>) -> LockResult<()>;
}

#[async_trait::async_trait]
impl<L: LifeLock + ?Sized> LifeLock for std::sync::Arc<L> {
    async fn acquire(
        &self,
        identity: &str,
        cancel: &CancellationToken,
    ) -> LockResult<Option<LifeHold>> {
        (**self).acquire(identity, cancel).await
    }

    async fn holder(&self) -> LockResult<Option<(String, u64)>> {
        (**self).holder().await
    }

    fn describe(&self) -> String {
        (**self).describe()
    }
}
