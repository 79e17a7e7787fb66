//! [`EtcdLifeLock`]: leader-for-life over etcd, the key bound to a lease this process keeps
//! alive (an etcd election session).

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};
use futures::StreamExt;
use lock_core::backend::{HintStream, Version};
use lock_core::{
    LeaderElectionRecord, LifeHold, LifeLock, LifeRelease, Lock, LockError, LockResult,
};
use tokio_util::sync::CancellationToken;

use crate::session::Session;
use crate::transactions::Outcome;
use crate::EtcdLock;

/// The shortest session TTL: etcd raises shorter ones to its own minimum anyway.
pub const MIN_SESSION_TTL: Duration = Duration::from_secs(2);

/// How long a standby trusts a watch that has said nothing before it reads the key again
/// (watches can die silently).
const CONFIRM_INTERVAL: Duration = Duration::from_secs(5);

/// How long a standby whose watch ended reads the key without one before it opens another.
const WATCH_REOPEN_PAUSE: Duration = Duration::from_secs(1);

/// A [`LifeLock`] over etcd: the election's key holds the record and is attached to an etcd
/// lease that the holder's process keeps alive, so it lasts as long as that process's session.
///
/// - **Taking it** is one transaction: if the key does not exist (`create_revision == 0`), put
///   the record naming this process with the lease attached. A key that holds a released
///   record (no holder) is taken by a transaction on its `mod_revision`.
/// - **Standbys** watch the key and try again when it changes (it is deleted when the holder's
///   lease ends); they read it again every few seconds in case the watch died silently.
/// - **The session** is the lease, granted with [`ttl`](Self::ttl) (the only timing of this
///   mode) and kept alive every third of it. When etcd answers that the lease is gone, or no
///   keep-alive was acknowledged for a whole TTL (a partition, a process stopped for longer),
///   the hold's `lost` is cancelled; etcd deletes the key when the lease expires and a standby
///   takes over. A killed holder is replaced within the TTL (plus the standby's reaction).
/// - **Tokens**: the record's `leaderTransitions` is above the last record's and at least the
///   store's revision plus one (the [token floor](Lock::token_floor)), so a term's token is
///   above every earlier one, also after the key was deleted by the lease's end.
/// - **Release** revokes the lease: the key goes at once and a standby takes over.
///
/// A lease-mode [`LeaderElector`](lock_core::LeaderElector) must not share the key.
#[derive(Clone, Debug)]
pub struct EtcdLifeLock {
    lock: EtcdLock,
    ttl: Duration,
}

impl EtcdLifeLock {
    /// A life lock on `lock`'s key with sessions of `ttl` (whole seconds, at least
    /// [`MIN_SESSION_TTL`]; anything else is `InvalidConfig`).
    pub fn new(lock: EtcdLock, ttl: Duration) -> LockResult<Self> {
        if ttl < MIN_SESSION_TTL || ttl.subsec_nanos() != 0 {
            return Err(LockError::InvalidConfig(format!(
                "an etcd session's TTL must be whole seconds, at least {}s; got {ttl:?}",
                MIN_SESSION_TTL.as_secs()
            )));
        }
        Ok(Self { lock, ttl })
    }

