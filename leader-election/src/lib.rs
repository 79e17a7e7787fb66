//! Leader election for Rust services: replicas agree that exactly one of them does the work,
//! and hand that role over fast and safely when the leader stops.
//!
//! Start here:
//! 1. [`open`] a lock from a URL: `file:///run/app/`, `redis://host:6379`,
//!    `etcd://host:2379,host:2379` or `k8s://lease/NAMESPACE` ([`LockUrl`] lists the forms;
//!    each backend is a cargo feature: `file` is on by default, `redis`, `etcd`, `k8s`, `full`).
//! 2. Make a [`LeaderElector`] with an [`ElectionConfig`] (an identity, and client-go's
//!    timings unless you change them).
//! 3. Call [`LeaderElector::run_leading`] with the leader's work and [`shutdown_on_signal`]: the
//!    work starts with every term won and is stopped when the term ends.
//!
//! ```no_run
//! use leader_election::{open, shutdown_on_signal, ElectionConfig, LeaderElector};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let lock = open("redis://127.0.0.1:6379", "reports").await?; // features = ["redis"]
//!     let config = ElectionConfig::new("worker-a").with_release_on_cancel(true);
//!     let elector = LeaderElector::new(lock, config)?;
//!     elector
//!         .run_leading(shutdown_on_signal(), |term| async move {
//!             println!("leading with fencing token {}", term.fencing_token());
//!             std::future::pending::<()>().await // the work, until the term ends
//!         })
//!         .await;
//!     Ok(())
//! }
//! ```
//!
//! Beyond that: [`Leadership`] is one term (its fencing token, [`Leadership::is_leader`] that
//! is never stale, [`Leadership::ended`]); [`LeaderElector::subscribe`] and
//! [`LeaderElector::on_event`] report every [`ElectionEvent`]; [`ElectorHandle`] answers "who
//! leads" and health checks while the election runs; an [`Observer`] follows an election
//! without taking part (reads only, so read-only credentials do). A process that holds many
//! elections (per shard, partition or tenant) opens their locks from one [`Locks`]: one client,
//! one connection and one change watch for all of them. The backends' own crates are re-exported
//! (modules `file`, `redis`, `etcd` and `k8s`, with their features) for their options (key prefixes, TLS files, timeouts)
//! and their shared clients for many elections; [`lock_core`] is there for writing a backend of
//! your own (implement [`Lock`]).
//!
//! The rules that keep two replicas from ever acting at once are in [`lock_core`]'s
//! documentation.

#[cfg(any(feature = "file", feature = "redis", feature = "etcd", feature = "k8s"))]
mod locks;
mod open;
mod open_life;
mod signal;
mod url;

/// Locks for tests: [`testing::MemoryLock`] elects within one process, no server needed.
pub use lock_core::testing;
pub use lock_core::{
    default_identity, ConfigError, ElectionConfig, ElectionEvent, ElectionState, ElectorHandle,
    GaveUp, LeaderElectionRecord, LeaderElector, Leadership, LifeElector, LifeHold, LifeLock,
    LifeRelease, Lock, LockError, LockResult, NoLeader, Observed, ObservedLeader, Observer,
    ObserverConfig, ObserverEvent, RunOutcome, StopReason, Unhealthy, WorkReturned,
};
#[cfg(any(feature = "file", feature = "redis", feature = "etcd", feature = "k8s"))]
pub use locks::Locks;
pub use open::{open, open_url};
pub use open_life::{open_life_url, REDIS_FOR_LIFE_REFUSAL};
pub use signal::shutdown_on_signal;
pub use tokio_util::sync::CancellationToken;
pub use url::{redacted, Backend, LockUrl, UrlError};

/// The core crate: the record, the [`Lock`] trait for backend writers, the elector.
pub use lock_core;

/// Locks in a local file (feature `file`).
#[cfg(feature = "file")]
pub use lock_file as file;

/// Locks on Redis (feature `redis`).
#[cfg(feature = "redis")]
pub use lock_redis as redis;

/// Locks on etcd (feature `etcd`).
#[cfg(feature = "etcd")]
pub use lock_etcd as etcd;

/// Locks on Kubernetes objects (feature `k8s`).
#[cfg(feature = "k8s")]
pub use lock_k8s as k8s;

/// The README's library example, compiled and run as a doc test.
#[cfg(all(doctest, feature = "file"))]
#[doc = include_str!("../../README.md")]
struct ReadmeExample;
