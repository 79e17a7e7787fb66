//! The boot clock: time since boot, counting the time the machine was suspended.
//!
//! Tokio's clock (`CLOCK_MONOTONIC` on Linux) stops while the machine sleeps. A leader whose
//! laptop or VM was suspended for a minute would wake with its term still valid by that clock,
//! although the other candidates' clocks ran on and one of them may lead by now. A term
//! therefore also checks `CLOCK_BOOTTIME`, which keeps counting through a suspend. Tokio's
//! clock stays the one the elector sleeps on (tests pause it); the boot clock only ever makes a
//! term end sooner.

use std::time::Duration;

/// Time since boot including suspend, where the platform has such a clock.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn now() -> Option<Duration> {
    let time = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).ok()?;
    Some(Duration::from(time))
}

/// Time since boot including suspend: not available on this platform, where a term relies on
/// the monotonic clock alone (documented on [`Leadership`](crate::Leadership)).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn now() -> Option<Duration> {
    None
}