    /// The TTL of this process's session: how long the key outlives the last keep-alive.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn inner(&self) -> &Arc<Session> {
        &self.lock.inner
    }

    /// One attempt to take the key: `Some(token)` when this process holds it now, `None` when
    /// another does (with the version to watch from).
    async fn try_take(
        &self,
        identity: &str,
        lease: i64,
    ) -> LockResult<Result<u64, Option<Version>>> {
        let inner = self.inner();
        let current = self.lock.get().await?;
        let (compare, above_last) = match &current {
            None => (
                Compare::create_revision(inner.key.as_str(), CompareOp::Equal, 0),
                0,
            ),
            Some(stored) if stored.record.is_free() => {
                let Some(revision) = crate::lock::revision_of(&stored.version) else {
                    return Ok(Err(Some(stored.version.clone())));
                };
                let last = u64::try_from(stored.record.leader_transitions).unwrap_or(0);
                (
                    Compare::mod_revision(inner.key.as_str(), CompareOp::Equal, revision),
                    last + 1,
                )
            }
            Some(stored) => return Ok(Err(Some(stored.version.clone()))),
        };
        let token = above_last.max(self.lock.token_floor().await?);
        let transitions = i32::try_from(token).map_err(|_| {
            inner
                .errors
                .unexpected(format!("the next fencing token {token} is beyond 32 bits"))
        })?;
        let now = chrono_now();
        let record = LeaderElectionRecord {
            holder_identity: identity.to_owned(),
            lease_duration_seconds: i32::try_from(self.ttl.as_secs()).unwrap_or(i32::MAX),
            acquire_time: Some(now),
            renew_time: Some(now),
            leader_transitions: transitions,
            strategy: None,
            preferred_holder: None,
        };
        let txn = Txn::new()
            .when([compare])
            .and_then([TxnOp::put(
                inner.key.as_str(),
                record.to_json(),
                Some(PutOptions::new().with_lease(lease)),
            )])
            .or_else([TxnOp::get(inner.key.as_str(), None)]);
        match inner.transaction(txn).await? {
            Outcome::Written { .. } => Ok(Ok(token)),
            Outcome::NotWritten { current } => Ok(Err(current
                .and_then(|stored| u64::try_from(stored.mod_revision).ok())
                .map(Version::ordered))),
        }
    }

    /// Waits until the key may have changed since it was read at `version` (or a while passed),
    /// or `cancel`. The watch in `hints` is kept from one wait to the next: a new watch's first
    /// hint only says that it is established, so a standby that opened one per wait would read
    /// the key without pause for as long as the holder lives. A watch that ended is opened
    /// again at the next wait, after a pause.
    async fn wait_for_change(
        &self,
        hints: &mut Option<HintStream>,
        version: Option<Version>,
        cancel: &CancellationToken,
    ) {
        if hints.is_none() {
            *hints = match &version {
                Some(version) => Some(self.lock.watch_from(version)),
                None => self.lock.watch(),
            };
        }
        let ended = {
            let next = async {
                match hints.as_mut() {
                    Some(stream) => stream.next().await.is_none(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = cancel.cancelled() => false,
                ended = next => ended,
                () = tokio::time::sleep(CONFIRM_INTERVAL) => false,
            }
        };
        if ended {
            *hints = None;
            tokio::select! {
                () = cancel.cancelled() => {}
                () = tokio::time::sleep(WATCH_REOPEN_PAUSE) => {}
            }
        }
    }

    async fn grant(&self) -> LockResult<i64> {
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        let granted = self
            .inner()
            .request(|mut client| async move { client.lease_grant(ttl, None).await })
            .await?;
        Ok(granted.id())
    }

    async fn revoke(inner: &Session, lease: i64) -> LockResult<()> {
        inner
            .request(|mut client| async move { client.lease_revoke(lease).await })
            .await
            .map(|_| ())
    }
}

fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

#[async_trait::async_trait]
impl LifeLock for EtcdLifeLock {
    async fn acquire(
        &self,
        identity: &str,
        cancel: &CancellationToken,
    ) -> LockResult<Option<LifeHold>> {
        let mut failures = 0u32;
        let mut hints = None;
        loop {
            if cancel.is_cancelled() {
                return Ok(None);
            }
            let attempt = async {
                // A session per attempt: a lease that outlived a failed attempt is revoked.
                if let Some(stored) = self.lock.get().await? {
                    if !stored.record.is_free() {
                        return Ok(Err(Some(stored.version)));
                    }
                }
                // The server counts the session's TTL from the grant: so does the keep-alive.
                let granted = tokio::time::Instant::now();
                let lease = self.grant().await?;
                match self.try_take(identity, lease).await {
                    Ok(Ok(token)) => Ok(Ok((token, lease, granted))),
                    other => {
                        let _ = Self::revoke(self.inner(), lease).await;
                        other.map(|taken| taken.map(|token| (token, lease, granted)))
                    }
                }
            };
            let outcome: LockResult<Result<(u64, i64, tokio::time::Instant), Option<Version>>> = tokio::select! {
                () = cancel.cancelled() => return Ok(None),
                outcome = attempt => outcome,
            };
            match outcome {
                Ok(Ok((fencing_token, lease, granted))) => {
                    let lost = CancellationToken::new();
                    let stop = CancellationToken::new();
                    let deadline = crate::keep_alive::spawn(
                        self.inner().clone(),
                        lease,
                        self.ttl,
                        granted,
                        lost.clone(),
                        stop.clone(),
                    );
                    tracing::info!(lock = %self.describe(), fencing_token, lease, "holding the key for the session");
                    return Ok(Some(LifeHold {
                        fencing_token,
                        lost,
                        release: Box::new(EtcdRelease {
                            inner: self.inner().clone(),
                            lease,
                            stop,
                        }),
                        deadline: Some(deadline),
                    }));
                }
                Ok(Err(version)) => {
                    failures = 0;
                    self.wait_for_change(&mut hints, version, cancel).await;
                }
                Err(err) => {
                    failures = failures.saturating_add(1);
                    let wait = lock_core::backend::reconnect_backoff(failures);
                    tracing::warn!(error = %err, ?wait, "cannot take the key; trying again");
                    tokio::select! {
                        () = cancel.cancelled() => return Ok(None),
                        () = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }

    async fn holder(&self) -> LockResult<Option<(String, u64)>> {
        Ok(self.lock.get().await?.and_then(|stored| {
            let token = u64::try_from(stored.record.leader_transitions).unwrap_or(0);
            stored
                .record
                .holder()
                .map(|holder| (holder.to_owned(), token))
        }))
    }

    fn describe(&self) -> String {
        format!(
            "{} (for life, session TTL {}s)",
            self.lock.describe(),
            self.ttl.as_secs()
        )
    }
}

/// Ends the session of one term: revokes its lease (etcd deletes the key at once). Dropped
/// without `release`, the session is kept alive until the process is gone, and then ends
/// after its TTL.
struct EtcdRelease {
    inner: Arc<Session>,
    lease: i64,
    stop: CancellationToken,
}

#[async_trait::async_trait]
impl LifeRelease for EtcdRelease {
    async fn release(self: Box<Self>) -> LockResult<()> {
        self.stop.cancel();
        EtcdLifeLock::revoke(&self.inner, self.lease).await
    }
}
