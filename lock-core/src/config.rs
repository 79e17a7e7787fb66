//! Election timings and options, validated the way client-go validates them.

use std::time::Duration;

/// client-go's jitter factor: a standby that polls waits between one and 2.2 retry periods.
pub const JITTER_FACTOR: f64 = 1.2;
/// Default lease duration (client-go's): how long standbys wait after the last observed change.
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);
/// Default renew deadline (client-go's): how long a leader stays leader without a renew.
pub const DEFAULT_RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// Default retry period (client-go's): how often the leader renews and standbys poll.
pub const DEFAULT_RETRY_PERIOD: Duration = Duration::from_secs(2);
/// The shortest lease duration, renew deadline or retry period accepted: below a millisecond no
/// backend answers in time, and every call would fail as timed out.
pub const MIN_TIMING: Duration = Duration::from_millis(1);
/// The longest lease duration (and so renew deadline and retry period) accepted: one day. Longer
/// leases leave an election leaderless for that long after a crash, and values far beyond it
/// overflow the clock's arithmetic.
pub const MAX_LEASE_DURATION: Duration = Duration::from_secs(24 * 60 * 60);
/// The largest jitter factor accepted.
pub const MAX_JITTER_FACTOR: f64 = 10.0;

/// How one candidate takes part in an election.
///
/// ```
/// use std::time::Duration;
/// use lock_core::ElectionConfig;
///
/// let config = ElectionConfig::new("pod-a").with_lease_duration(Duration::from_secs(30));
/// assert!(config.validate().is_ok());
///
/// let bad = ElectionConfig::new("pod-a").with_renew_deadline(Duration::from_secs(20));
/// assert_eq!(
///     bad.validate().unwrap_err().to_string(),
///     "leaseDuration must be greater than renewDeadline (leaseDuration 15s, renewDeadline 20s)"
/// );
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ElectionConfig {
    /// This candidate's identity, written as the record's holder. Must be unique per process.
    pub identity: String,
    /// How long standbys wait after observing a change of the record before they may take it.
    /// Written into the record, rounded up to whole seconds.
    pub lease_duration: Duration,
    /// How long the leader stays leader after the send time of its last successful renew.
    pub renew_deadline: Duration,
    /// How often standbys poll when the lock gives no hints, and how soon a leader tries
    /// again after a renew failed; also how often the leader renews unless
    /// [`renew_interval`](Self::renew_interval) says otherwise.
    pub retry_period: Duration,
    /// How often the leader renews after a renew that succeeded; `None` (the default) means
    /// every [`retry_period`](Self::retry_period), as client-go does. A longer interval
    /// lowers the leader's writes (half as many at twice the period) at no cost to
    /// standbys, which time the lease from the last renew they saw: the renew deadline still
    /// bounds a term, and a failed renew is retried every retry period. It applies only while
    /// the lock's change hints flow: without them the leader learns of an outside write only
    /// when it renews, so it renews every retry period, keeping that overlap within one.
    pub renew_interval: Option<Duration>,
    /// Standbys that poll wait a random time between `retry_period` and
    /// `retry_period * (1 + jitter_factor)`.
    pub jitter_factor: f64,
    /// On cancellation, hand the lock over at once (holder "" and a 1 s lease) instead of
    /// letting it expire. Off by default, as in client-go.
    pub release_on_cancel: bool,
    /// After losing leadership, go back to standing by (`true`) or end
    /// [`run`](crate::LeaderElector::run) (`false`, client-go's one-shot behaviour).
    pub rejoin: bool,
    /// Use the lock's change hints when it offers them (on by default). Off means polling every
    /// retry period, as client-go does.
    pub use_hints: bool,
    /// Seeds the elector's randomness (poll jitter, the acquireTime mark) for a deterministic
    /// run, as a simulation on tokio's paused clock needs to replay a schedule exactly. `None`
    /// (the default) seeds from the operating system; never share a seed between real
    /// candidates, since the marks that tell twins apart would then repeat.
    pub random_seed: Option<u64>,
}

impl ElectionConfig {
    /// A configuration with client-go's default timings for the given identity.
    pub fn new(identity: impl Into<String>) -> Self {
        Self {
            identity: identity.into(),
            lease_duration: DEFAULT_LEASE_DURATION,
            renew_deadline: DEFAULT_RENEW_DEADLINE,
            retry_period: DEFAULT_RETRY_PERIOD,
            renew_interval: None,
            jitter_factor: JITTER_FACTOR,
            release_on_cancel: false,
            rejoin: false,
            use_hints: true,
            random_seed: None,
        }
    }

    /// Sets the lease duration.
    pub fn with_lease_duration(mut self, lease_duration: Duration) -> Self {
        self.lease_duration = lease_duration;
        self
    }

