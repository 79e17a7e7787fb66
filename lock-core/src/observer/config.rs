//! How an observer reads: how often, how long it waits for an answer, whether it uses hints.

use std::time::Duration;

use crate::{ConfigError, DEFAULT_RETRY_PERIOD, MAX_LEASE_DURATION, MIN_TIMING};

/// The default bound on one read of the lock.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The settings of an [`Observer`](super::Observer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObserverConfig {
    /// How often the lock is read while no change hints arrive (the backend has none, or their
    /// stream ended), and how soon a failed read is retried. Default: 2 s, as the elector's.
    pub retry_period: Duration,
    /// How long one read may take before it counts as failed (the backend is unavailable).
    /// Default: 5 s.
    pub read_timeout: Duration,
    /// Whether to follow the lock's change hints (on by default). Hints only trigger reads.
    pub use_hints: bool,
}

impl Default for ObserverConfig {
    fn default() -> Self {
        Self {
            retry_period: DEFAULT_RETRY_PERIOD,
            read_timeout: DEFAULT_READ_TIMEOUT,
            use_hints: true,
        }
    }
}

impl ObserverConfig {
    /// Sets the polling period (see [`retry_period`](Self::retry_period)).
    pub fn with_retry_period(mut self, retry_period: Duration) -> Self {
        self.retry_period = retry_period;
        self
    }

    /// Sets the bound on one read.
    pub fn with_read_timeout(mut self, read_timeout: Duration) -> Self {
        self.read_timeout = read_timeout;
        self
    }

    /// Turns the use of change hints on or off.
    pub fn with_hints(mut self, use_hints: bool) -> Self {
        self.use_hints = use_hints;
        self
    }

    /// Checks that every timing lies between [`MIN_TIMING`] and [`MAX_LEASE_DURATION`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, value) in [
            ("retryPeriod", self.retry_period),
            ("readTimeout", self.read_timeout),
        ] {
            if value < MIN_TIMING || value > MAX_LEASE_DURATION {
                return Err(ConfigError(format!(
                    "{name} is {value:?}, outside the timings allowed, {MIN_TIMING:?} to \
                     {MAX_LEASE_DURATION:?}"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_out_of_range_timings_are_not() {
        assert!(ObserverConfig::default().validate().is_ok());
        let zero = ObserverConfig::default().with_retry_period(Duration::ZERO);
        assert!(zero.validate().unwrap_err().0.contains("retryPeriod"));
        let huge = ObserverConfig::default().with_read_timeout(Duration::from_secs(1 << 40));
        assert!(huge.validate().unwrap_err().0.contains("readTimeout"));
    }
}
