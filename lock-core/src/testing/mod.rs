//! For tests: locks that keep the record in memory or inject faults, and (feature
//! `conformance`) the suite of cases every [`Lock`](crate::Lock) must pass.
//!
//! [`MemoryLock`] is a complete lock in one process: unit tests of code that runs an election
//! need no server. [`FaultyLock`] wraps any lock and fails, delays, conflicts, loses replies or
//! forges hints on command. `conformance` runs the same cases against any backend, so a
//! third-party lock is held to the rules the bundled ones are.

#[cfg(feature = "conformance")]
pub mod conformance;
mod faulty;
mod life;
mod memory;

pub use faulty::{CallCounts, FaultControl, FaultyLock};
pub use life::MemoryLifeLock;
pub use memory::MemoryLock;
