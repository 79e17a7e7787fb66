//! The conformance suite every lock backend passes, and process-level tests of the demo.
//!
//! [`conformance`] holds the suite: cases written once against [`lock_core::Lock`] and the
//! elector, and the [`conformance_suite!`] macro with which a backend's test file runs all of
//! them in one line:
//!
//! ```text
//! lock_tests::conformance_suite!(MyBackend::start());
//! ```

pub mod access;
pub mod conformance;
pub mod demo;
pub mod driver;
pub mod failover;
pub mod go;
pub mod hint_end;
pub mod outage;
pub mod relay;
pub mod servers;
