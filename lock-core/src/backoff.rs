//! How long a backend's hint stream waits before it reconnects after a failure.

use std::time::Duration;

/// The first wait after a failure.
pub const FIRST_RECONNECT_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait: a backend that comes back is noticed within this much.
pub const LONGEST_RECONNECT_BACKOFF: Duration = Duration::from_secs(2);

/// The wait before attempt `failures + 1` to re-establish a watch: 100 ms, doubling with each
/// failure in a row, at most 2 s. Hint streams of backends use it so that a server that comes
/// back is watched again quickly without being hammered while it is down.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(lock_core::backend::reconnect_backoff(1), Duration::from_millis(100));
/// assert_eq!(lock_core::backend::reconnect_backoff(3), Duration::from_millis(400));
/// assert_eq!(lock_core::backend::reconnect_backoff(99), Duration::from_secs(2));
/// ```
pub fn reconnect_backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(8);
    FIRST_RECONNECT_BACKOFF
        .saturating_mul(1 << doublings)
        .min(LONGEST_RECONNECT_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_two_seconds() {
        assert_eq!(reconnect_backoff(0), Duration::from_millis(100));
        assert_eq!(reconnect_backoff(1), Duration::from_millis(100));
        assert_eq!(reconnect_backoff(2), Duration::from_millis(200));
        assert_eq!(reconnect_backoff(5), Duration::from_millis(1600));
        assert_eq!(reconnect_backoff(6), LONGEST_RECONNECT_BACKOFF);
        assert_eq!(reconnect_backoff(u32::MAX), LONGEST_RECONNECT_BACKOFF);
    }
}
