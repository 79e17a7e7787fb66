//! [`RedisLock`]: the [`Lock`] over one Redis hash, written only by the server-side script.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use lock_core::{
    HintStream, LeaderElectionRecord, Lock, LockError, LockResult, Version, Versioned,
};
use redis::aio::ConnectionManager;
use redis::RedisResult;

use crate::client::ClientInner;
use crate::errors::ErrorContext;
use crate::names::Names;
use crate::script::{Reply, SCRIPT};
use crate::{hints, RedisClient, RedisLockOptions};

/// A leader election lock kept in Redis: one hash per election, changed only by a Lua script
/// that compares and swaps atomically on the server.
///
/// - The hash `{prefix}{name}` (for example `leader-election:{orders}`) holds the record as
///   client-go's JSON in the field `record` and the version counter in the field `version`.
///   `redis-cli HGET 'leader-election:{orders}' record` shows who leads.
/// - `create` and `update` are one `EVALSHA` each: the script checks that the key holds a
///   record (or nothing), compares the version, writes record and version together, sets the
///   optional expiry and publishes the new record on `{key}:changes`. The client never reads
///   to decide a write, and never uses `WATCH`.
/// - Anything else in the key (a string set by hand, a list, a hash without a valid record) is
///   reported as [`LockError::Corrupt`] naming the key, and nothing is overwritten.
/// - [`watch`](Lock::watch) subscribes to `{key}:changes` on its client's pub/sub connection
///   and turns the announcements into hints.
///
/// A lock runs on the connections of a [`RedisClient`]: [`connect`](Self::connect) and
/// [`new`](Self::new) make a client of its own, [`RedisClient::lock`] makes the locks of many
/// elections on one client's two connections. Clones are cheap and share the connections,
/// which reconnect by themselves.
#[derive(Clone)]
pub struct RedisLock {
    inner: Arc<Inner>,
}

/// What clones of one lock share.
pub(crate) struct Inner {
    /// The connections, shared with every lock of the client.
    pub client: Arc<ClientInner>,
    pub names: Names,
    pub describe: String,
    pub errors: ErrorContext,
}

impl RedisLock {
    /// Connects to the Redis server at `url` for the election `name`, with the default
    /// [options](RedisLockOptions).
    ///
    /// `url` is `redis://[user[:password]@]host[:port][/db]` or `rediss://…` for TLS. Fails
    /// as `InvalidConfig` for a bad URL or name, `Unavailable` when the server cannot be
    /// reached and `Forbidden` when it refuses the credentials.
    ///
    /// The lock has a [client](RedisClient) of its own; for many elections in one process use
    /// one client's [`lock`](RedisClient::lock) instead.
    pub async fn connect(url: &str, name: &str) -> LockResult<Self> {
        Self::connect_with(url, name, RedisLockOptions::default()).await
    }

    /// Like [`connect`](Self::connect), with options.
    pub async fn connect_with(
        url: &str,
        name: &str,
        options: RedisLockOptions,
    ) -> LockResult<Self> {
        let lock = Self::new(url, name, options)?;
        lock.inner.client.check(&lock.inner.errors).await?;
        Ok(lock)
    }

    /// Makes the lock, on a [client](RedisClient) of its own, without contacting the server:
    /// the connection is made by the first call (and made again by later calls while it
    /// fails). Fails only for a bad URL, name or option, or an unreadable `tls_ca` file.
    pub fn new(url: &str, name: &str, options: RedisLockOptions) -> LockResult<Self> {
        options.validate()?;
        Names::new(&options.key_prefix, name)?;
        RedisClient::new(url, options)?.lock(name)
    }

