//! How a [`RedisLock`](crate::RedisLock) names its key, times its calls and trusts the server.

use std::path::PathBuf;
use std::time::Duration;

use lock_core::{LockError, LockResult};

/// The key prefix used unless [`RedisLockOptions::key_prefix`] says otherwise.
pub const DEFAULT_KEY_PREFIX: &str = "leader-election:";
/// How long connecting (TCP, TLS and authentication) may take by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the server may take to answer one command by default.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a write waits for its replicas' acknowledgements by default, when
/// [`min_replicas`](RedisLockOptions::min_replicas) asks for any.
pub const DEFAULT_REPLICA_TIMEOUT: Duration = Duration::from_millis(500);

/// Options of a [`RedisLock`](crate::RedisLock); [`Default`] gives the documented defaults.
///
/// ```
/// use std::time::Duration;
/// use lock_redis::RedisLockOptions;
///
/// let options = RedisLockOptions::default()
///     .with_key_prefix("billing:")
///     .with_abandoned_ttl(Duration::from_secs(24 * 3600))
///     .with_response_timeout(Duration::from_secs(1));
/// assert_eq!(options.key_prefix, "billing:");
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisLockOptions {
    /// Put in front of the election name to make the key: with the default
    /// `"leader-election:"` the election `orders` lives in the hash
    /// `leader-election:{orders}` and announces writes on `leader-election:{orders}:changes`.
    /// It may hold neither braces nor white space.
    pub key_prefix: String,
    /// When set, the key expires this long after the last write, so that an election nobody
    /// takes part in any more does not stay in Redis forever. Off by default. It must be at
    /// least twice the election's lease duration: a write of a record whose lease is longer
    /// than half of it fails as [`InvalidConfig`](LockError::InvalidConfig), and the script
    /// never sets an expiry below twice the written lease either (an expired key is a vanished
    /// record). When it is unset, every write removes an expiry that an earlier setting left,
    /// so that a rolling change that turns it off never leaves a key to expire under a leader.
    pub abandoned_ttl: Option<Duration>,
    /// A PEM file of certificate authorities that `rediss://` servers are checked against,
    /// instead of the system's trusted roots.
    pub tls_ca: Option<PathBuf>,
    /// How long connecting (TCP, TLS and authentication) may take.
    pub connect_timeout: Duration,
    /// How long the server may take to answer one command. A lock call fails as
    /// [`Unavailable`](LockError::Unavailable) after at most `connect_timeout +
    /// response_timeout` (plus [`replica_timeout`](Self::replica_timeout) for a write that
    /// waits for replicas).
    pub response_timeout: Duration,
    /// How many replicas must acknowledge every write before it counts (`WAIT`), 0 (the
    /// default) for none. Redis replicates asynchronously: a failover can promote a replica
    /// that never received the last takeover, and then the record goes back and a fencing
    /// token can be handed out twice. With `min_replicas` at 1 or more, a write that fewer
    /// replicas acknowledged within [`replica_timeout`](Self::replica_timeout) fails as
    /// [`NotReplicated`](LockError::NotReplicated): the elector starts no term on such a
    /// takeover, and a renew that is not acknowledged does not extend the term. So every term
    /// that ran is on `min_replicas` replicas and survives the promotion of any of them.
    ///
    /// What it costs: one replication round trip per write, a shared connection that waits
    /// while `WAIT` does, and no leader at all while fewer replicas are connected. What it
    /// does not buy: with fewer required acknowledgements than replicas, a failover can
    /// promote a replica that did not acknowledge (Sentinel ranks replicas by
    /// `replica-priority` before their replication offset, and the offsets it compares may be
    /// seconds old), so only `min_replicas` equal to the number of replicas keeps every term
    /// through any promotion. Redis is not a consensus system: a partition that leaves a
    /// replica with the old primary still lets both sides acknowledge writes. A proxy that
    /// pools connections (and may send `WAIT` on another connection than the write) is not
    /// supported with this option.
    pub min_replicas: u32,
    /// How long a write waits for [`min_replicas`](Self::min_replicas) acknowledgements
    /// before it fails as `NotReplicated`. Keep it well below the election's renew deadline:
    /// a renew that waits this long leaves less time for the next attempt. Default 500 ms.
    pub replica_timeout: Duration,
    /// The user the sentinels of a `redis+sentinel://` URL want (the URL's credentials are
    /// the data connection's), `None` for the default user.
    pub sentinel_username: Option<String>,
    /// The password the sentinels want, `None` when they ask for none.
    pub sentinel_password: Option<String>,
}

