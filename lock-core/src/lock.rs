//! The contract every backend implements: one record, optimistic concurrency on a version.

use std::fmt;
use std::sync::Arc;

use futures::stream::BoxStream;

use crate::{LeaderElectionRecord, LockResult};

/// An opaque version token made by the backend (a Kubernetes `resourceVersion`, an etcd
/// `mod_revision`, a counter kept by Redis or in a file).
///
/// Versions are compared for equality only: a record read at version `v` may be replaced with
/// `update(record, v)` only while `v` is still the current version. A backend whose versions
/// grow with every write (a counter, a revision) makes them with [`Version::ordered`] (or
/// `From<u64>`); the elector then also uses that order to recognise a change hint that arrives
/// after a newer read, and ignores it.
///
/// A version must not come back for another record: once the record at `v` is replaced or
/// deleted, no later record of the lock may be at `v` (the shipped backends use a counter kept
/// across deletions, a store-wide revision, or the apiserver's `resourceVersion`). Otherwise a
/// compare-and-swap sent for the old record could land on the new one and end a term that
/// still runs. The elector does not rely on it for what it keeps of its own lost writes: those
/// are matched by version and record content.
#[derive(Clone, Debug)]
pub struct Version {
    token: Arc<str>,
    order: Option<u64>,
}

impl Version {
    /// Wraps a backend's opaque version token.
    pub fn new(token: impl Into<Arc<str>>) -> Self {
        Self {
            token: token.into(),
            order: None,
        }
    }

    /// A version from a counter that grows with every write.
    pub fn ordered(counter: u64) -> Self {
        Self {
            token: counter.to_string().into(),
            order: Some(counter),
        }
    }

    /// The token as the backend wrote it.
    pub fn as_str(&self) -> &str {
        &self.token
    }

    /// True when both versions come from a growing counter and `self` is older than `other`.
    pub fn is_older_than(&self, other: &Version) -> bool {
        matches!((self.order, other.order), (Some(a), Some(b)) if a < b)
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.token == other.token
    }
}

impl Eq for Version {}

impl std::hash::Hash for Version {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.token.hash(state);
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.token)
    }
}

impl From<u64> for Version {
    fn from(counter: u64) -> Self {
        Self::ordered(counter)
    }
}

impl From<i64> for Version {
    fn from(counter: i64) -> Self {
        match u64::try_from(counter) {
            Ok(counter) => Self::ordered(counter),
            Err(_) => Self::new(counter.to_string()),
        }
    }
}

impl From<String> for Version {
    fn from(token: String) -> Self {
        Self::new(token)
    }
}

/// A record together with the version it was read at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned {
    /// The record.
    pub record: LeaderElectionRecord,
    /// The version to pass to [`Lock::update`] to replace it.
    pub version: Version,
}

/// A change notice from a lock's [`watch`](Lock::watch) stream.
///
/// Hints only wake the elector up sooner; decisions are always made by compare-and-swap against
/// the backend, so a lost, late, duplicated or stale hint costs time, never safety.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hint {
    /// Something may have changed (or the watch reconnected and may have missed changes):
    /// read the lock to find out.
    Changed,
    /// The backend reported that the lock now holds this record at this version.
    Record(Versioned),
}

/// A stream of change hints; it may end, in which case the elector polls and asks again later.
pub type HintStream = BoxStream<'static, Hint>;

/// Storage for one election record with optimistic concurrency.
///
/// Implementations exist for a local file (`lock-file`), Redis, etcd and Kubernetes objects;
/// [`MemoryLock`](crate::testing::MemoryLock) keeps the record in memory and
/// [`FaultyLock`](crate::testing::FaultyLock) wraps any lock to inject faults.
///
/// Implementations must never panic on anything another writer or a server may put in the
/// store: a value that is not a record is reported as [`LockError::Corrupt`](crate::LockError::Corrupt)
/// and left untouched.
#[async_trait::async_trait]
pub trait Lock: Send + Sync + fmt::Debug {
    /// Reads the record: `None` when there is none yet.
    async fn get(&self) -> LockResult<Option<Versioned>>;

    /// Creates the record. Fails with `AlreadyExists` when one is already there.
    async fn create(&self, record: &LeaderElectionRecord) -> LockResult<Version>;

    /// Replaces the record if its version is still `expected`. Fails with `Conflict` when the
    /// version moved on or the record vanished.
    async fn update(
        &self,
        record: &LeaderElectionRecord,
        expected: &Version,
    ) -> LockResult<Version>;

    /// A human name for the lock, such as `file:///tmp/demo.json` or
    /// `redis://127.0.0.1:6379/leader:orders`; it names the lock in errors and logs.
    fn describe(&self) -> String;

    /// A stream of change hints, when the backend can tell about changes. `None` (the default)
    /// means the elector polls every retry period.
    fn watch(&self) -> Option<HintStream> {
        None
    }

    /// The smallest fencing token that a record created now may carry so that it is above the
    /// token of every record this lock ever held, as far as the backend can tell after the
    /// record was deleted. The elector asks before it creates a record, and starts the new term
    /// above both this floor and every token it observed itself.
    ///
    /// A backend with a counter that survives the record's deletion overrides it (etcd: the
    /// store's revision, which never goes back, and which bounds every `leaderTransitions` the
    /// elector wrote). The default, 0, means the backend cannot tell: after a deletion, only the
    /// candidates' own memory keeps tokens growing.
    async fn token_floor(&self) -> LockResult<u64> {
        Ok(0)
    }
}

#[async_trait::async_trait]
impl<L: Lock + ?Sized> Lock for Arc<L> {
    async fn get(&self) -> LockResult<Option<Versioned>> {
        (**self).get().await
    }

    async fn create(&self, record: &LeaderElectionRecord) -> LockResult<Version> {
        (**self).create(record).await
    }

    async fn update(
        &self,
        record: &LeaderElectionRecord,
        expected: &Version,
    ) -> LockResult<Version> {
        (**self).update(record, expected).await
    }

    fn describe(&self) -> String {
        (**self).describe()
    }

    fn watch(&self) -> Option<HintStream> {
        (**self).watch()
    }

    async fn token_floor(&self) -> LockResult<u64> {
        (**self).token_floor().await
    }
}