    /// The lock of election `name` on the connections of `client`.
    pub(crate) fn on_client(client: Arc<ClientInner>, name: &str) -> LockResult<Self> {
        let names = Names::new(&client.options.key_prefix, name)?;
        let describe = format!("{}/{}", client.server, names.key);
        let errors = ErrorContext {
            lock: describe.clone(),
            ..client.errors.clone()
        };
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                names,
                describe,
                errors,
            }),
        })
    }

    /// The Redis key of the hash that holds the record and its version.
    pub fn key(&self) -> &str {
        &self.inner.names.key
    }

    /// The pub/sub channel on which every write is announced, as
    /// `{"version":"…","record":{…}}`.
    pub fn channel(&self) -> &str {
        &self.inner.names.channel
    }

    /// The options the lock was made with (its client's).
    pub fn options(&self) -> &RedisLockOptions {
        &self.inner.client.options
    }

    /// The client whose connections the lock uses: its [`lock`](RedisClient::lock) makes the
    /// locks of other elections on the same connections.
    pub fn client(&self) -> RedisClient {
        RedisClient::from_inner(self.inner.client.clone())
    }

    /// Runs one call on the client's command connection, with errors that name this lock.
    async fn call<T, F, Fut>(&self, retry_lost_connection: bool, work: F) -> LockResult<T>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        self.inner
            .client
            .call(&self.inner.errors, retry_lost_connection, work)
            .await
    }

    /// Runs the script with `operation` and its arguments and reads its reply.
    async fn run(
        &self,
        operation: &str,
        record: Option<&str>,
        expected: &str,
    ) -> LockResult<Reply> {
        let inner = &self.inner;
        let mut invocation = SCRIPT.key(&inner.names.key);
        invocation
            .arg(operation)
            .arg(record.unwrap_or_default())
            .arg(expected)
            .arg(&inner.names.channel)
            .arg(inner.client.options.abandoned_ttl_millis());
        let invocation = &invocation;
        let read_only = operation == "get";
        let value: redis::Value = self
            .call(read_only, |mut connection| async move {
                invocation.invoke_async(&mut connection).await
            })
            .await?;
        Reply::parse(value).map_err(|reason| inner.errors.unexpected(reason))
    }

    fn corrupt(&self, reason: impl Into<String>) -> LockError {
        LockError::Corrupt {
            lock: self.inner.describe.clone(),
            reason: format!("key {}: {}", self.inner.names.key, reason.into()),
        }
    }

    fn unexpected(&self, operation: &str, reply: &Reply) -> LockError {
        self.inner
            .errors
            .unexpected(format!("the script answered {reply:?} to {operation}"))
    }
}

#[async_trait::async_trait]
impl Lock for RedisLock {
    async fn get(&self) -> LockResult<Option<Versioned>> {
        match self.run("get", None, "").await? {
            Reply::None => Ok(None),
            Reply::Found { record, version } => {
                let record = LeaderElectionRecord::from_json(&record).map_err(|err| {
                    self.corrupt(format!(
                        "the field record is not a leader election record: {err}"
                    ))
                })?;
                Ok(Some(Versioned {
                    record,
                    version: counter_version(version),
                }))
            }
            Reply::Corrupt { reason } => Err(self.corrupt(reason)),
            other => Err(self.unexpected("get", &other)),
        }
    }

    async fn create(&self, record: &LeaderElectionRecord) -> LockResult<Version> {
        match self.run("create", Some(&record.to_json()), "").await? {
            Reply::Written { version } => Ok(counter_version(version)),
            Reply::Exists => Err(LockError::AlreadyExists {
                lock: self.describe(),
            }),
            Reply::Corrupt { reason } => Err(self.corrupt(reason)),
            other => Err(self.unexpected("create", &other)),
        }
    }

    async fn update(
        &self,
        record: &LeaderElectionRecord,
        expected: &Version,
    ) -> LockResult<Version> {
        match self
            .run("update", Some(&record.to_json()), expected.as_str())
            .await?
        {
            Reply::Written { version } => Ok(counter_version(version)),
            Reply::Conflict { .. } => Err(LockError::Conflict {
                lock: self.describe(),
                expected: expected.to_string(),
            }),
            Reply::Corrupt { reason } => Err(self.corrupt(reason)),
            other => Err(self.unexpected("update", &other)),
        }
    }

    fn describe(&self) -> String {
        self.inner.describe.clone()
    }

    fn watch(&self) -> Option<HintStream> {
        Some(hints::watch(self.inner.clone()))
    }
}

impl fmt::Debug for RedisLock {
    // Written by hand: the client's connection info holds the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLock")
            .field("lock", &self.inner.describe)
            .field("options", &self.inner.client.options)
            .finish()
    }
}

/// The script's version is a counter that only grows (it starts at the server clock in
/// microseconds), so it is an ordered version; anything else stays an opaque token.
pub(crate) fn counter_version(token: String) -> Version {
    match token.parse::<u64>() {
        Ok(counter) => Version::ordered(counter),
        Err(_) => Version::new(token),
    }
}
