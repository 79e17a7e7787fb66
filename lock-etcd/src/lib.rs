//! Leader election over etcd: the election record under one key, compare-and-swap by
//! transactions on the key's `mod_revision`, change hints from etcd's watch.
//!
//! [`EtcdLock`] implements [`lock_core::Lock`], so the one
//! [`LeaderElector`](lock_core::LeaderElector) runs over it like over any other lock.
//!
//! - **One key per election**: `leader-election/orders` (the prefix is
//!   [configurable](EtcdLockOptions::key_prefix)) holds the record as client-go's JSON, so
//!   `etcdctl get leader-election/orders` shows who leads. Its version is the key's
//!   `mod_revision`, which only grows, also across server restarts.
//! - **Atomic on the server**: `create` and `update` are one transaction each, comparing
//!   `create_revision` or `mod_revision`; values that are not records are reported as
//!   [`Corrupt`](lock_core::LockError::Corrupt) and never overwritten.
//! - **Hints, not truth**: [`watch`](lock_core::Lock::watch) streams etcd's watch events for the
//!   key; it ends when the watch fails or the connection is lost (an open stream is trusted to
//!   be live), and the elector polls and watches again.
//! - **Many elections, one watch**: the locks of one [`EtcdClient`] share its connection and one
//!   watch on the key prefix, which hands each lock the events of its key: a process that
//!   elects per shard puts one watch on the server, not one per election.
//! - **Tokens that survive a deletion**: [`token_floor`](lock_core::Lock::token_floor) is the
//!   store's revision plus one, above every `leaderTransitions` the key ever carried.
//! - **Oversized values**: a value above the client's 4 MiB message limit is reported as
//!   [`Corrupt`](lock_core::LockError::Corrupt), naming its size and the limit.
//! - **Bounded calls**: every request has a [timeout](EtcdLockOptions::request_timeout) well
//!   below the elector's renew deadline.
//! - **Leader-for-life**: [`EtcdLifeLock`] binds the key to an etcd lease this process keeps
//!   alive, for [`LifeElector`](lock_core::LifeElector): leadership lasts while the session
//!   does.
//! - **Secure deployments**: TLS with a custom CA and client certificates, and etcd users
//!   (whose role needs `readwrite` on the prefix: [`etcdctl_grant_line`]).
//!
//! ```no_run
//! use lock_core::{ElectionConfig, ElectionEvent, LeaderElector, Lock};
//! use lock_etcd::{EtcdLock, EtcdLockOptions};
//! use tokio_util::sync::CancellationToken;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let options = EtcdLockOptions::default()
//!     .with_tls_ca("/etc/etcd/ca.pem")
//!     .with_client_identity("/etc/etcd/client.pem", "/etc/etcd/client-key.pem")
//!     .with_user("elector", "secret");
//! let endpoints = ["https://etcd-0.internal:2379", "https://etcd-1.internal:2379"];
//! let lock = EtcdLock::connect(&endpoints, "orders", options).await?;
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

mod client;
mod connection;
mod errors;
mod floor;
mod hints;
mod hub;
mod keep_alive;
mod life;
mod lock;
mod names;
mod options;
mod permissions;
mod session;
mod transactions;
mod vouched;

pub use client::EtcdClient;
pub use life::{EtcdLifeLock, MIN_SESSION_TTL};
pub use lock::EtcdLock;
pub use options::{
    ClientIdentity, Credentials, EtcdLockOptions, DEFAULT_CONNECT_TIMEOUT, DEFAULT_KEY_PREFIX,
    DEFAULT_REQUEST_TIMEOUT,
};
pub use permissions::etcdctl_grant_line;