impl std::fmt::Debug for RedisLockOptions {
    // Written by hand: the sentinel password stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLockOptions")
            .field("key_prefix", &self.key_prefix)
            .field("abandoned_ttl", &self.abandoned_ttl)
            .field("tls_ca", &self.tls_ca)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("min_replicas", &self.min_replicas)
            .field("replica_timeout", &self.replica_timeout)
            .field("sentinel_username", &self.sentinel_username)
            .field(
                "sentinel_password",
                &self.sentinel_password.as_ref().map(|_| "<hidden>"),
            )
            .finish()
    }
}

impl Default for RedisLockOptions {
    fn default() -> Self {
        Self {
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
            abandoned_ttl: None,
            tls_ca: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            min_replicas: 0,
            replica_timeout: DEFAULT_REPLICA_TIMEOUT,
            sentinel_username: None,
            sentinel_password: None,
        }
    }
}

impl RedisLockOptions {
    /// The defaults: prefix `leader-election:`, no expiry, the system's roots, 3 s to connect,
    /// 2 s per answer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the key prefix.
    pub fn with_key_prefix(mut self, key_prefix: impl Into<String>) -> Self {
        self.key_prefix = key_prefix.into();
        self
    }

    /// Lets the key expire `ttl` after the last write.
    pub fn with_abandoned_ttl(mut self, ttl: Duration) -> Self {
        self.abandoned_ttl = Some(ttl);
        self
    }

    /// Checks `rediss://` servers against the certificate authorities in this PEM file.
    pub fn with_tls_ca(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls_ca = Some(path.into());
        self
    }