    /// Sets the renew deadline.
    pub fn with_renew_deadline(mut self, renew_deadline: Duration) -> Self {
        self.renew_deadline = renew_deadline;
        self
    }

    /// Sets the retry period.
    pub fn with_retry_period(mut self, retry_period: Duration) -> Self {
        self.retry_period = retry_period;
        self
    }

    /// Sets how often the leader renews after a renew that succeeded (see
    /// [`renew_interval`](Self::renew_interval)).
    pub fn with_renew_interval(mut self, renew_interval: Duration) -> Self {
        self.renew_interval = Some(renew_interval);
        self
    }

    /// How often the leader renews after a renew that succeeded: the
    /// [`renew_interval`](Self::renew_interval), else the retry period.
    pub fn renew_every(&self) -> Duration {
        self.renew_interval.unwrap_or(self.retry_period)
    }

    /// Sets whether cancellation releases the lock.
    pub fn with_release_on_cancel(mut self, release: bool) -> Self {
        self.release_on_cancel = release;
        self
    }

    /// Sets whether the elector stands by again after losing leadership.
    pub fn with_rejoin(mut self, rejoin: bool) -> Self {
        self.rejoin = rejoin;
        self
    }

    /// Seeds the elector's randomness, for deterministic simulations (see
    /// [`random_seed`](Self::random_seed)).
    pub fn with_random_seed(mut self, seed: u64) -> Self {
        self.random_seed = Some(seed);
        self
    }

    /// Sets whether the lock's change hints are used.
    pub fn with_hints(mut self, use_hints: bool) -> Self {
        self.use_hints = use_hints;
        self
    }

    /// Checks that every timing lies within [`MIN_TIMING`] and [`MAX_LEASE_DURATION`] (so that no
    /// deadline overflows the clock and no call gets a deadline too short to answer), then the
    /// rules client-go checks, with client-go's messages followed by the values in force.
    pub fn validate(&self) -> Result<(), ConfigError> {
        // Ranges first: the rules below multiply, which must not overflow.
        for (name, value) in [
            ("leaseDuration", self.lease_duration),
            ("renewDeadline", self.renew_deadline),
            ("retryPeriod", self.retry_period),
        ] {
            if value.is_zero() {
                return Err(ConfigError(format!("{name} must be greater than zero")));
            }
            if value < MIN_TIMING {
                return Err(ConfigError(format!(
                    "{name} is {value:?}, shorter than the shortest timing allowed, \
                     {MIN_TIMING:?}: no backend answers that fast"
                )));
            }
            if value > MAX_LEASE_DURATION {
                return Err(ConfigError(format!(
                    "{name} is {value:?}, longer than the longest timing allowed, \
                     {MAX_LEASE_DURATION:?} (24h)"
                )));
            }
        }
        if !self.jitter_factor.is_finite()
            || self.jitter_factor < 0.0
            || self.jitter_factor > MAX_JITTER_FACTOR
        {
            return Err(ConfigError(format!(
                "jitterFactor must be a finite number from 0 to {MAX_JITTER_FACTOR}; it is {}",
                self.jitter_factor
            )));
        }
        // client-go's words first (programs ported from Go may look for them), then the values.
        if self.lease_duration <= self.renew_deadline {
            return Err(ConfigError(format!(
                "leaseDuration must be greater than renewDeadline (leaseDuration {}, \
                 renewDeadline {})",
                shown(self.lease_duration),
                shown(self.renew_deadline)
            )));
        }
        let retry_with_jitter = self.retry_period.mul_f64(JITTER_FACTOR);
        if self.renew_deadline <= retry_with_jitter {
            return Err(ConfigError(format!(
                "renewDeadline must be greater than retryPeriod*JitterFactor (renewDeadline {}, \
                 retryPeriod {} * {JITTER_FACTOR} = {})",
                shown(self.renew_deadline),
                shown(self.retry_period),
                shown(retry_with_jitter)
            )));
        }
        if let Some(interval) = self.renew_interval {
            if interval < MIN_TIMING || interval > MAX_LEASE_DURATION {
                return Err(ConfigError(format!(
                    "renewInterval is {}; it must lie between {MIN_TIMING:?} and 24h",
                    shown(interval)
                )));
            }
            // A renew due at the interval that fails must get at least one retry, a retry
            // period (with jitter) later, before the renew deadline ends the term.
            let latest_retry = interval + retry_with_jitter;
            if self.renew_deadline <= latest_retry {
                return Err(ConfigError(format!(
                    "renewDeadline must be greater than renewInterval + retryPeriod*JitterFactor, \
                     so that a renew that fails is retried once before the deadline \
                     (renewDeadline {}, renewInterval {} + retryPeriod {} * {JITTER_FACTOR} = {})",
                    shown(self.renew_deadline),
                    shown(interval),
                    shown(self.retry_period),
                    shown(latest_retry)
                )));
            }
        }
        if self.identity.is_empty() {
            return Err(ConfigError("Lock identity is empty".to_owned()));
        }
        Ok(())
    }

