//! Leader election over any compare-and-swap store.
//!
//! `lock-core` holds the parts every backend shares: the [`LeaderElectionRecord`] (client-go's
//! wire format), the [`Lock`] trait that a backend implements (get / create / update with
//! optimistic concurrency on a backend version, plus optional change hints), and the one
//! [`LeaderElector`] that runs the election over any lock. Backends live in their own crates
//! (`lock-file`, `lock-redis`, `lock-etcd`, `lock-k8s`); applications use them through the
//! `leader-election` crate.
//!
//! The root of this crate is the user API. [`backend`] holds what a backend writer needs besides
//! (versions, hints, the reconnect back-off); [`testing`] holds
//! [`MemoryLock`](testing::MemoryLock), the fault-injecting [`FaultyLock`](testing::FaultyLock)
//! and, behind the `conformance` feature, the suite every backend runs.
//!
//! To follow an election without taking part (a dashboard, a router that sends work to the
//! leader), an [`Observer`] reports every change of leader and term from reads alone: it
//! never writes, so read-only credentials do.
//!
//! Leadership is a value: each term is a [`Leadership`] with a fencing token that grows with
//! every new term, a cancellation token cancelled the moment the term ends, and an
//! [`is_leader`](Leadership::is_leader) that is never stale.
//!
//! # The safety rules the elector keeps
//!
//! Exactly one candidate may act at a time, and fencing tokens only grow, whatever a store, a
//! network, a scheduler or another writer does. Each rule has a regression test in
//! `lock-core/tests/safety_holes.rs`, `elector_paused_clock.rs` or `review_attacks.rs`:
//!
//! - **Expiry is judged on the local clock.** A standby waits the holder's
//!   `leaseDurationSeconds` from when it *observed* the record change; a leader is leader until
//!   the *send* time of its last successful renew plus the renew deadline, which is shorter.
//!   On Linux a term also checks `CLOCK_BOOTTIME`, so a machine woken from a suspend does not
//!   think its term still runs.
//! - **A vanished record is not a free lock.** A candidate that saw a record and then sees none
//!   waits a full lease from when it first saw the absence (its own, or the last holder's if
//!   longer, up to four of its own): a leader cut off from the store may still work until its
//!   renew deadline. A candidate that never saw a record creates it at once. A create over a
//!   vanished record is trusted only where the backend's [`Lock::token_floor`] shows nothing
//!   but that create happened since the absence began; otherwise the created record is held
//!   for a lease before its term starts (a record may have come and gone unseen).
//! - **Tokens never go back.** A new term's token is above the replaced record's
//!   `leaderTransitions`, above every token this candidate read on the lock and wrote, above
//!   the tokens hints carried unless that would make every term impossible, and, for a new
//!   record, at least the backend's [`Lock::token_floor`] (etcd's revision survives a deletion;
//!   see each backend for what does not).
//! - **Only our own writes are ours.** A term's record carries a random microsecond mark in
//!   `acquireTime`; adopting a write whose reply was lost, renewing on the slow path and
//!   releasing all require that exact mark, so another process with the same identity (a
//!   twin) never shares a term. A record naming this identity without the mark is waited for
//!   like any other holder's, and reported. An adopted write obeys what was written over it
//!   before the read that found it, as a running term would: a shortened lease starts no term,
//!   a handover request ends the term at once.
//! - **Outside writes end a term at once.** A leader checks with a read as soon as a hint says
//!   the record may have been written by someone else, and ends its term within milliseconds
//!   if it is no longer its own (or carries its mark with a shorter lease). A hint alone never
//!   ends it: hints can be forged. Editing or deleting the record by hand is a forced handover;
//!   the overlap left is the time until the leader hears of it (a hint, or its next renew when
//!   hints are down: at most a retry period; its renew deadline when it is cut off).
//! - **Every answer to "who leads" is as fresh as `is_leader()`.**
//!   [`ElectorHandle::leader`] names this candidate only while its term is valid by the clock,
//!   and another holder only while the lease observed for it has not run out.
//! - **Hints may make a standby act sooner, never wait without bound, never act wrongly.** A
//!   hint stream that ends (backends end it on errors) turns the standby to polling until it is
//!   back; however quiet the hints, a standby confirms by a read once a minute, and a read of a
//!   record an earlier read showed keeps its first-seen time; a takeover only a hint allows is
//!   confirmed by a read; a hint older than what is known is checked by a read.
//! - **Timings are sane.** Every timing lies between [`MIN_TIMING`] and
//!   [`MAX_LEASE_DURATION`], checked before any arithmetic, besides client-go's rules.
//!
//! ```
//! use std::time::Duration;
//! use lock_core::testing::MemoryLock;
//! use lock_core::{ElectionConfig, ElectionEvent, LeaderElector, RunOutcome};
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

pub mod backend;
mod backoff;
mod boot_clock;
mod config;
mod elector;
mod error;
mod events;
mod fanout;
pub mod for_life;
mod handover;
mod identity;
mod inbox;
mod lazy_client;
mod leadership;
mod lock;
mod names;
mod observer;
mod record;
mod renew_report;
pub mod testing;

pub use config::{
    ConfigError, ElectionConfig, DEFAULT_LEASE_DURATION, DEFAULT_RENEW_DEADLINE,
    DEFAULT_RETRY_PERIOD, JITTER_FACTOR, MAX_JITTER_FACTOR, MAX_LEASE_DURATION, MIN_TIMING,
};
pub use elector::{
    ElectorHandle, GaveUp, LeaderElector, RunOutcome, Unhealthy, UnreadyLeader, WorkReturned,
    RESTART_BACKOFF,
};
pub use error::{LockError, LockResult};
pub use events::{ElectionEvent, ElectionState, StopReason};
pub use for_life::{HoldDeadline, LifeElector, LifeHold, LifeLock, LifeRelease};
pub use handover::{request_handover, HandoverError, HandoverRequest, HANDOVER_STRATEGY};
pub use identity::default_identity;
pub use leadership::Leadership;
pub use lock::Lock;
pub(crate) use lock::{Hint, HintStream, Version, Versioned};
pub use observer::{
    NoLeader, Observed, ObservedLeader, Observer, ObserverConfig, ObserverEvent,
    DEFAULT_READ_TIMEOUT,
};
pub use record::LeaderElectionRecord;
pub use renew_report::{RenewOutcome, RenewReport};
