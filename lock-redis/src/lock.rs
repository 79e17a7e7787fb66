//! [`RedisLock`]: the [`Lock`] over one Redis hash, written only by the server-side script.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use lock_core::backend::{HintStream, Version, Versioned};
use lock_core::{LeaderElectionRecord, Lock, LockError, LockResult};
use redis::RedisResult;

use crate::connection::Connection;
use crate::errors::ErrorContext;
use crate::names::Names;
use crate::script::{Reply, SCRIPT};
use crate::seen::Seen;
use crate::session::Session;
use crate::{counter, hints, replicas, RedisLockOptions};

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
/// - An update writes only over the exact record bytes this lock read or wrote at the version
///   it names, so a value changed by hand under an unchanged version is never overwritten.
/// - The hash `{key}:versions` keeps the highest version ever written, so that versions never
///   repeat after the record is deleted.
/// - [`watch`](Lock::watch) subscribes to `{key}:changes` on its client's pub/sub connection
///   and turns the announcements into hints; the stream ends when it cannot be served.
///
/// A lock runs on the connections of a [`RedisClient`](crate::RedisClient): [`connect`](Self::connect) and
/// [`new`](Self::new) make a client of its own, [`RedisClient::lock`](crate::RedisClient::lock) makes the locks of many
/// elections on one client's two connections. Clones are cheap and share the connections,
/// which reconnect by themselves.
#[derive(Clone)]
pub struct RedisLock {
    inner: Arc<Inner>,
}

/// What clones of one lock share.
pub(crate) struct Inner {
    /// The connections, shared with every lock of the client.
    pub client: Arc<Session>,
    pub names: Names,
    pub describe: String,
    pub errors: ErrorContext,
    /// The record bytes at the versions this lock read or wrote, for `update`.
    pub seen: Seen,
}

impl RedisLock {
    /// Connects to the Redis server at `url` for the election `name`, with `options`
    /// (`Default::default()` for the documented defaults), and checks the connection.
    ///
    /// `url` is `redis://[user[:password]@]host[:port][/db]` or `rediss://…` for TLS. Fails
    /// as `InvalidConfig` for a bad URL or name, `Unavailable` when the server cannot be
    /// reached and `Forbidden` when it refuses the credentials.
    ///
    /// The lock has a [client](crate::RedisClient) of its own; for many elections in one process use
    /// one client's [`lock`](crate::RedisClient::lock) instead.
    pub async fn connect(url: &str, name: &str, options: RedisLockOptions) -> LockResult<Self> {
        let lock = Self::new(url, name, options)?;
        lock.inner.client.check(&lock.inner.errors).await?;
        Ok(lock)
    }

    /// Makes the lock, on a [client](crate::RedisClient) of its own, without contacting the server:
    /// the connection is made by the first call (and made again by later calls while it
    /// fails). Fails only for a bad URL, name or option, or an unreadable `tls_ca` file.
    pub fn new(url: &str, name: &str, options: RedisLockOptions) -> LockResult<Self> {
        options.validate()?;
        Names::new(&options.key_prefix, name)?;
        Self::on_session(Arc::new(Session::new(url, options)?), name)
    }

