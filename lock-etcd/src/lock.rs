//! [`EtcdLock`]: the [`Lock`] over one etcd key, written only by compare-and-swap transactions.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use etcd_client::{Client, GetOptions};
use lock_core::backend::{HintStream, Version, Versioned};
use lock_core::{LeaderElectionRecord, Lock, LockError, LockResult};

use crate::connection::{self, SharedClient};
use crate::errors::{self, ErrorContext, Fault};
use crate::names::{self, Endpoints};
use crate::transactions::{self, Outcome, Stored};
use crate::vouched::Vouched;
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
/// cannot cost the lease. Clones are cheap and share one client, which reconnects by itself.
#[derive(Clone)]
pub struct EtcdLock {
    inner: Arc<Inner>,
}

/// What clones of one lock, and its watches, share.
pub(crate) struct Inner {
    pub client: SharedClient,
    pub key: String,
    pub endpoints: Endpoints,
    pub options: EtcdLockOptions,
    pub describe: String,
    pub errors: ErrorContext,
    pub vouched: Vouched,
}

impl EtcdLock {
    /// Connects to etcd at `endpoints` for the election `name`, with the default
    /// [options](EtcdLockOptions).
    ///
    /// Each endpoint is `http://host:port`, `https://host:port` or `host:port`. Fails as
    /// `InvalidConfig` for a bad endpoint, name or option, `Unavailable` when no server can be
    /// reached, and `Forbidden` when the server refuses the login or the user may not read the
    /// key.
    pub async fn connect<E: AsRef<str>>(endpoints: &[E], name: &str) -> LockResult<Self> {
        Self::connect_with(endpoints, name, EtcdLockOptions::default()).await
    }

    /// Like [`connect`](Self::connect), with options. One read of the key checks the
    /// connection, the login and the permission.
    pub async fn connect_with<E: AsRef<str>>(
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

    /// Makes the lock without contacting the server: the client connects (and logs in) on the
    /// first call, and again on later calls while that fails. Fails only for a bad endpoint,
    /// name or option, or an unreadable TLS file.
    pub fn new<E: AsRef<str>>(
        endpoints: &[E],
        name: &str,
        options: EtcdLockOptions,
    ) -> LockResult<Self> {
        options.validate()?;
        let key = names::key(&options.key_prefix, name)?;
        let endpoints = Endpoints::parse(endpoints, &options)?;
        let user = options.credentials.as_ref().map(|c| c.user.clone());
        let describe = format!("{}/{key}", endpoints.describe(user.as_deref()));
        let errors = ErrorContext {
            lock: describe.clone(),
            user,
            key: key.clone(),
            prefix: options.key_prefix.clone(),
            tls: endpoints.tls,
        };
        let connect = connection::connect_options(&options, &endpoints)?;
        let client = SharedClient::new(&endpoints, connect, options.connect_timeout);
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                key,
                endpoints,
                options,
                describe,
                errors,
                vouched: Vouched::default(),
            }),
        })
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

impl Inner {
    /// Runs one request on the shared client (connecting first if needed) within the request
    /// timeout, mapping its errors.
    pub async fn request<T, F, Fut>(&self, work: F) -> LockResult<T>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let connected = self.client.get(&self.errors).await?;
        let limit = self.options.request_timeout;
        match tokio::time::timeout(limit, work(connected.client)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => {
                let fault = errors::classify(&err);
                if matches!(fault, Fault::Authentication | Fault::StaleToken) {
                    // Log in anew on the next call rather than reuse a refused login.
                    self.client.reset(connected.generation).await;
                }
                Err(self.errors.map(err))
            }
            Err(_) => {
                // The connection may be dead without having closed: make a new one next time.
                self.client.reset(connected.generation).await;
                Err(self.errors.timed_out(limit))
            }
        }
    }

    /// Reads the key as it is stored, without judging the value.
    pub async fn read(&self) -> LockResult<Option<Stored>> {
        let key = self.key.clone();
        let response = self
            .request(|mut client| async move { client.get(key, None).await })
            .await?;
        Ok(transactions::stored(&self.key, response))
    }

    /// Checks that `stored` is a record, and vouches for its revision if it is.
    pub fn checked(&self, stored: Stored) -> LockResult<Versioned> {
        let Some(version) = u64::try_from(stored.mod_revision).ok().filter(|r| *r > 0) else {
            return Err(self.errors.unexpected(format!(
                "the key {} has the modification revision {}",
                self.key, stored.mod_revision
            )));
        };
        let record =
            LeaderElectionRecord::from_json(&stored.value).map_err(|err| LockError::Corrupt {
                lock: self.describe.clone(),
                reason: format!(
                    "the key {} holds {}, which is not a leader election record: {err}",
                    self.key,
                    preview(&stored.value)
                ),
            })?;
        self.vouched.remember(stored.mod_revision, &stored.value);
        Ok(Versioned {
            record,
            version: Version::ordered(version),
        })
    }

    async fn transaction(&self, txn: etcd_client::Txn) -> LockResult<Outcome> {
        let response = self
            .request(|mut client| async move { client.txn(txn).await })
            .await?;
        transactions::outcome(&self.key, response).map_err(|reason| self.errors.unexpected(reason))
    }

    fn conflict(&self, expected: &Version) -> LockError {
        LockError::Conflict {
            lock: self.describe.clone(),
            expected: expected.to_string(),
        }
    }

    /// The bytes of the valid record the key held at `revision`: remembered, or read now.
    /// `Ok(None)` when the key no longer is at `revision` (a conflict).
    async fn vouched_value(&self, revision: i64) -> LockResult<Option<Arc<[u8]>>> {
        if let Some(value) = self.vouched.lookup(revision) {
            return Ok(Some(value));
        }
        // A version this lock did not hand out: vouch for it only if the key still holds a
        // record at it.
        let Some(stored) = self.read().await? else {
            return Ok(None);
        };
        let at_revision = stored.mod_revision == revision;
        let value: Arc<[u8]> = Arc::from(stored.value.as_slice());
        self.checked(stored)?;
        Ok(at_revision.then_some(value))
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

/// The start of a stored value, for messages: at most 64 characters, escaped.
fn preview(value: &[u8]) -> String {
    const LONGEST: usize = 64;
    let text = String::from_utf8_lossy(value);
    let mut shown: String = text.chars().take(LONGEST).collect();
    if text.chars().nth(LONGEST).is_some() {
        shown.push('…');
    }
    format!("{shown:?}")
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

    fn watch(&self) -> Option<HintStream> {
        Some(hints::watch(self.inner.clone(), None))
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
    fn previews_are_short_and_escaped() {
        assert_eq!(preview(b"hello"), "\"hello\"");
        assert_eq!(preview(b"a\nb"), "\"a\\nb\"");
        let long = preview(&[b'x'; 100]);
        assert!(long.ends_with("…\""), "{long}");
        assert_eq!(long.chars().filter(|c| *c == 'x').count(), 64);
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