    /// Sets how long connecting may take.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets how long the server may take to answer one command.
    pub fn with_response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Makes every write wait until `replicas` replicas acknowledged it (see
    /// [`min_replicas`](Self::min_replicas)).
    pub fn with_min_replicas(mut self, replicas: u32) -> Self {
        self.min_replicas = replicas;
        self
    }

    /// Sets how long a write waits for its replicas.
    pub fn with_replica_timeout(mut self, timeout: Duration) -> Self {
        self.replica_timeout = timeout;
        self
    }

    /// Authenticates to the sentinels of a `redis+sentinel://` URL as `username` (`None`:
    /// the default user) with `password`.
    pub fn with_sentinel_auth(
        mut self,
        username: Option<String>,
        password: impl Into<String>,
    ) -> Self {
        self.sentinel_username = username;
        self.sentinel_password = Some(password.into());
        self
    }

    /// Checks the options that do not depend on the URL.
    pub(crate) fn validate(&self) -> LockResult<()> {
        crate::names::check_prefix(&self.key_prefix)?;
        if self.connect_timeout.is_zero() {
            return Err(invalid("connect_timeout must be greater than zero"));
        }
        if self.response_timeout.is_zero() {
            return Err(invalid("response_timeout must be greater than zero"));
        }
        if self.min_replicas > 0 && self.replica_timeout < Duration::from_millis(1) {
            return Err(invalid(
                "replica_timeout must be at least 1ms when min_replicas is set (WAIT takes milliseconds, and 0 would wait forever)",
            ));
        }
        if self.abandoned_ttl.is_some_and(|ttl| ttl.is_zero()) {
            return Err(invalid(
                "abandoned_ttl must be greater than zero (leave it unset to keep the key forever)",
            ));
        }
        Ok(())
    }

    /// Checks that the expiry, if any, is at least twice `lease`, the lease of a record about
    /// to be written.
    pub(crate) fn check_ttl_against(&self, lease: Duration) -> LockResult<()> {
        match self.abandoned_ttl {
            Some(ttl) if ttl < lease.saturating_mul(2) => Err(LockError::InvalidConfig(format!(
                "abandoned_ttl ({ttl:?}) is shorter than twice the lease duration ({lease:?}): the key could expire under a leader that renews normally; raise abandoned_ttl to at least {:?} or leave it unset",
                lease.saturating_mul(2)
            ))),
            _ => Ok(()),
        }
    }

    /// The expiry as whole milliseconds (rounded up, at most about 31 000 years, which Redis
    /// still accepts), 0 for none.
    pub(crate) fn abandoned_ttl_millis(&self) -> u64 {
        const LONGEST: u64 = 1_000_000_000_000_000;
        self.abandoned_ttl.map_or(0, |ttl| {
            u64::try_from(ttl.as_nanos().div_ceil(1_000_000)).map_or(LONGEST, |ms| ms.min(LONGEST))
        })
    }

    /// The longest one lock call may take: it may have to reconnect before it can send, and a
    /// write may wait for its replicas.
    pub(crate) fn call_timeout(&self) -> Duration {
        self.connect_timeout
            .saturating_add(self.response_timeout)
            .saturating_add(self.replica_wait())
    }

    /// How long a write may wait for replicas: the replica timeout, or nothing when none are
    /// required.
    pub(crate) fn replica_wait(&self) -> Duration {
        if self.min_replicas > 0 {
            self.replica_timeout
        } else {
            Duration::ZERO
        }
    }

    /// The replica timeout as whole milliseconds for `WAIT` (rounded up).
    pub(crate) fn replica_timeout_millis(&self) -> u64 {
        u64::try_from(self.replica_timeout.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
    }
}

fn invalid(message: &str) -> LockError {
    LockError::InvalidConfig(message.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_do_not_expire() {
        let options = RedisLockOptions::default();
        assert!(options.validate().is_ok());
        assert_eq!(options.abandoned_ttl_millis(), 0);
        assert_eq!(options.call_timeout(), Duration::from_secs(5));
    }

    #[test]
    fn zero_durations_are_rejected() {
        let zero = Duration::ZERO;
        assert!(RedisLockOptions::new()
            .with_abandoned_ttl(zero)
            .validate()
            .is_err());
        assert!(RedisLockOptions::new()
            .with_connect_timeout(zero)
            .validate()
            .is_err());
        assert!(RedisLockOptions::new()
            .with_response_timeout(zero)
            .validate()
            .is_err());
    }

    #[test]
    fn hole6_a_ttl_below_twice_the_lease_is_refused_with_what_to_change() {
        let lease = Duration::from_secs(15);
        let options = RedisLockOptions::new().with_abandoned_ttl(Duration::from_secs(29));
        let Err(LockError::InvalidConfig(message)) = options.check_ttl_against(lease) else {
            panic!("accepted a TTL below twice the lease");
        };
        assert!(
            message.contains("raise abandoned_ttl to at least 30s"),
            "{message}"
        );
        let options = RedisLockOptions::new().with_abandoned_ttl(Duration::from_secs(30));
        assert!(options.check_ttl_against(lease).is_ok());
        assert!(RedisLockOptions::new().check_ttl_against(lease).is_ok());
    }

    #[test]
    fn waiting_for_replicas_needs_a_timeout_and_lengthens_the_call() {
        let options = RedisLockOptions::new()
            .with_min_replicas(1)
            .with_replica_timeout(Duration::ZERO);
        let Err(LockError::InvalidConfig(message)) = options.validate() else {
            panic!("accepted min_replicas with no time to wait");
        };
        assert!(message.contains("replica_timeout"), "{message}");
        let options = RedisLockOptions::new().with_min_replicas(2);
        assert!(options.validate().is_ok());
        assert_eq!(options.call_timeout(), Duration::from_millis(5_500));
        assert_eq!(options.replica_timeout_millis(), 500);
    }

    #[test]
    fn ttl_rounds_up_to_milliseconds() {
        let options = RedisLockOptions::new().with_abandoned_ttl(Duration::from_micros(1500));
        assert_eq!(options.abandoned_ttl_millis(), 2);
    }
}
