//! The election timings every elector case uses, and the configurations built from them.

use std::time::Duration;

use crate::ElectionConfig;

/// The lease the cases use: how long a standby waits after it observed the last renew.
pub const LEASE: Duration = Duration::from_secs(4);
/// The renew deadline the cases use: how long a leader leads after its last renew was sent.
pub const RENEW_DEADLINE: Duration = Duration::from_secs(3);
/// The retry period the cases use: how often the leader renews (and a standby would poll).
pub const RETRY_PERIOD: Duration = Duration::from_secs(2);

/// A configuration for `identity` with the suite's timings, rejoin on, release off.
pub fn config(identity: &str) -> ElectionConfig {
    ElectionConfig::new(identity)
        .with_lease_duration(LEASE)
        .with_renew_deadline(RENEW_DEADLINE)
        .with_retry_period(RETRY_PERIOD)
        .with_rejoin(true)
}

/// Like [`config`], and releasing the lock when cancelled.
pub fn releasing_config(identity: &str) -> ElectionConfig {
    config(identity).with_release_on_cancel(true)
}