    /// The lease written into the record: whole seconds, rounded up so that standbys never wait
    /// less than configured.
    pub fn lease_duration_seconds(&self) -> i32 {
        let nanos = self.lease_duration.as_nanos();
        let seconds = nanos.div_ceil(1_000_000_000);
        i32::try_from(seconds).unwrap_or(i32::MAX)
    }
}

/// A duration as people write it (`10s`, `1m 30s`, `8s 400ms`), for messages.
fn shown(duration: Duration) -> String {
    // To the nearest millisecond: `10.08s` reads better than `10.079999999s`; below a
    // millisecond, as it is.
    let millis = duration.as_nanos().saturating_add(500_000) / 1_000_000;
    let rounded = match u64::try_from(millis) {
        Ok(0) => duration,
        Ok(millis) => Duration::from_millis(millis),
        Err(_) => duration,
    };
    format!("{rounded:?}")
}

/// An election configuration that breaks a rule: a timing out of range, or one of client-go's
/// rules (with client-go's message).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn message(config: ElectionConfig) -> String {
        config.validate().unwrap_err().to_string()
    }

    #[test]
    fn defaults_are_client_gos() {
        let config = ElectionConfig::new("a");
        assert_eq!(config.lease_duration, secs(15));
        assert_eq!(config.renew_deadline, secs(10));
        assert_eq!(config.retry_period, secs(2));
        assert_eq!(config.jitter_factor, 1.2);
        assert!(config.validate().is_ok());
        assert_eq!(config.lease_duration_seconds(), 15);
    }

    #[test]
    fn rejections_use_client_go_messages() {
        let base = ElectionConfig::new("a");
        assert_eq!(
            message(base.clone().with_lease_duration(secs(10))),
            "leaseDuration must be greater than renewDeadline (leaseDuration 10s, \
             renewDeadline 10s)"
        );
        assert_eq!(
            message(base.clone().with_retry_period(Duration::from_millis(8400))),
            "renewDeadline must be greater than retryPeriod*JitterFactor (renewDeadline 10s, \
             retryPeriod 8.4s * 1.2 = 10.08s)"
        );
        assert!(base
            .clone()
            .with_retry_period(Duration::from_millis(8333))
            .validate()
            .is_ok());
        assert_eq!(
            message(
                base.clone()
                    .with_lease_duration(Duration::ZERO)
                    .with_renew_deadline(Duration::ZERO)
            ),
            "leaseDuration must be greater than zero"
        );
        assert_eq!(
            message(
                base.clone()
                    .with_renew_deadline(Duration::ZERO)
                    .with_retry_period(Duration::ZERO)
            ),
            "renewDeadline must be greater than zero"
        );
        assert_eq!(message(ElectionConfig::new("")), "Lock identity is empty");
    }

    /// Hole 12: huge durations used to panic (an Instant overflow at the first call, a float
    /// conversion in validation) and nanosecond ones failed every call with "no answer within
    /// 0ns"; both are rejected with a message that names the timing and the limit.
    #[test]
    fn hole12_huge_durations_panic_no_more_and_tiny_ones_are_rejected() {
        let base = ElectionConfig::new("a");
        let huge = Duration::from_secs(500_000_000_000 * 365 * 24 * 3600 / 1000);
        let err = message(base.clone().with_lease_duration(huge));
        assert!(err.starts_with("leaseDuration is "), "{err}");
        assert!(err.contains("longest timing allowed"), "{err}");
        let err = message(
            base.clone()
                .with_retry_period(Duration::from_secs(18_446_744_073_709_551_613)),
        );
        assert!(err.starts_with("retryPeriod is "), "{err}");
        let err = message(
            base.clone()
                .with_lease_duration(Duration::from_nanos(3))
                .with_renew_deadline(Duration::from_nanos(2))
                .with_retry_period(Duration::from_nanos(1)),
        );
        assert!(
            err.contains("shorter than the shortest timing allowed"),
            "{err}"
        );
        let mut wild = base.clone();
        wild.jitter_factor = 1e300;
        assert!(message(wild).starts_with("jitterFactor"));
        assert!(base
            .with_lease_duration(MAX_LEASE_DURATION)
            .validate()
            .is_ok());
    }

    #[test]
    fn lease_seconds_round_up() {
        let config = ElectionConfig::new("a").with_lease_duration(Duration::from_millis(10_001));
        assert_eq!(config.lease_duration_seconds(), 11);
    }
}
