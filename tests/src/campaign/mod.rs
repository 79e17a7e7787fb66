//! A fault campaign, in the spirit of Jepsen: three `demo` instances on one election of a real
//! backend, one fault after another from a seeded schedule, every word they said checked at
//! the end by [`History`](crate::history::History).
//!
//! One round: wait for a settled leader (one leads, the others follow it), inject a fault
//! ([`fault::FaultKind`]) into the leader most of the time, hold it for a random time between
//! a quarter of the lease and two leases, heal it, and tell the history when some instance
//! must lead again. Rounds run in segments of at most [`SEGMENT`] faults, each on a fresh
//! server and fresh processes, so that a long campaign's history stays small enough to check
//! and a failure names a short schedule.
//!
//! The run's seed is printed first; `CAMPAIGN_SEED=N` replays the same schedule (the faults,
//! victims and holds; the machine's timing is not replayed).
//!
//! Every instance runs in exec mode with a command that beats while its term runs
//! ([`children`]); a beat outside the term is a violation like two leaders.
//!
//! Layout: [`target`] starts a backend and does what an outsider can do to it; [`fault`] names
//! the faults and builds the schedule; [`stats`] turns segments into the figures of
//! RELIABILITY.md; this module runs the rounds.

pub mod children;
pub mod fault;
pub mod machine_clock;
pub mod stats;
pub mod target;

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use nix::sys::signal::Signal;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::clock::FakeClock;
use crate::fault_cluster::{FaultCluster, MemberSpec, Timings};
use crate::proxy::{Direction, Proxy};
use fault::FaultKind;
use stats::{Injected, SegmentReport};
use target::{Target, TargetKind};

/// The most faults one segment (one server, one set of processes, one history) injects.
pub const SEGMENT: usize = 60;
/// How many times a segment voided by a step of the machine's clock runs again; a segment that
/// is still void after that is judged as it is.
const VOID_RERUNS: usize = 3;
/// The instances of a campaign.
const NAMES: [&str; 3] = ["a", "b", "c"];
/// How long the instances may take to settle on a leader before a fault (a loaded machine,
/// and a deletion's two leases).
const SETTLE: Duration = Duration::from_secs(30);

/// What one campaign does.
#[derive(Clone, Copy, Debug)]
pub struct Campaign {
    /// The backend.
    pub target: TargetKind,
    /// The seed of the schedule.
    pub seed: u64,
    /// How many faults in all.
    pub faults: usize,
    /// The instances' timings.
    pub timings: Timings,
}

impl Campaign {
    /// A campaign of `faults` faults on `target` with the default fault-test timings, its seed
    /// from `CAMPAIGN_SEED` or else random.
    pub fn new(target: TargetKind, faults: usize) -> Self {
        let seed = std::env::var("CAMPAIGN_SEED")
            .ok()
            .map(|seed| {
                seed.parse()
                    .unwrap_or_else(|_| panic!("CAMPAIGN_SEED={seed} is not a number"))
            })
            .unwrap_or_else(rand::random);
        Self {
            target,
            seed,
            faults,
            timings: Timings::DEFAULT,
        }
    }

    /// Runs every segment; returns their reports (a segment's violations are in its report,
    /// the caller decides what fails).
    pub async fn run(&self) -> Vec<SegmentReport> {
        eprintln!(
            "campaign on {}: {} faults, seed {} (CAMPAIGN_SEED={} replays it)",
            self.target.name(),
            self.faults,
            self.seed,
            self.seed
        );
        let mut rng = StdRng::seed_from_u64(self.seed);
        let schedule = fault::schedule(&mut rng, self.target, self.faults);
        let mut reports = Vec::new();
        for (number, chunk) in schedule.chunks(SEGMENT).enumerate() {
            let seed = rng.random();
            let mut voided = 0;
            let report = loop {
                let mut report = self.segment(number, chunk, seed).await;
                report.voided = voided;
                match report.machine_clock_step {
                    Some(step) if voided < VOID_RERUNS => {
                        voided += 1;
                        eprintln!(
                            "campaign {} segment {number} (seed {seed}) void: the machine's wall \
                             clock moved {step} against its monotonic clock while it ran (a \
                             paused VM, a stepped clock), so its history cannot be judged in \
                             wall-clock time; running the same schedule again",
                            self.target.name()
                        );
                    }
                    _ => break report,
                }
            };
            let failed = !report.violations.is_empty();
            eprintln!("{}", report.summary());
            reports.push(report);
            if failed {
                break;
            }
        }
        reports
    }

