//! [`EtcdLock`]: the [`Lock`] over one etcd key, written only by compare-and-swap transactions.

use std::fmt;
use std::sync::Arc;

use etcd_client::GetOptions;
use lock_core::backend::{HintStream, Version, Versioned};
use lock_core::{LeaderElectionRecord, Lock, LockError, LockResult};

use crate::hub::Hub;
use crate::session::Session;
use crate::transactions::{self, Outcome};
use crate::{floor, hints, EtcdLockOptions};

/// A leader election lock kept in etcd: one key per election, changed only by transactions
/// that compare and swap on the key's `mod_revision`.
///
/// - The key `{prefix}{name}` (for example `leader-election/orders`) holds the record as
///   client-go's JSON, exactly as [`LeaderElectionRecord::to_json`] writes it, so
///   `etcdctl get leader-election/orders` shows who leads.
/// - The version is the key's `mod_revision`, an [ordered](Version::ordered) number that grows
///   with every write to the store and is never reused, also across restarts.
/// - `create` is one transaction: if `create_revision(key) == 0` then put, else read (and
///   report `AlreadyExists`). `update` is one transaction: if `mod_revision(key) == expected`
///   then put, else read (and report `Conflict`, also when the key is gone).
/// - A value that is not a record (`etcdctl put leader-election/orders hello`) is reported as
///   [`LockError::Corrupt`] naming the key, and never overwritten, not even by an update at
///   its revision (see the module `vouched` in the source for why).
/// - [`watch`](Lock::watch) streams etcd's watch events for the key as hints, survives
///   compactions, and ends when the watch fails or the connection is lost.
/// - [`token_floor`](Lock::token_floor) is the store's revision plus one: after a deletion, a
///   new record's token stays above every token the key carried.
/// - [`describe`](Lock::describe) names servers, user and key, as in
///   `etcd://elector@127.0.0.1:2379/leader-election/orders` (`etcds://` over TLS), never a
///   password.
///
/// Every request is bounded by [`request_timeout`](EtcdLockOptions::request_timeout), and
/// connecting by [`connect_timeout`](EtcdLockOptions::connect_timeout), so that one hung call
/// cannot cost the lease. Clones are cheap and share one client, which reconnects by itself;
/// the locks of many elections share one through [`EtcdClient::lock`](crate::EtcdClient::lock).
#[derive(Clone)]
pub struct EtcdLock {
    pub(crate) inner: Arc<Session>,
    /// The client's one watch, which the lock's hint streams join; `None` for a lock that
    /// watches its key alone.
    pub(crate) hub: Option<Arc<Hub>>,
}

impl EtcdLock {
    /// Connects to etcd at `endpoints` for the election `name`, with `options`
    /// (`Default::default()` for the documented defaults). One read of the key checks the
    /// connection, the login and the permission.
    ///
    /// Each endpoint is `http://host:port`, `https://host:port` or `host:port`. Fails as
    /// `InvalidConfig` for a bad endpoint, name or option, `Unavailable` when no server can be
    /// reached, and `Forbidden` when the server refuses the login or the user may not read the
    /// key.
    pub async fn connect<E: AsRef<str>>(
        endpoints: &[E],
        name: &str,
        options: EtcdLockOptions,
    ) -> LockResult<Self> {
        let lock = Self::new(endpoints, name, options)?;
        match lock.inner.read().await {
            // The server answered, the login and the permission hold: what the key holds is
            // for `get` to report.
            Ok(_) | Err(LockError::Corrupt { .. }) => Ok(lock),
            Err(err) => Err(err),
        }
    }

    /// The etcd key that holds the record.
    pub fn key(&self) -> &str {
        &self.inner.key
    }

    /// The endpoints, as URLs with their scheme.
    pub fn endpoints(&self) -> &[String] {
        &self.inner.endpoints.urls
    }

    /// The options the lock was made with.
    pub fn options(&self) -> &EtcdLockOptions {
        &self.inner.options
    }

    /// Like [`watch`](Lock::watch), but starting with the writes after `after` (a version
    /// this or another lock on the key handed out): they are replayed as hints first, unless
    /// etcd compacted them away, in which case the stream says [`Changed`](lock_core::backend::Hint::Changed)
    /// and goes on from the current revision. A version that is not a revision starts from now.
    /// Like `watch`, it ends when the watch fails.
    pub fn watch_from(&self, after: &Version) -> HintStream {
        let start = revision_of(after).and_then(|revision| revision.checked_add(1));
        hints::watch(self.inner.clone(), start)
    }
}

