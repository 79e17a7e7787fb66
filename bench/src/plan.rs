//! How much each scenario measures: the full run, or the quick one `scripts/test` makes.

use std::time::Duration;

use leader_election::Backend;
use lock_core::ElectionConfig;

/// An election's three timings, the same for our elector and client-go's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timings {
    /// How long a lease lasts after the holder's last renew, as observed by others.
    pub lease: Duration,
    /// How long a leader keeps trying to renew before it steps down.
    pub renew: Duration,
    /// How often a leader renews and a standby without hints polls (plus up to 20% jitter).
    pub retry: Duration,
}

impl Timings {
    /// client-go's recommended defaults: 15 s, 10 s, 2 s.
    pub const CLIENT_GO: Self = Self {
        lease: Duration::from_secs(15),
        renew: Duration::from_secs(10),
        retry: Duration::from_secs(2),
    };

    /// Short timings that keep the quick run short.
    pub const QUICK: Self = Self {
        lease: Duration::from_secs(4),
        renew: Duration::from_secs(3),
        retry: Duration::from_millis(500),
    };

    /// An election config with these timings.
    pub fn config(&self, identity: &str, hints: bool) -> ElectionConfig {
        ElectionConfig::new(identity)
            .with_lease_duration(self.lease)
            .with_renew_deadline(self.renew)
            .with_retry_period(self.retry)
            .with_release_on_cancel(true)
            // A leader that hands over on request (scenario 6) stays on as a standby.
            .with_rejoin(true)
            .with_hints(hints)
    }

    /// As written in the report: `15s/10s/2s`.
    pub fn describe(&self) -> String {
        format!(
            "lease {:?}, renew deadline {:?}, retry period {:?}",
            self.lease, self.renew, self.retry
        )
    }

    /// The longest a handover or takeover may take before the scenario gives up on it.
    pub fn patience(&self) -> Duration {
        self.lease * 2 + self.retry * 4 + Duration::from_secs(10)
    }
}

/// The sizes of one run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// True for the short run of `--quick`.
    pub quick: bool,
    /// The timings of scenarios 1 to 3 and their baselines.
    pub timings: Timings,
    /// Graceful handovers per backend and variant (scenario 1).
    pub handovers: usize,
    /// Crashed leaders per backend and variant (scenario 2), each in an election of its own.
    pub crashes: usize,
    /// The time between two crashes, so that takeovers do not pile up.
    pub crash_spacing: Duration,
    /// How long the leader alone, and then each idle standby, is counted (scenario 3).
    pub load_window: Duration,
    /// Elections held by one process, per backend that runs scenario 4 (the file backend does
    /// not: every election's watch would wake on every write in the directory).
    pub many_elections: Vec<(Backend, usize)>,
    /// How long they are held after all have been won.
    pub many_duration: Duration,
    /// Smaller sizes of scenario 4, held for `scaling_duration` each: with the sizes above,
    /// the points of "how it scales" (renew latency and CPU against the number of elections).
    pub scaling_elections: Vec<(Backend, usize)>,
    /// How long each of the smaller sizes is held.
    pub scaling_duration: Duration,
    /// Elections of the cold start and takeover, per backend (scenario 8).
    pub takeover_elections: Vec<(Backend, usize)>,
    /// Lease elections of the fleet on one API server, three candidates each (scenario 7).
    pub fleet_elections: usize,
    /// How long the fleet's requests are counted, once every election has a leader.
    pub fleet_window: Duration,
}

impl Plan {
    /// The full run: client-go's default timings and the sizes.
    pub fn full() -> Self {
        Self {
            quick: false,
            timings: Timings::CLIENT_GO,
            handovers: 50,
            crashes: 50,
            crash_spacing: Duration::from_millis(310),
            load_window: Duration::from_secs(60),
            many_elections: vec![
                (Backend::Redis, 100_000),
                (Backend::Etcd, 10_000),
                (Backend::K8s, 10_000),
            ],
            many_duration: Duration::from_secs(300),
            scaling_elections: vec![
                (Backend::Redis, 1_000),
                (Backend::Redis, 10_000),
                (Backend::Etcd, 1_000),
                (Backend::K8s, 1_000),
            ],
            scaling_duration: Duration::from_secs(60),
            takeover_elections: vec![
                (Backend::Redis, 10_000),
                (Backend::Etcd, 10_000),
                (Backend::K8s, 10_000),
            ],
            fleet_elections: 1_000,
            fleet_window: Duration::from_secs(60),
        }
    }

    /// The quick run: every scenario and baseline on every backend, with short timings and few
    /// samples. It proves the benchmark works; its figures are indicative only.
    pub fn quick() -> Self {
        Self {
            quick: true,
            timings: Timings::QUICK,
            handovers: 10,
            crashes: 4,
            crash_spacing: Duration::from_millis(310),
            load_window: Duration::from_secs(8),
            many_elections: vec![
                (Backend::Redis, 10_000),
                (Backend::Etcd, 500),
                (Backend::K8s, 100),
            ],
            many_duration: Duration::from_secs(10),
            scaling_elections: vec![
                (Backend::Redis, 1_000),
                (Backend::Etcd, 100),
                (Backend::K8s, 20),
            ],
            scaling_duration: Duration::from_secs(5),
            takeover_elections: vec![
                (Backend::Redis, 1_000),
                (Backend::Etcd, 200),
                (Backend::K8s, 50),
            ],
            fleet_elections: 50,
            fleet_window: Duration::from_secs(8),
        }
    }
}
