//! Leader election over Redis: the election record under one key, compare-and-swap by a
//! server-side Lua script, change hints over pub/sub.
//!
//! [`RedisLock`] implements [`lock_core::Lock`], so the one
//! [`LeaderElector`](lock_core::LeaderElector) runs over it like over any other lock.
//! [`RedisLock::connect`] makes a lock for one election; a process that takes part in many
//! elections makes one [`RedisClient`] and calls [`RedisClient::lock`] for each, so that all
//! of them share one command connection and one pub/sub connection (see the example there).
//!
//! - **One key per election**: the hash `leader-election:{orders}` (the prefix is
//!   [configurable](RedisLockOptions::key_prefix)) holds the record as client-go's JSON and a
//!   version counter kept by the server. The name sits in a Redis Cluster hash tag.
//! - **Atomic on the server**: `create` and `update` are one `EVALSHA` of one
//!   [script](SCRIPT_SOURCE) that compares the version, writes, optionally sets an expiry for
//!   abandoned elections and announces the write; values that are not records are reported as
//!   [`Corrupt`](lock_core::LockError::Corrupt) and never overwritten.
//! - **Hints, not truth**: [`watch`](lock_core::Lock::watch) subscribes to the key's channel on
//!   the client's one pub/sub connection, which every watch of the client's elections shares,
//!   and resubscribes after every disconnect. One keep-alive `PING` a minute per client
//!   notices a connection that died without closing.
//! - **Many elections, two connections**: the locks that one [`RedisClient`] makes share its
//!   multiplexed command connection and its pub/sub connection, whether there is one election
//!   or ten thousand.
//! - **Secure deployments**: `rediss://` URLs use rustls (with a custom CA file if needed),
//!   users and passwords go in the URL, and [`acl_setuser_line`] prints the least an ACL user
//!   needs.
//!
//! ```no_run
//! use lock_core::{ElectionConfig, ElectionEvent, LeaderElector, Lock};
//! use lock_redis::{RedisLock, RedisLockOptions};
//! use tokio_util::sync::CancellationToken;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let options = RedisLockOptions::default().with_tls_ca("/etc/redis/ca.pem");
//! let lock = RedisLock::connect_with(
//!     "rediss://elector:secret@redis.internal:6380",
//!     "orders",
//!     options,
//! )
//! .await?;
//! println!("electing on {}", lock.describe());
//!
//! let elector = LeaderElector::new(lock, ElectionConfig::new("worker-a"))?;
//! let mut events = elector.subscribe();
//! let cancel = CancellationToken::new();
//! tokio::spawn(elector.run(cancel.clone()));
//! while let Some(event) = events.recv().await {
//!     if let ElectionEvent::StartedLeading(term) = event {
//!         println!("leading with fencing token {}", term.fencing_token());
//!     }
//! }
//! # Ok(())
//! # }
//! ```

mod acl;
mod client;
mod connection;
mod errors;
mod hints;
mod hub;
mod inbox;
mod lock;
mod names;
mod options;
mod script;
mod subscriptions;

pub use acl::{acl_rules, acl_setuser_line, ACL_COMMANDS};
pub use client::RedisClient;
pub use lock::RedisLock;
pub use options::{
    RedisLockOptions, DEFAULT_CONNECT_TIMEOUT, DEFAULT_KEY_PREFIX, DEFAULT_RESPONSE_TIMEOUT,
};
pub use script::SCRIPT_SOURCE;
