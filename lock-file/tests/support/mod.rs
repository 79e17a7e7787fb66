//! Helpers shared by the file backend's integration tests.

use lock_core::LeaderElectionRecord;

/// A record held by `holder` for 15 s with the given fencing token.
pub fn record(holder: &str, token: i32) -> LeaderElectionRecord {
    LeaderElectionRecord {
        holder_identity: holder.into(),
        lease_duration_seconds: 15,
        leader_transitions: token,
        ..Default::default()
    }
}

/// The wall clock in microseconds, the unit the file backend's first versions use.
#[allow(dead_code)] // each test file compiles this module, and not every one uses this
pub fn clock_micros() -> u64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970");
    u64::try_from(since.as_micros()).expect("microseconds fit in u64 until the year 586912")
}
