//! Leader-for-life: a lock held until the holder's process (or Pod) is gone, with no lease to
//! renew, as operator-lib's `leader.Become` elects on Kubernetes.

use tokio_util::sync::CancellationToken;

use crate::LockResult;

/// A lock held for the life of the process that acquires it.
///
/// Leadership has no lease: it ends when the platform removes the holder (on Kubernetes, when
/// the holder's Pod is deleted and the garbage collector removes the lock object it owns), or
/// when the holder gives it up on a graceful shutdown through [`LifeHold::release`].
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

    /// A human name for the lock, such as the URL of its object.
    fn describe(&self) -> String;
}

/// A lock held for life, as [`LifeLock::acquire`] returns it.
pub struct LifeHold {
    /// The term's fencing token.
    pub fencing_token: u64,
    /// Cancelled when the platform ends the hold while this process still lives (the ConfigMap
    /// deleted by hand or by the garbage collector).
    pub lost: CancellationToken,
    /// Gives the lock up on a graceful shutdown; dropping it without calling it keeps the lock
    /// until the Pod is gone.
    pub release: Box<dyn LifeRelease>,
}

impl std::fmt::Debug for LifeHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LifeHold")
            .field("fencing_token", &self.fencing_token)
            .field("lost", &self.lost.is_cancelled())
            .finish_non_exhaustive()
    }
}

/// Gives up a [`LifeHold`].
#[async_trait::async_trait]
pub trait LifeRelease: Send + Sync {
    /// Gives the lock up, so that a waiting candidate takes it at once.
    async fn release(self: Box<Self>) -> LockResult<()>;
}