    /// One segment: a fresh server and instances, `faults` in order, the history checked.
    async fn segment(&self, number: usize, faults: &[FaultKind], seed: u64) -> SegmentReport {
        let machine_clock = machine_clock::MachineClockWatch::start();
        let mut rng = StdRng::seed_from_u64(seed);
        let lock = format!("campaign-{}-{}-{number}", self.target.name(), self.seed);
        let mut target = Target::start(self.target, &lock).await;
        let clock_dir = tempfile::Builder::new()
            .prefix("campaign-clocks-")
            .tempdir()
            .expect("a temporary directory");
        let beats = clock_dir.path().join("beats.log");
        let mut clocks = Vec::new();
        let mut specs = Vec::new();
        for name in NAMES {
            let clock = FakeClock::new(&clock_dir.path().join(format!("{name}.faketime")));
            let mut proxies = Vec::new();
            for address in target.addresses() {
                proxies.push(Proxy::start(address).await);
            }
            let addresses: Vec<_> = proxies.iter().map(Proxy::address).collect();
            let mut args = target.flags(name, &addresses);
            args.extend(self.timings.flags());
            args.extend(children::command(&beats));
            specs.push(MemberSpec {
                name: name.to_owned(),
                args,
                env: clock.env(),
                proxies,
            });
            clocks.push(clock);
        }
        let mut cluster = FaultCluster::start_members(specs, self.timings).await;
        let mut round = Round {
            timings: self.timings,
            target: &mut target,
            cluster: &mut cluster,
            clocks: &mut clocks,
            rng: &mut rng,
            generation: 1,
        };
        let mut injected = Vec::new();
        let mut unsettled = Vec::new();
        let mut round_errors = Vec::new();
        for (index, kind) in faults.iter().enumerate() {
            let leader = settled(round.cluster, self.timings).await;
            let Some(leader) = leader else {
                unsettled.push(format!(
                    "before fault {index} ({}): no settled leader within {SETTLE:?}",
                    kind.name()
                ));
                break;
            };
            let (fault, error) = round.inject(*kind, leader).await;
            if let Some(error) = error {
                round_errors.push(format!(
                    "FAULT NOT INJECTED: {} at {}: {error}",
                    kind.name(),
                    fault.at
                ));
            }
            injected.push(fault);
        }
        if unsettled.is_empty() && settled(round.cluster, self.timings).await.is_none() {
            unsettled.push(format!(
                "after the last fault: no settled leader within {SETTLE:?}"
            ));
        }
        let reports = cluster.reports();
        let history = cluster.finish().await;
        let (beats, mut outside) = children::read(&beats);
        let terms = history.terms();
        outside.extend(children::outside_terms(&beats, &terms, Utc::now()));
        outside.extend(children::silent_terms(&beats, &terms, Utc::now()));
        unsettled.extend(round_errors);
        let mut report = SegmentReport::new(
            self.target,
            number,
            seed,
            injected,
            &history,
            unsettled,
            reports,
        );
        report.add_children(beats.len(), outside);
        report.machine_clock_step = machine_clock.step();
        report
    }
}

/// The leader once the instances settled: one leads and the others follow it, and it is still
/// so after two retry periods (events arrive a little after the fact: a leader that was just
/// told to stop may not have said so yet). `None` after [`SETTLE`].
async fn settled(cluster: &FaultCluster, timings: Timings) -> Option<usize> {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let first = cluster.settled_leader(left).await?;
        tokio::time::sleep(2 * timings.retry_period).await;
        let again = cluster.settled_leader(Duration::ZERO).await;
        if again == Some(first) {
            return Some(first);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
    }
}

/// The state one round needs.
struct Round<'a> {
    timings: Timings,
    target: &'a mut Target,
    cluster: &'a mut FaultCluster,
    clocks: &'a mut Vec<FakeClock>,
    rng: &'a mut StdRng,
    /// Grows with every successor process, to name it.
    generation: u32,
}

