//! The election's timing rules, checked with the demo's own words: each message names the
//! flags, the values in force and where each value came from (the command line, a `DEMO_*`
//! variable, `--ttl`, or the default), and says what to change. The library's
//! [`ElectionConfig::validate`] says the same with client-go's field names; it still runs last,
//! for any rule not worded here.

use std::time::Duration;

use clap::parser::ValueSource;
use leader_election::Backend;
use lock_core::{ElectionConfig, JITTER_FACTOR};

use crate::cli::Cli;

/// Where the value in force of a timing flag came from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Origin {
    /// Not given: the flag's default.
    #[default]
    Default,
    /// Given on the command line.
    CommandLine,
    /// Given by the flag's `DEMO_*` environment variable.
    Environment,
    /// Set by `--ttl` (or `--election`'s default TTL): the lease is the TTL, the renew deadline
    /// half of it, the retry period a quarter.
    Ttl,
}

impl Origin {
    /// The origin of a flag from clap's `source` of its value; `by_ttl` when `--ttl` wrote the
    /// value over the one clap parsed.
    pub fn of(source: Option<ValueSource>, by_ttl: bool) -> Self {
        match source {
            _ if by_ttl => Self::Ttl,
            Some(ValueSource::CommandLine) => Self::CommandLine,
            Some(ValueSource::EnvVariable) => Self::Environment,
            _ => Self::Default,
        }
    }
}

/// Where each of the three election timings came from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimingOrigins {
    /// `--lease-duration`.
    pub lease_duration: Origin,
    /// `--renew-deadline`.
    pub renew_deadline: Origin,
    /// `--retry-period`.
    pub retry_period: Origin,
}

/// A flag with its value in force, shown as `--renew-deadline (10s, the default)`.
struct Shown {
    flag: &'static str,
    variable: &'static str,
    value: Duration,
    origin: Origin,
}

impl std::fmt::Display for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = humantime::format_duration(self.value);
        match self.origin {
            Origin::CommandLine => write!(f, "{} ({value})", self.flag),
            Origin::Default => write!(f, "{} ({value}, the default)", self.flag),
            Origin::Environment => write!(f, "{} ({value}, from ${})", self.flag, self.variable),
            Origin::Ttl => write!(f, "{} ({value}, set by --ttl)", self.flag),
        }
    }
}

/// Checks the timings and the identity of taking part; the message of the first rule broken.
pub fn check(cli: &Cli, config: &ElectionConfig) -> Result<(), String> {
    let origins = cli.timing_origins;
    let lease = Shown {
        flag: "--lease-duration",
        variable: "DEMO_LEASE_DURATION",
        value: cli.lease_duration,
        origin: origins.lease_duration,
    };
    let renew = Shown {
        flag: "--renew-deadline",
        variable: "DEMO_RENEW_DEADLINE",
        value: cli.renew_deadline,
        origin: origins.renew_deadline,
    };
    let retry = Shown {
        flag: "--retry-period",
        variable: "DEMO_RETRY_PERIOD",
        value: cli.retry_period,
        origin: origins.retry_period,
    };
    if config.identity.is_empty() {
        return Err(
            "--instance is empty: give this instance a name, unique among the \
                    instances that share the lock (or leave the flag out for a generated one)"
                .to_owned(),
        );
    }
    if cli.leader_for_life && cli.backend_in_force() == Backend::Etcd {
        let ttl = cli.lease_duration;
        if ttl < ETCD_MIN_SESSION_TTL || ttl.subsec_nanos() != 0 {
            return Err(format!(
                "{lease} is the etcd session's TTL with --leader-for-life: it must be whole \
                 seconds, at least {}; pass --lease-duration 2s or more, such as 15s",
                humantime::format_duration(ETCD_MIN_SESSION_TTL)
            ));
        }
    }
    // --leader-for-life uses neither, but the election still checks them.
    let for_life = if cli.leader_for_life {
        " (--leader-for-life does not use --renew-deadline, but it must still fit the lease)"
    } else {
        ""
    };
    if cli.renew_deadline >= cli.lease_duration {
        return Err(format!(
            "{renew} must be shorter than {lease}: a leader steps down --renew-deadline after \
             its last renew, standbys take over --lease-duration after it, and the leader must \
             stop first; lower --renew-deadline or raise --lease-duration{for_life}"
        ));
    }
    let retry_with_jitter = cli.retry_period.mul_f64(JITTER_FACTOR);
    if cli.renew_deadline <= retry_with_jitter {
        return Err(format!(
            "{renew} must be longer than {JITTER_FACTOR} times {retry}, that is longer than {}: \
             a leader retries a failed renew every --retry-period (give or take {}%) and must \
             have time for more than one try before its term ends; lower --retry-period or \
             raise --renew-deadline{for_life}",
            humantime::format_duration(round_to_millis(retry_with_jitter)),
            ((JITTER_FACTOR - 1.0) * 100.0).round()
        ));
    }
    if let Some(interval) = cli.renew_interval {
        let latest_retry = interval + retry_with_jitter;
        if cli.renew_deadline <= latest_retry {
            return Err(format!(
                "--renew-interval ({}) plus {JITTER_FACTOR} times {retry} must be shorter than \
                 {renew}, and together they are {}: a renew due at the interval that fails must \
                 be retried at least once before the term ends; lower --renew-interval or \
                 --retry-period, or raise --renew-deadline",
                humantime::format_duration(interval),
                humantime::format_duration(round_to_millis(latest_retry)),
            ));
        }
    }
    config
        .validate()
        .map_err(|err| format!("invalid election timings: {err}"))
}