/// The revision a version stands for: a positive number, as [`Version::ordered`] writes it.
pub(crate) fn revision_of(version: &Version) -> Option<i64> {
    version
        .as_str()
        .parse::<i64>()
        .ok()
        .filter(|revision| *revision > 0)
}

#[async_trait::async_trait]
impl Lock for EtcdLock {
    async fn get(&self) -> LockResult<Option<Versioned>> {
        let inner = &self.inner;
        match inner.read().await? {
            None => Ok(None),
            Some(stored) => inner.checked(stored).map(Some),
        }
    }

    async fn create(&self, record: &LeaderElectionRecord) -> LockResult<Version> {
        let inner = &self.inner;
        let json = record.to_json();
        match inner
            .transaction(transactions::create(&inner.key, json.as_bytes()))
            .await?
        {
            Outcome::Written { revision } => {
                inner.vouched.remember(revision, json.as_bytes());
                Ok(Version::from(revision))
            }
            Outcome::NotWritten {
                current: Some(stored),
            } => {
                inner.checked(stored)?;
                Err(LockError::AlreadyExists {
                    lock: inner.describe.clone(),
                })
            }
            Outcome::NotWritten { current: None } => Err(inner.errors.unexpected(format!(
                "the key {} neither exists nor is missing in one transaction",
                inner.key
            ))),
        }
    }

    async fn update(
        &self,
        record: &LeaderElectionRecord,
        expected: &Version,
    ) -> LockResult<Version> {
        let inner = &self.inner;
        let Some(revision) = revision_of(expected) else {
            // No revision at all, so never current; read to tell a corrupt value apart.
            if let Some(stored) = inner.read().await? {
                inner.checked(stored)?;
            }
            return Err(inner.conflict(expected));
        };
        let Some(vouched) = inner.vouched_value(revision).await? else {
            return Err(inner.conflict(expected));
        };
        let json = record.to_json();
        let txn = transactions::update(&inner.key, revision, &vouched, json.as_bytes());
        match inner.transaction(txn).await? {
            Outcome::Written { revision } => {
                inner.vouched.remember(revision, json.as_bytes());
                Ok(Version::from(revision))
            }
            Outcome::NotWritten { current } => {
                if let Some(stored) = current {
                    inner.checked(stored)?;
                }
                Err(inner.conflict(expected))
            }
        }
    }

    fn describe(&self) -> String {
        self.inner.describe.clone()
    }

    /// This lock's place in its [`EtcdClient`](crate::EtcdClient)'s one watch on the key prefix; for a lock made
    /// by [`new`](Self::new) or [`connect`](Self::connect), a watch of its key alone.
    fn watch(&self) -> Option<HintStream> {
        Some(match &self.hub {
            Some(hub) => hints::shared(hub.clone(), self.inner.clone()),
            None => hints::watch(self.inner.clone(), None),
        })
    }

    /// The store's revision plus one, from a count-only read of the key (one small answer
    /// whatever the key holds); see the module `floor` in the source for why that is above
    /// every token the key ever carried.
    async fn token_floor(&self) -> LockResult<u64> {
        let inner = &self.inner;
        let key = inner.key.clone();
        let options = GetOptions::new().with_count_only();
        let response = inner
            .request(|mut client| async move { client.get(key, Some(options)).await })
            .await?;
        let Some(header) = response.header() else {
            return Err(inner
                .errors
                .unexpected("a read answered without the store's revision"));
        };
        floor::floor_at(&inner.describe, header.revision())
    }
}

impl fmt::Debug for EtcdLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdLock")
            .field("lock", &self.inner.describe)
            .field("options", &self.inner.options)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_positive_numbers_are_revisions() {
        assert_eq!(revision_of(&Version::ordered(7)), Some(7));
        assert_eq!(revision_of(&Version::ordered(0)), None);
        assert_eq!(revision_of(&Version::ordered(u64::MAX)), None);
        assert_eq!(revision_of(&Version::new("-3")), None);
        assert_eq!(revision_of(&Version::new("not-a-version")), None);
    }

    #[test]
    fn describe_names_servers_user_and_key_but_no_password() {
        let options = EtcdLockOptions::default().with_user("elector", "hunter2");
        let lock = EtcdLock::new(&["127.0.0.1:2379"], "orders", options).unwrap();
        assert_eq!(
            lock.describe(),
            "etcd://elector@127.0.0.1:2379/leader-election/orders"
        );
        assert_eq!(lock.key(), "leader-election/orders");
        assert_eq!(lock.endpoints(), ["http://127.0.0.1:2379"]);
        assert!(!format!("{lock:?}").contains("hunter2"));
    }
}
