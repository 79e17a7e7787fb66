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
#[derive(Clone, Debug, PartialEq, Eq)]
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
    /// response_timeout`.
    pub response_timeout: Duration,
}

impl Default for RedisLockOptions {
    fn default() -> Self {
        Self {
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
            abandoned_ttl: None,
            tls_ca: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
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

    /// Checks the options that do not depend on the URL.
    pub(crate) fn validate(&self) -> LockResult<()> {
        crate::names::check_prefix(&self.key_prefix)?;
        if self.connect_timeout.is_zero() {
            return Err(invalid("connect_timeout must be greater than zero"));
        }
        if self.response_timeout.is_zero() {
            return Err(invalid("response_timeout must be greater than zero"));
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

    /// The longest one lock call may take: it may have to reconnect before it can send.
    pub(crate) fn call_timeout(&self) -> Duration {
        self.connect_timeout.saturating_add(self.response_timeout)
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
    fn ttl_rounds_up_to_milliseconds() {
        let options = RedisLockOptions::new().with_abandoned_ttl(Duration::from_micros(1500));
        assert_eq!(options.abandoned_ttl_millis(), 2);
    }
}
