//! For backend writers: what a [`Lock`] implementation needs beyond the user API.
//!
//! A backend stores one [`LeaderElectionRecord`] per election and implements [`Lock`]: `get`,
//! `create` and `update` with compare-and-swap on an opaque [`Version`], and optionally
//! `watch` for change [`Hint`]s that wake standbys early. Errors are [`LockError`]s, whose
//! variants tell the elector what to retry. A backend that keeps a connection shares it through a [`LazyClient`] and
//! reconnects its watches with [`reconnect_backoff`]; one whose elections share a server-side
//! watch keeps their streams in a [`Fanout`], which hands each its hints through an [`Inbox`]. The cases of [`testing::conformance`](crate::testing) (feature
//! `conformance`) check a backend against the contract.

pub use crate::backoff::{reconnect_backoff, FIRST_RECONNECT_BACKOFF, LONGEST_RECONNECT_BACKOFF};
pub use crate::error::{LockError, LockResult};
pub use crate::fanout::{Fanout, Member, WatchTask};
pub use crate::inbox::{Inbox, INBOX_CAPACITY};
pub use crate::lazy_client::{LazyClient, Made};
pub use crate::lock::{Hint, HintStream, Lock, Version, Versioned};
pub use crate::names::{check_election_name, check_key_prefix};
pub use crate::record::LeaderElectionRecord;
