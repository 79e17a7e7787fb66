//! Server harnesses and process-level tests of the demo. The conformance suite every backend
//! runs lives in `lock_core::testing::conformance` (feature `conformance`); this crate's test
//! files run it on real servers with one line each:
//!
//! ```text
//! lock_core::conformance_suite!(MyBackend::start());
//! ```
//!
//! For fault tests on real processes: [`proxy`] puts a loopback TCP proxy that the test can
//! cut, heal and reset between one `demo` instance and its server; [`fault_cluster`] starts
//! several instances that way and samples their HTTP answers; [`history`] checks what they
//! said (no two leaders, growing tokens, no stale answer, a leader soon after a heal);
//! [`campaign`] injects every kind of fault, one after another from a seeded schedule, on
//! every backend, and turns the histories into the figures of RELIABILITY.md.

pub mod access;
pub mod campaign;
pub mod clock;
pub mod demo;
pub mod driver;
pub mod failover;
pub mod fault_cluster;
pub mod go;
pub mod handover;
pub mod hint_end;
pub mod history;
pub mod observer_lines;
pub mod observing;
pub mod operator_lib;
pub mod outage;
pub mod proxy;
pub mod redis_clients;
pub mod servers;
pub mod walkthrough;
