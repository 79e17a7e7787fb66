//! The conformance suite: every case written once against [`Lock`](crate::Lock) and the elector,
//! run by each backend with one line.
//!
//! A backend's test file implements [`Backend`] (fresh lock handles on a named election, and raw
//! access to the stored value) and calls [`conformance_suite!`](crate::conformance_suite) with
//! an expression that evaluates to a future of that backend. The macro expands to one
//! `#[tokio::test]` per case, each on a fresh backend and a unique election name, so every case
//! shows up by name in `cargo test`:
//!
//! ```
//! use std::sync::Arc;
//!
//! use lock_core::Lock;
//! use lock_core::testing::MemoryLock;
//! use lock_core::testing::conformance::Backend;
//!
//! /// One election, in memory (a real backend would start a server on a free port here).
//! struct OneElection(MemoryLock);
//!
//! #[async_trait::async_trait]
//! impl Backend for OneElection {
//!     async fn lock(&self, _name: &str) -> Arc<dyn Lock> {
//!         Arc::new(self.0.clone())
//!     }
//!     async fn write_raw(&self, _name: &str, bytes: &[u8]) {
//!         self.0.set_raw(bytes);
//!     }
//!     async fn read_raw(&self, _name: &str) -> Option<Vec<u8>> {
//!         self.0.raw()
//!     }
//! }
//!
//! // In a test file, this line is the whole suite: one #[tokio::test] per case.
//! lock_core::conformance_suite!(async { OneElection(MemoryLock::new("example")) });
//! # fn main() {}
//! ```
//!
//! [`lock_cases`] check the lock contract (reads, creates, compare-and-swap updates, corrupt
//! values); [`elector_cases`] run real electors on the backend with a 4 s lease, a 3 s renew
//! deadline and a 2 s retry period, in real time.

mod backend;
mod candidate;
pub mod elector_cases;
mod intervals;
pub mod lock_cases;
mod macros;
mod names;
mod sampler;
mod timing;

use std::future::Future;
use std::time::Duration;

pub use backend::{Backend, Capabilities};
pub use candidate::{Candidate, STOP_LIMIT};
pub use intervals::{Interval, LeadershipLog};
pub use names::unique_name;
pub use sampler::{sample_leaders, LeaderSamples};
pub use timing::{config, releasing_config, LEASE, RENEW_DEADLINE, RETRY_PERIOD};

/// The longest any one case may run before it is failed.
pub const CASE_LIMIT: Duration = Duration::from_secs(120);

/// Runs one case, failing it if it takes longer than [`CASE_LIMIT`].
pub async fn within_case_limit(case: &str, body: impl Future<Output = ()>) {
    if tokio::time::timeout(CASE_LIMIT, body).await.is_err() {
        panic!("the case {case} did not finish within {CASE_LIMIT:?}");
    }
}