impl Round<'_> {
    /// Injects `kind` (with `leader` leading), holds it, heals it, and records all of it;
    /// with the error when the fault could not be injected (then nothing excuses it).
    async fn inject(&mut self, kind: FaultKind, leader: usize) -> (Injected, Option<String>) {
        let lease = self.timings.lease;
        let hold = self
            .rng
            .random_range(lease.as_millis() / 4..=lease.as_millis() * 2);
        let hold = Duration::from_millis(u64::try_from(hold).unwrap_or(u64::MAX));
        let victim = if kind.has_victim() {
            Some(fault::victim(self.rng, leader, NAMES.len()))
        } else {
            None
        };
        let at = Utc::now();
        let victim_name = victim.map(|v| self.cluster.member(v).demo.name().to_owned());
        let what = match &victim_name {
            Some(name) => format!("{} on {name} for {hold:?}", kind.name()),
            None => format!("{} for {hold:?}", kind.name()),
        };
        self.cluster.record(|h| h.fault(at, what));
        let (detail, error) = match self.apply(kind, victim, hold).await {
            Ok(detail) => (detail, None),
            Err(error) => (error.clone(), Some(error)),
        };
        let fault = Injected { kind, at, detail };
        (fault, error)
    }

    /// Does the fault and its heal; returns a detail for the report, or why the fault could
    /// not be done (a failed outside write records no excuse and no heal).
    async fn apply(
        &mut self,
        kind: FaultKind,
        victim: Option<usize>,
        hold: Duration,
    ) -> Result<String, String> {
        let Timings {
            lease,
            renew_deadline,
            ..
        } = self.timings;
        // After a deletion the elector waits a lease for the vanished record, and the new
        // record is held a lease before its term starts: two leases and the usual slack.
        let after_deletion = 3 * lease + Duration::from_secs(2);
        let v = victim.unwrap_or(0);
        let mut detail = String::new();
        match kind {
            FaultKind::Cut => {
                self.cluster.member(v).cut();
                tokio::time::sleep(hold).await;
                self.cluster.member(v).heal();
                self.delivered_late(v);
                self.healed();
            }
            FaultKind::Reset => {
                self.cluster.member(v).reset();
                self.healed();
            }
            FaultKind::Refuse => {
                self.cluster.member(v).down();
                tokio::time::sleep(hold).await;
                self.cluster.member(v).heal();
                self.healed();
            }
            FaultKind::Slow => {
                let millis = renew_deadline.as_millis() / 2;
                let delay = self.rng.random_range(millis / 10..=millis);
                let delay = Duration::from_millis(u64::try_from(delay).unwrap_or(0));
                detail = format!("{delay:?} a chunk");
                for proxy in &self.cluster.member(v).proxies {
                    proxy.slow(delay);
                }
                tokio::time::sleep(hold).await;
                self.cluster.member(v).heal();
                self.delivered_late(v);
                self.healed();
            }
            FaultKind::OneWay => {
                let direction = if self.rng.random_bool(0.5) {
                    Direction::ToServer
                } else {
                    Direction::ToClient
                };
                detail = format!("{direction:?}");
                for proxy in &self.cluster.member(v).proxies {
                    proxy.cut_one_way(direction);
                }
                tokio::time::sleep(hold).await;
                self.cluster.member(v).heal();
                self.delivered_late(v);
                self.healed();
            }
            FaultKind::Stop => {
                // Past the lease, always: the history ends a stopped process's term at the
                // stop, so a shorter pause, after which the term is rightly still valid,
                // would read as a stale claim. A pause past the lease is the dangerous one.
                let hold = hold.max(lease + Duration::from_millis(500));
                detail = format!("stopped for {hold:?}");
                self.cluster.stop(v);
                tokio::time::sleep(hold).await;
                self.cluster.resume(v).await;
                self.healed();
            }
            FaultKind::Kill => {
                self.cluster.kill(v).await;
                tokio::time::sleep(hold / 4).await;
                self.successor(v).await;
                self.healed();
            }
            FaultKind::Hangup => {
                self.cluster.signal_exit(v, Signal::SIGHUP).await;
                self.successor(v).await;
                self.healed();
            }
            FaultKind::ServerRestart => {
                self.target.kill_server();
                tokio::time::sleep(hold).await;
                self.target.restart_server(false);
                self.all_delivered_late();
                self.healed();
            }
            FaultKind::RaftLeaderKill => {
                let member = self
                    .target
                    .kill_raft_leader()
                    .ok_or("no member says it is the raft leader")?;
                detail = format!("member {member}");
                tokio::time::sleep(hold).await;
                self.target.restart_member(member);
                self.all_delivered_late();
                self.healed();
            }
            FaultKind::ServerWipe => {
                self.target.kill_server();
                tokio::time::sleep(hold).await;
                self.target.restart_server(true);
                let now = Utc::now();
                self.cluster.record(|h| {
                    h.record_deleted(now);
                    h.healed_within(now, after_deletion);
                });
            }
            FaultKind::Delete => {
                self.target.delete_record().await?;
                let now = Utc::now();
                self.cluster.record(|h| {
                    h.record_deleted(now);
                    h.healed_within(now, after_deletion);
                });
            }
            FaultKind::Foreign | FaultKind::Free => {
                let holder = if kind == FaultKind::Foreign {
                    "outsider"
                } else {
                    ""
                };
                let before = Utc::now();
                self.target.write_record(holder, lease).await?;
                // The write landed between `before` and now: a standby saw it no earlier than
                // `before`, so no instance may lead before `before + lease`; the grace of the
                // leader it replaced counts from the landing, so it is widened by the write's
                // own time.
                let now = Utc::now();
                let landing = (now - before).to_std().unwrap_or_default();
                self.cluster.record(|h| {
                    h.outside_write(before, holder, lease, renew_deadline + landing);
                    // A foreign holder never renews: its lease runs out, then someone takes over.
                    let within = if holder.is_empty() {
                        lease + Duration::from_secs(2)
                    } else {
                        2 * lease + Duration::from_secs(2)
                    };
                    h.healed_within(now, within);
                });
            }
            FaultKind::Garbage => {
                self.target.write_garbage().await?;
                tokio::time::sleep(hold).await;
                // An operator sees the elector's error and removes the bad value.
                self.target.delete_record().await?;
                let now = Utc::now();
                self.cluster.record(|h| {
                    h.record_deleted(now);
                    h.healed_within(now, after_deletion);
                });
            }
            FaultKind::ClockStep => {
                let seconds = self.rng.random_range(30..=7200_i64);
                let offset = if self.rng.random_bool(0.5) {
                    TimeDelta::seconds(seconds)
                } else {
                    TimeDelta::seconds(-seconds)
                };
                detail = format!("{offset}");
                self.clocks[v].set(offset);
                self.cluster.clock_stepped(v, offset);
                tokio::time::sleep(hold).await;
                self.clocks[v].set(TimeDelta::zero());
                self.healed();
            }
            FaultKind::HintCut => {
                let closed = self.target.cut_hints().await.unwrap_or(0);
                if closed == 0 {
                    return Err("no hint stream was open to close".to_owned());
                }
                detail = format!("{closed} streams closed");
                self.healed();
            }
            FaultKind::StdoutStall => {
                let filler = self.cluster.member(v).demo.stall_stdout();
                detail = format!("{filler} bytes of filler");
                tokio::time::sleep(hold).await;
                self.cluster.member(v).demo.unstall_stdout();
                self.healed();
            }
        }
        Ok(detail)
    }

    /// Records a heal now, with the default bound (lease + 2 s).
    /// Records that member `v`'s held bytes reached the server now (see
    /// [`History::late_delivery`]).
    fn delivered_late(&self, v: usize) {
        let now = chrono::Utc::now();
        let name = self.cluster.member(v).demo.name().to_owned();
        self.cluster.record(|h| h.late_delivery(&name, now));
    }

    /// The server is back with its data: every instance's last write is first readable now, and
    /// a standby that could not read during the outage sees it for the first time (so names
    /// its holder for a lease from now, rightly: it cannot tell when the write was made).
    fn all_delivered_late(&self) {
        for v in 0..self.cluster.members().len() {
            self.delivered_late(v);
        }
    }

    fn healed(&self) {
        let now = Utc::now();
        self.cluster.record(|h| h.healed(now));
    }

    /// Starts a successor of the exited instance at `index`, with a new name (a restarted
    /// Pod gets a new identity).
    async fn successor(&mut self, index: usize) {
        self.generation += 1;
        let name = format!("{}{}", NAMES[index], self.generation);
        self.cluster.replace(index, &name).await;
    }
}
