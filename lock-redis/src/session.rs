//! The session of a client: the command connection, the pub/sub hub and the options, shared
//! by the client and every lock it makes. Locks and their hint streams sit on top of this
//! module; it imports neither.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use lock_core::LockResult;
use redis::RedisResult;

use crate::connection::{Connection, SharedConnection, Target};
use crate::errors::{is_authentication_failure, is_server_gone, ErrorContext};
use crate::hub::{Hub, HubSettings};
use crate::shards::ShardHubs;
use crate::RedisLockOptions;

/// What a client and all its locks share.
pub(crate) struct Session {
    /// Where the connections go.
    pub target: Arc<Target>,
    /// The command connection.
    pub connection: SharedConnection,
    /// The pub/sub connection and the watches it serves (not used on a Redis Cluster).
    pub hub: Hub,
    /// On a Redis Cluster: a hub per node, for sharded pub/sub.
    pub shard_hubs: ShardHubs,
    /// What the shard hubs are made from.
    hub_template: HubSettings,
    pub options: RedisLockOptions,
    /// The server's human name, as `redis://user@host:port` (never the password).
    pub server: String,
    /// Error context naming the server (a lock has its own that names the lock).
    pub errors: ErrorContext,
}

impl Session {
    /// Makes the session without contacting the server; see
    /// [`RedisClient::new`](crate::RedisClient::new).
    pub fn new(url: &str, options: RedisLockOptions) -> LockResult<Self> {
        options.validate()?;
        let target = Arc::new(Target::new(url, &options)?);
        let server = target.describe();
        let errors = ErrorContext {
            lock: server.clone(),
            user: target.user(),
            key_prefix: options.key_prefix.clone(),
            address: target.address(),
            tls: target.tls(),
        };
        let hub_template = HubSettings {
            target: target.clone(),
            sharded: false,
            connect_timeout: options.connect_timeout,
            response_timeout: options.response_timeout,
            keepalive: crate::hub::KEEPALIVE,
            server: server.clone(),
            errors: errors.clone(),
        };
        let hub = Hub::new(hub_template.clone());
        let connection = SharedConnection::new(target.clone(), &options);
        Ok(Self {
            target,
            shard_hubs: ShardHubs::default(),
            hub_template,
            connection,
            hub,
            options,
            server,
            errors,
        })
    }

    /// The hub that serves `channel`: the client's one hub, or on a Redis Cluster the hub of
    /// the node that serves the channel's slot now (`None` when that cannot be learnt).
    pub async fn hub_for(&self, channel: &str) -> Option<Arc<Hub>> {
        let cluster = self.target.cluster()?;
        let slot_map = || async {
            self.call(&self.errors, true, |mut connection| async move {
                redis::cmd("CLUSTER")
                    .arg("SLOTS")
                    .query_async::<redis::Value>(&mut connection)
                    .await
            })
            .await
            .map_err(|err| tracing::debug!(server = %self.server, error = %err, "cannot read the cluster's slots for change hints"))
            .ok()
        };
        self.shard_hubs
            .hub_for(channel, cluster, &self.hub_template, slot_map)
            .await
    }

    /// Makes sure the command connection is there (connecting and authenticating now if not).
    pub async fn check(&self, errors: &ErrorContext) -> LockResult<()> {
        self.call(errors, false, |_connection| async { Ok(()) })
            .await
    }

    /// Runs one call on the command connection within the call timeout, mapping its errors
    /// with `errors`.
    ///
    /// With `retry_lost_connection` (for reads only, which may run twice) a call that finds
    /// the connection lost runs once more on the connection made in its place: after a server
    /// restart the first call notices the old connection is gone.
    pub async fn call<T, F, Fut>(
        &self,
        errors: &ErrorContext,
        retry_lost_connection: bool,
        work: F,
    ) -> LockResult<T>
    where
        F: Fn(Connection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let limit = self.options.call_timeout();
        // The generation of the connection the work last ran on (0: none), so that a refused
        // login drops that connection and not one another call made since.
        let used = AtomicU64::new(0);
        let attempt = async {
            let result = match self.connection.get().await {
                Ok(made) => {
                    used.store(made.generation, Ordering::Relaxed);
                    work(made.client).await
                }
                Err(err) => Err(err),
            };
            match result {
                Err(err) if retry_lost_connection && err.is_unrecoverable_error() => {
                    tracing::debug!(lock = %errors.lock, error = %err, "connection lost; trying once more");
                    if self.target.follows_failovers() {
                        // Not to the same address again: ask the sentinels.
                        self.connection.reset(used.load(Ordering::Relaxed)).await;
                    }
                    let made = self.connection.get().await?;
                    used.store(made.generation, Ordering::Relaxed);
                    work(made.client).await
                }
                other => other,
            }
        };
        match tokio::time::timeout(limit, attempt).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => {
                let generation = used.load(Ordering::Relaxed);
                let wrong_server = self.target.follows_failovers() && is_server_gone(&err);
                if (is_authentication_failure(&err) || wrong_server) && generation != 0 {
                    self.connection.reset(generation).await;
                }
                Err(errors.map(err))
            }
            Err(_) => {
                // The connection may be dead without having closed (a cut with no reset): make
                // a new one next time rather than wait for the kernel to give up on it.
                let generation = used.load(Ordering::Relaxed);
                if generation != 0 {
                    self.connection.reset(generation).await;
                }
                Err(errors.timed_out(limit))
            }
        }
    }
}
