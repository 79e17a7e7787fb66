//! [`RedisClient`]: one Redis server and two connections to it, shared by the locks of any
//! number of elections.

use std::fmt;
use std::sync::Arc;

use lock_core::LockResult;

use crate::session::Session;
use crate::{RedisLock, RedisLockOptions};

/// A client for one Redis server that makes the [locks](RedisLock) of many elections, all
/// sharing **one command connection and one pub/sub connection**.
///
/// A process that takes part in many elections (one per shard, tenant or job, say) makes one
/// client and calls [`lock`](Self::lock) for each election: ten thousand elections cost two
/// connections to the server, not twenty thousand, and the keep-alive that notices a dead
/// pub/sub connection is one `PING` a minute, whatever the number of elections.
///
/// - Every lock's `get`, `create` and `update` is multiplexed on the one command connection,
///   which is made on first use and made again after it breaks.
/// - Every [`watch`](lock_core::Lock::watch) is served by the client's hub: one tokio task that
///   subscribes each watched election's channel once, hands each announcement to that
///   election's watches and unsubscribes when the last watch of an election is dropped. When
///   the connection is lost (or a `SUBSCRIBE` refused) the watches it served end, so that
///   their electors poll; their next watches connect again. The connection exists only while
///   something is watched; the task starts with the first watch and ends when the client, its
///   locks and their watches are all dropped.
///
/// Clones are cheap and share everything. [`RedisLock::connect`] and [`RedisLock::new`] make a
/// client of their own for a single election.
///
/// ```no_run
/// use lock_core::{ElectionConfig, LeaderElector, Lock};
/// use lock_redis::{RedisClient, RedisLockOptions};
/// use tokio_util::sync::CancellationToken;
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let client = RedisClient::connect("redis://127.0.0.1:6379", RedisLockOptions::default()).await?;
/// let cancel = CancellationToken::new();
/// for shard in 0..10_000 {
///     // leader-election:{shard-0}, leader-election:{shard-1}, ...: two connections in all.
///     let lock = client.lock(&format!("shard-{shard}"))?;
///     println!("electing on {}", lock.describe());
///     let elector = LeaderElector::new(lock, ElectionConfig::new("worker-a"))?;
///     tokio::spawn(elector.run(cancel.clone()));
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisClient {
    inner: Arc<Session>,
}

impl RedisClient {
    /// Makes the client without contacting the server: the connections are made when the
    /// first lock call or watch needs them (and made again later while they fail).
    ///
    /// `url` is `redis://[user[:password]@]host[:port][/db]`, or `rediss://…` for TLS. Fails
    /// only for a bad URL or option, or an unreadable [`tls_ca`](RedisLockOptions::tls_ca)
    /// file, as [`InvalidConfig`](lock_core::LockError::InvalidConfig).
    pub fn new(url: &str, options: RedisLockOptions) -> LockResult<Self> {
        Ok(Self {
            inner: Arc::new(Session::new(url, options)?),
        })
    }

    /// Makes the client and its command connection: fails as
    /// [`Unavailable`](lock_core::LockError::Unavailable) when the server cannot be reached and
    /// [`Forbidden`](lock_core::LockError::Forbidden) when it refuses the credentials, besides
    /// what [`new`](Self::new) checks.
    pub async fn connect(url: &str, options: RedisLockOptions) -> LockResult<Self> {
        let client = Self::new(url, options)?;
        client.inner.check(&client.inner.errors).await?;
        Ok(client)
    }

    /// The lock of the election `name`, on this client's connections. Nothing is sent; fails
    /// only for a bad name, as [`InvalidConfig`](lock_core::LockError::InvalidConfig).
    pub fn lock(&self, name: &str) -> LockResult<RedisLock> {
        RedisLock::on_session(self.inner.clone(), name)
    }

    /// The server, as `redis://user@host:port` (or `rediss://`; never the password).
    pub fn describe(&self) -> &str {
        &self.inner.server
    }

    /// The options every lock of this client uses.
    pub fn options(&self) -> &RedisLockOptions {
        &self.inner.options
    }
}

impl RedisLock {
    /// The client whose connections the lock uses: its [`lock`](RedisClient::lock) makes the
    /// locks of other elections on the same connections.
    pub fn client(&self) -> RedisClient {
        RedisClient {
            inner: self.session().clone(),
        }
    }
}

impl fmt::Debug for RedisClient {
    // Written by hand: the client's connection info holds the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisClient")
            .field("server", &self.inner.server)
            .field("options", &self.inner.options)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lock_core::{Lock, LockError};

    #[test]
    fn locks_of_one_client_name_their_election_and_share_the_client() {
        let client = RedisClient::new(
            "redis://alice:secret@127.0.0.1:6380",
            RedisLockOptions::default(),
        )
        .unwrap();
        assert_eq!(client.describe(), "redis://alice@127.0.0.1:6380");
        let orders = client.lock("orders").unwrap();
        let billing = client.lock("billing").unwrap();
        assert_eq!(
            orders.describe(),
            "redis://alice@127.0.0.1:6380/leader-election:{orders}"
        );
        assert_eq!(billing.key(), "leader-election:{billing}");
        assert!(Arc::ptr_eq(&orders.client().inner, &billing.client().inner));
        assert!(Arc::ptr_eq(&orders.client().inner, &client.inner));
    }

    #[test]
    fn debug_never_shows_the_password() {
        let client =
            RedisClient::new("redis://u:hunter2@127.0.0.1:1", RedisLockOptions::default()).unwrap();
        let lock = client.lock("a").unwrap();
        for text in [format!("{client:?}"), format!("{lock:?}")] {
            assert!(!text.contains("hunter2"), "{text}");
            assert!(text.contains("redis://u@127.0.0.1:1"), "{text}");
        }
    }

    #[test]
    fn bad_urls_names_and_options_are_invalid_config() {
        let invalid =
            |err: LockError| assert!(matches!(err, LockError::InvalidConfig(_)), "{err:?}");
        let options = RedisLockOptions::default();
        invalid(RedisClient::new("http://x:1", options.clone()).unwrap_err());
        invalid(
            RedisClient::new("redis://x:1", options.clone().with_key_prefix("a{b}")).unwrap_err(),
        );
        let client = RedisClient::new("redis://x:1", options).unwrap();
        invalid(client.lock("").unwrap_err());
        invalid(client.lock("a{b}").unwrap_err());
    }

    #[tokio::test]
    async fn connect_reports_an_unreachable_server() {
        let options = RedisLockOptions::default()
            .with_connect_timeout(std::time::Duration::from_millis(300))
            .with_response_timeout(std::time::Duration::from_millis(300));
        let err = RedisClient::connect("redis://127.0.0.1:1", options)
            .await
            .unwrap_err();
        assert!(matches!(err, LockError::Unavailable { .. }), "{err:?}");
        assert!(err.to_string().contains("redis://127.0.0.1:1"), "{err}");
    }
}
