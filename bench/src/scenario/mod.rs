//! The benchmark's scenarios, each over one backend and one variant.

pub mod crash;
pub mod fleet;
pub mod handover;
pub mod load;
pub mod many;
pub mod planned;
pub mod takeover;
pub mod topology;

use std::sync::atomic::{AtomicU64, Ordering};

/// A name no other election of this run has.
pub fn unique(scenario: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let run = std::process::id();
    format!(
        "bench-{scenario}-{run}-{}",
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
