//! Leader election over any compare-and-swap store.
//!
//! `lock-core` holds the parts every backend shares: the [`LeaderElectionRecord`] (client-go's
//! wire format), the [`Lock`] trait that a backend implements (get / create / update with
//! optimistic concurrency on a backend version, plus optional change hints), and the one
//! [`LeaderElector`] that runs the election over any lock. Backends live in their own crates
//! (`lock-file`, `lock-redis`, `lock-etcd`, `lock-k8s`); [`MemoryLock`] keeps the record in
//! memory and [`FaultyLock`] wraps any lock to inject faults in tests.
//!
//! Leadership is a value: each term is a [`Leadership`] with a fencing token that grows with
//! every new term, a cancellation token cancelled the moment the term ends, and an
//! [`is_leader`](Leadership::is_leader) that is never stale.
//!
//! ```
//! use std::time::Duration;
//! use lock_core::{ElectionConfig, ElectionEvent, LeaderElector, MemoryLock, RunOutcome};
//! use tokio_util::sync::CancellationToken;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let lock = MemoryLock::new("orders");
//! let config = ElectionConfig::new("worker-a").with_release_on_cancel(true);
//! let elector = LeaderElector::new(lock.clone(), config).expect("valid configuration");
//! let mut events = elector.subscribe();
//! let cancel = CancellationToken::new();
//! let running = tokio::spawn(elector.run(cancel.clone()));
//!
//! // Wait for the term to start, then do the leader's work until it ends.
//! let term = loop {
//!     if let Some(ElectionEvent::StartedLeading(term)) = events.recv().await {
//!         break term;
//!     }
//! };
//! assert!(term.is_leader());
//! println!("leading with fencing token {}", term.fencing_token());
//!
//! // Shutting down ends the term first, then hands the lock over.
//! cancel.cancel();
//! assert_eq!(running.await.unwrap(), RunOutcome::Cancelled { released: true });
//! assert!(!term.is_leader());
//! assert!(term.cancellation_token().is_cancelled());
//! # }
//! ```

mod backoff;
mod boot_clock;
mod config;
mod elector;
mod error;
mod events;
mod faulty;
mod handle;
mod leadership;
mod lock;
mod memory;
mod record;
mod renew_report;

pub use backoff::{reconnect_backoff, FIRST_RECONNECT_BACKOFF, LONGEST_RECONNECT_BACKOFF};
pub use config::{
    ConfigError, ElectionConfig, DEFAULT_LEASE_DURATION, DEFAULT_RENEW_DEADLINE,
    DEFAULT_RETRY_PERIOD, JITTER_FACTOR, MAX_JITTER_FACTOR, MAX_LEASE_DURATION, MIN_TIMING,
};
pub use elector::{LeaderElector, RunOutcome};
pub use error::{LockError, LockResult};
pub use events::{ElectionEvent, ElectionState, StopReason};
pub use faulty::{CallCounts, FaultControl, FaultyLock};
pub use handle::{ElectorHandle, Unhealthy};
pub use leadership::Leadership;
pub use lock::{Hint, HintStream, Lock, Version, Versioned};
pub use memory::MemoryLock;
pub use record::LeaderElectionRecord;
pub use renew_report::{RenewOutcome, RenewReport};