    /// The lock of election `name` on the connections of `client`.
    pub(crate) fn on_session(client: Arc<Session>, name: &str) -> LockResult<Self> {
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
                seen: Seen::default(),
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

    /// The session this lock shares with its client (see `RedisLock::client`).
    pub(crate) fn session(&self) -> &Arc<Session> {
        &self.inner.client
    }

    /// Runs one call on the client's command connection, with errors that name this lock.
    async fn call<T, F, Fut>(&self, retry_lost_connection: bool, work: F) -> LockResult<T>
    where
        F: Fn(Connection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        self.inner
            .client
            .call(&self.inner.errors, retry_lost_connection, work)
            .await
    }

    /// Runs the script with `operation` and its arguments and reads its reply.
    async fn run(&self, operation: &str, arguments: Arguments<'_>) -> LockResult<Reply> {
        let inner = &self.inner;
        let mut invocation = SCRIPT.key(&inner.names.key);
        invocation
            .key(&inner.names.versions)
            .arg(operation)
            .arg(arguments.record.unwrap_or_default())
            .arg(arguments.expected)
            .arg(inner.client.options.abandoned_ttl_millis())
            .arg(arguments.expected_bytes);
        if inner.client.target.is_cluster() {
            // Only here: a server refuses more than ten words from a client that has not
            // logged in, with a protocol error instead of NOAUTH.
            invocation.arg("1");
        }
        let invocation = &invocation;
        let read_only = operation == "get";
        let options = &inner.client.options;
        if read_only || options.min_replicas == 0 {
            let value: redis::Value = self
                .call(read_only, |mut connection| async move {
                    invocation.invoke_async(&mut connection).await
                })
                .await?;
            return Reply::parse(value).map_err(|reason| inner.errors.unexpected(reason));
        }
        let (replicas, timeout_ms) = (options.min_replicas, options.replica_timeout_millis());
        let answer = self
            .call(false, |mut connection| async move {
                replicas::invoke_and_wait(&mut connection, invocation, replicas, timeout_ms).await
            })
            .await;
        let (value, acknowledged) = match answer {
            Ok(answer) => answer,
            // No answer: the write may have landed, and nothing says any replica has it. It
            // must not be adopted as a lost reply would be (see `NotReplicated`).
            Err(err) if err.is_retryable() => {
                return Err(LockError::NotReplicated {
                    lock: self.describe(),
                    reason: format!("no answer, so no replica is known to have it ({err})"),
                })
            }
            Err(err) => return Err(err),
        };
        let reply = Reply::parse(value).map_err(|reason| inner.errors.unexpected(reason))?;
        Ok(match reply {
            Reply::Written { version } if acknowledged < i64::from(replicas) => {
                Reply::Unreplicated {
                    version,
                    acknowledged,
                }
            }
            other => other,
        })
    }

    /// A write of this call found already in place at `version` (a run of the script the
    /// client sent again): written, but with `min_replicas` not confirmed, since the `WAIT`
    /// that came with the second run covered nothing.
    fn landed_before(&self, version: &str, json: &str) -> LockResult<Version> {
        if self.options().min_replicas > 0 {
            let _ = self.written(version, json);
            return Err(LockError::NotReplicated {
                lock: self.describe(),
                reason: "the write was sent twice and the replicas' acknowledgement of the first is unknown".to_owned(),
            });
        }
        self.written(version, json)
    }

    /// A write that landed at `version` but was acknowledged by only `acknowledged` replicas.
    fn unreplicated(&self, version: &str, json: &str, acknowledged: i64) -> LockError {
        // Remembered like any write of ours: the elector's next update may name it.
        let _ = self.written(version, json);
        let options = self.options();
        LockError::NotReplicated {
            lock: self.describe(),
            reason: format!(
                "{acknowledged} of the {} replicas required (min_replicas) acknowledged it within {:?}; check that the replicas are connected (INFO replication) and keep up",
                options.min_replicas, options.replica_timeout
            ),
        }
    }

    /// Checks what the key holds (`bytes` at `version`): a record under a canonical version,
    /// which is then remembered as seen; otherwise `Corrupt`.
    fn check(&self, bytes: &[u8], version: &str) -> LockResult<Versioned> {
        let counter = counter::parse(version).map_err(|reason| self.corrupt(reason))?;
        let record = LeaderElectionRecord::from_json(bytes).map_err(|err| {
            self.corrupt(format!(
                "the field record is not a leader election record: {err}"
            ))
        })?;
        self.inner.seen.remember(version, bytes);
        Ok(Versioned {
            record,
            version: counter::version(counter),
        })
    }

    /// The version the script wrote, remembered with the bytes it wrote.
    fn written(&self, version: &str, json: &str) -> LockResult<Version> {
        let counter = counter::parse(version).map_err(|reason| {
            self.inner
                .errors
                .unexpected(format!("the script wrote a version it must not: {reason}"))
        })?;
        self.inner.seen.remember(version, json.as_bytes());
        Ok(counter::version(counter))
    }

    /// The bytes the key held at `expected` as this lock saw them, read now if it did not see
    /// them; `None` when the key holds no record at that version (a conflict).
    async fn bytes_at(&self, expected: &Version) -> LockResult<Option<Arc<[u8]>>> {
        if let Some(bytes) = self.inner.seen.lookup(expected.as_str()) {
            return Ok(Some(bytes));
        }
        let _ = self.get().await?;
        Ok(self.inner.seen.lookup(expected.as_str()))
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
        match self.run("get", Arguments::default()).await? {
            Reply::None => Ok(None),
            Reply::Found { record, version } => self.check(&record, &version).map(Some),
            Reply::Corrupt { reason } => Err(self.corrupt(reason)),
            other => Err(self.unexpected("get", &other)),
        }
    }

    async fn create(&self, record: &LeaderElectionRecord) -> LockResult<Version> {
        self.options().check_ttl_against(record.lease_duration())?;
        let json = record.to_json();
        let arguments = Arguments {
            record: Some(&json),
            ..Arguments::default()
        };
        match self.run("create", arguments).await? {
            Reply::Written { version } => self.written(&version, &json),
            Reply::Unreplicated {
                version,
                acknowledged,
            } => Err(self.unreplicated(&version, &json, acknowledged)),
            Reply::Exists => {
                // Sent again after a lost connection, a create that had landed finds itself.
                if let Some(current) = self.get().await? {
                    let version = current.version.to_string();
                    let ours = self.inner.seen.lookup(&version);
                    if ours.is_some_and(|bytes| &*bytes == json.as_bytes()) {
                        return self.landed_before(&version, &json);
                    }
                }
                Err(LockError::AlreadyExists {
                    lock: self.describe(),
                })
            }
            Reply::Corrupt { reason } => Err(self.corrupt(reason)),
            other => Err(self.unexpected("create", &other)),
        }
    }

    async fn update(
        &self,
        record: &LeaderElectionRecord,
        expected: &Version,
    ) -> LockResult<Version> {
        let conflict = || LockError::conflict(self.describe(), expected);
        self.options().check_ttl_against(record.lease_duration())?;
        let Some(expected_bytes) = self.bytes_at(expected).await? else {
            return Err(conflict());
        };
        let json = record.to_json();
        let arguments = Arguments {
            record: Some(&json),
            expected: expected.as_str(),
            expected_bytes: &expected_bytes,
        };
        match self.run("update", arguments).await? {
            Reply::Written { version } => self.written(&version, &json),
            Reply::Unreplicated {
                version,
                acknowledged,
            } => Err(self.unreplicated(&version, &json, acknowledged)),
            Reply::Conflict { current: None } => Err(conflict()),
            // What is there now: a value that is not a record is reported as such (and was not
            // written over); a record is remembered for the caller's next attempt.
            Reply::Conflict {
                current: Some((bytes, version)),
            } => {
                self.check(&bytes, &version)?;
                if bytes == json.as_bytes() {
                    // Exactly what this call sent (its renewTime is to the microsecond): the
                    // client sent the script again after a lost connection, and the first run
                    // had landed.
                    return self.landed_before(&version, &json);
                }
                Err(conflict())
            }
            Reply::Corrupt { reason } => Err(self.corrupt(reason)),
            other => Err(self.unexpected("update", &other)),
        }
    }

    fn describe(&self) -> String {
        self.inner.describe.clone()
    }

    fn watch(&self) -> Option<HintStream> {
        Some(hints::watch(
            self.inner.client.clone(),
            self.inner.names.channel.clone(),
            self.inner.describe.clone(),
        ))
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

/// The arguments of one script run besides the operation.
#[derive(Default)]
struct Arguments<'a> {
    /// create, update: the record to write.
    record: Option<&'a str>,
    /// update: the version the caller read.
    expected: &'a str,
    /// update: the exact bytes the key held at that version.
    expected_bytes: &'a [u8],
}