/// The shortest etcd session TTL (`lock_etcd::MIN_SESSION_TTL`), whose check the demo repeats
/// so that the message names the flag.
const ETCD_MIN_SESSION_TTL: Duration = Duration::from_secs(2);

/// `duration` to the nearest millisecond, as a person writes it.
fn round_to_millis(duration: Duration) -> Duration {
    let millis = duration.as_nanos().saturating_add(500_000) / 1_000_000;
    u64::try_from(millis).map_or(duration, Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(args: &[&str]) -> String {
        let cli = Cli::from_args(std::iter::once("demo").chain(args.iter().copied()))
            .expect("flags that parse");
        check(&cli, &cli.election_config()).expect_err("refused")
    }

    #[test]
    fn a_renew_deadline_not_shorter_than_the_lease_names_both_flags_and_the_default() {
        assert_eq!(
            message(&["--lease-duration", "5s"]),
            "--renew-deadline (10s, the default) must be shorter than --lease-duration (5s): a \
             leader steps down --renew-deadline after its last renew, standbys take over \
             --lease-duration after it, and the leader must stop first; lower --renew-deadline \
             or raise --lease-duration"
        );
        let both = message(&["--lease-duration", "5s", "--renew-deadline", "5s"]);
        assert!(
            both.starts_with("--renew-deadline (5s) must be shorter than --lease-duration (5s)"),
            "{both}"
        );
        let default_lease = message(&["--renew-deadline", "20s"]);
        assert!(
            default_lease.starts_with(
                "--renew-deadline (20s) must be shorter than --lease-duration (15s, the default)"
            ),
            "{default_lease}"
        );
    }

    #[test]
    fn a_renew_interval_that_leaves_no_retry_names_the_flags_and_the_sum() {
        assert_eq!(
            message(&["--renew-interval", "8s"]),
            "--renew-interval (8s) plus 1.2 times --retry-period (2s, the default) must be \
             shorter than --renew-deadline (10s, the default), and together they are 10s 400ms: a \
             renew due at the interval that fails must be retried at least once before the \
             term ends; lower --renew-interval or --retry-period, or raise --renew-deadline"
        );
        let cli = Cli::from_args(["demo", "--renew-interval", "4s"]).expect("flags that parse");
        let config = cli.election_config();
        assert_eq!(config.renew_every(), Duration::from_secs(4));
        assert!(check(&cli, &config).is_ok());
    }

    #[test]
    fn a_retry_period_too_long_for_the_renew_deadline_names_both_and_the_product() {
        let err = message(&["--retry-period", "9s"]);
        assert!(
            err.starts_with(
                "--renew-deadline (10s, the default) must be longer than 1.2 times \
                 --retry-period (9s), that is longer than 10s 800ms: a leader retries"
            ),
            "{err}"
        );
        assert!(
            err.ends_with("lower --retry-period or raise --renew-deadline"),
            "{err}"
        );
    }

    #[test]
    fn timings_set_by_ttl_say_so() {
        // --ttl 20s makes 20s/10s/5s, which is valid; the check is on what --ttl wrote.
        let cli = Cli::from_args(["demo", "--ttl", "20s"]).unwrap();
        assert_eq!(cli.timing_origins.renew_deadline, Origin::Ttl);
        assert!(check(&cli, &cli.election_config()).is_ok());
        let mut broken = cli.clone();
        broken.lease_duration = Duration::from_secs(8);
        let err = check(&broken, &broken.election_config()).unwrap_err();
        assert!(
            err.starts_with(
                "--renew-deadline (10s, set by --ttl) must be shorter than --lease-duration \
                 (8s, set by --ttl)"
            ),
            "{err}"
        );
    }

    #[test]
    fn for_life_on_etcd_needs_a_ttl_of_whole_seconds() {
        let err = message(&[
            "--leader-for-life",
            "--backend",
            "etcd",
            "--lease-duration",
            "1500ms",
            "--renew-deadline",
            "1s",
            "--retry-period",
            "100ms",
        ]);
        assert!(
            err.starts_with(
                "--lease-duration (1s 500ms) is the etcd session's TTL with --leader-for-life: \
                 it must be whole seconds, at least 2s"
            ),
            "{err}"
        );
        let err = message(&["--leader-for-life", "--lease-duration", "5s"]);
        assert!(
            err.ends_with(
                "(--leader-for-life does not use --renew-deadline, but it must still fit the \
                 lease)"
            ),
            "{err}"
        );
    }

    #[test]
    fn an_empty_instance_is_refused_naming_the_flag() {
        assert!(message(&["--instance", ""]).starts_with("--instance is empty"));
    }

    #[test]
    fn valid_timings_pass() {
        let cli = Cli::from_args(["demo", "--instance", "a"]).unwrap();
        assert!(check(&cli, &cli.election_config()).is_ok());
    }
}
