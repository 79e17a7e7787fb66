//! A deterministic simulation of the elector, in the manner of FoundationDB's and TigerBeetle's:
//! several candidates (sometimes twins with one identity) on tokio's paused clock over one
//! in-memory lock, each behind its own fault-injecting wrapper, driven by a seeded random
//! schedule of faults: cut-offs, latency past the renew deadline, lost replies, conflicts,
//! dropped, repeated and forged hints, the record deleted, replaced by a foreign or free record,
//! or by a value that is not a record, planned handovers requested (to a candidate or to a name
//! nobody uses), and candidates turning unready and ready again (handing over or keeping the
//! lead when unready). After every step (and at the end) the terms are checked:
//!
//! - never two valid terms at once (a term runs from its start to the earlier of its end and its
//!   validity by the clock);
//! - fencing tokens strictly grow in the order terms started;
//! - no renew of a term is sent after the term ended (its renew deadline passed, or the
//!   elector gave it up): every write each candidate sends is recorded with its time;
//! - once the faults stop, someone leads within a bound.
//!
//! `SIM_SEEDS=N` runs N seeds (default below: a quick run inside `scripts/test`);
//! `SIM_SEED=S` replays one seed exactly, which a failure prints, and `SIM_STEPS=K` stops its
//! schedule after K steps: a failing seed is shrunk to the fewest steps that still fail
//! (the schedule's first K steps do not depend on the later ones), and both are printed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lock_core::backend::{Hint, Version, Versioned};
use lock_core::testing::{FaultControl, FaultyLock, MemoryLock};
use lock_core::{
    request_handover, ElectionConfig, ElectionEvent, LeaderElectionRecord, LeaderElector, Lock,
    UnreadyLeader,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::{sleep, Instant};
use tokio_util::sync::CancellationToken;

/// Seeds in a default run: a few thousand, under a minute in a debug build.
const QUICK_SEEDS: u64 = 2_000;
/// Fault steps per run (unless `SIM_STEPS` says fewer).
const STEPS: usize = 30;
/// Once the faults stop, a leader must be there within this bound, for a seed whose candidates
/// use `lease`: a confirming read (a minute: a forged hint with an endless lease is believed
/// until then), a vanished record's wait (up to four leases: the longest lease a read or hint
/// showed for it, capped at four of the candidate's own), the hold of the record made again
/// (a lease), a foreign holder's lease, and poll jitter. Seed 516210 (lease 19.2 s) needed the
/// confirming read, the four leases and the hold after a forged ghost hint: 153 s.
fn settle(lease: Duration) -> Duration {
    Duration::from_secs(60) + lease * 6 + Duration::from_secs(10)
}

/// One term as the candidate's inline event callback saw it.
#[derive(Clone, Debug)]
struct TermSeen {
    candidate: usize,
    token: u64,
    started: Instant,
    /// When the elector ended it (`None`: still running at the end).
    stopped: Option<Instant>,
    term: lock_core::Leadership,
}

impl TermSeen {
    /// The last instant at which the term was valid: the earlier of its end and its validity
    /// by the clock.
    fn end(&self) -> Instant {
        let valid_until = self.term.valid_until();
        self.stopped.map_or(valid_until, |at| at.min(valid_until))
    }
}

/// One write a candidate sent: who, when, and the holder and token it wrote.
#[derive(Clone, Debug)]
struct Sent {
    candidate: usize,
    at: Instant,
    holder: String,
    token: i64,
}

struct Sim {
    lock: MemoryLock,
    /// Every write the candidates sent, in order.
    sent: Arc<Mutex<Vec<Sent>>>,
    /// The free records (releases) the store took from each candidate, whatever its caller
    /// was told.
    landed_free: Arc<Mutex<Vec<Sent>>>,
    /// The releases each candidate announced (`Released`, `HandedBack`): candidate, token.
    announced: Arc<Mutex<Vec<(usize, u64)>>>,
    /// The identity of each candidate.
    identities: Vec<&'static str>,
    /// Faults injected so far (steps that were not heals).
    injected: u64,
    faults: Vec<FaultControl>,
    terms: Arc<Mutex<Vec<TermSeen>>>,
    cancel: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<lock_core::RunOutcome>>,
    handles: Vec<lock_core::ElectorHandle>,
    /// Each candidate's readiness (all start ready).
    readiness: Vec<tokio::sync::watch::Sender<bool>>,
    log: Vec<String>,
    /// The backend has no token floor: after a deletion, a candidate that missed the latest
    /// terms (cut off, hints dropped) may start below them, the documented limit of Redis and
    /// Kubernetes; tokens are checked on the backend with a floor only.
    no_floor: bool,
    /// When records were written from outside (free, foreign or a twin's): a forced handover,
    /// after which a leader that cannot hear of it (cut off) may overlap with the next one
    /// until its renew deadline. Overlaps across such a write are the documented cost of
    /// editing the record by hand, not a violation.
    outside_writes: Vec<Instant>,
    /// The candidates' lease duration.
    lease: Duration,
}

fn identities(rng: &mut StdRng) -> Vec<&'static str> {
    let n = rng.random_range(2..6);
    let mut ids: Vec<&'static str> = ["a", "b", "c", "d", "e"][..n].to_vec();
    if rng.random_bool(0.25) {
        ids[1] = "a";
    }
    ids
}

/// client-go's defaults for half the seeds, random valid timings (the same for every
/// candidate) for the others.
fn timings(rng: &mut StdRng) -> (Duration, Duration, Duration) {
    if rng.random_bool(0.5) {
        return (
            Duration::from_secs(15),
            Duration::from_secs(10),
            Duration::from_secs(2),
        );
    }
    let retry = Duration::from_millis(rng.random_range(100..3_000));
    let rd = retry.mul_f64(1.2) + Duration::from_millis(rng.random_range(1..8_000));
    let lease = rd + Duration::from_millis(rng.random_range(1..10_000));
    (lease, rd, retry)
}

impl Sim {
    fn start(seed: u64, rng: &mut StdRng) -> Self {
        let lock = MemoryLock::new(format!("sim-{seed}"));
        let terms = Arc::new(Mutex::new(Vec::new()));
        let cancel = CancellationToken::new();
        let mut sim = Sim {
            lock: lock.clone(),
            faults: Vec::new(),
            terms: terms.clone(),
            cancel: cancel.clone(),
            tasks: Vec::new(),
            handles: Vec::new(),
            readiness: Vec::new(),
            log: Vec::new(),
            sent: Arc::new(Mutex::new(Vec::new())),
            landed_free: Arc::default(),
            announced: Arc::default(),
            identities: Vec::new(),
            injected: 0,
            outside_writes: Vec::new(),
            no_floor: false,
            lease: Duration::ZERO,
        };
        // Half the seeds run on a backend without a token floor (Redis, Kubernetes).
        let no_floor = rng.random_bool(0.5);
        sim.no_floor = no_floor;
        let (lease, rd, retry) = timings(rng);
        sim.lease = lease;
        for (index, identity) in identities(rng).into_iter().enumerate() {
            let inner: Arc<dyn Lock> = if no_floor {
                Arc::new(NoFloor(lock.clone()))
            } else {
                Arc::new(lock.clone())
            };
            // Between the faults and the store: what landed, whatever the caller hears.
            let landed = Recorder {
                inner,
                candidate: index,
                writes: sim.landed_free.clone(),
                records: Records::LandedFree,
            };
            let faulty = FaultyLock::new(landed);
            sim.faults.push(faulty.faults());
            sim.identities.push(identity);
            let faulty = Recorder {
                inner: faulty,
                candidate: index,
                writes: sim.sent.clone(),
                records: Records::Sent,
            };
            let config = ElectionConfig::new(identity)
                .with_lease_duration(lease)
                .with_renew_deadline(rd)
                .with_retry_period(retry)
                .with_rejoin(true)
                .with_release_on_cancel(rng.random_bool(0.5))
                .with_random_seed(rng.random());
            let unready_leader = if rng.random_bool(0.5) {
                UnreadyLeader::HandOver
            } else {
                UnreadyLeader::KeepLeading
            };
            let (ready, readiness) = tokio::sync::watch::channel(true);
            sim.readiness.push(ready);
            let elector = LeaderElector::new(faulty, config)
                .expect("valid config")
                .with_readiness(readiness, unready_leader);
            let seen = terms.clone();
            let announced = sim.announced.clone();
            elector.on_event(move |event| {
                if let ElectionEvent::Released { fencing_token }
                | ElectionEvent::HandedBack { fencing_token } = event
                {
                    announced.lock().unwrap().push((index, *fencing_token));
                }
                let mut seen = seen.lock().unwrap();
                match event {
                    ElectionEvent::StartedLeading(term) => seen.push(TermSeen {
                        candidate: index,
                        token: term.fencing_token(),
                        started: Instant::now(),
                        stopped: None,
                        term: term.clone(),
                    }),
                    ElectionEvent::StoppedLeading { fencing_token, .. } => {
                        if let Some(last) = seen.iter_mut().rev().find(|t| {
                            t.candidate == index && t.token == *fencing_token && t.stopped.is_none()
                        }) {
                            last.stopped = Some(Instant::now());
                        }
                    }
                    _ => {}
                }
            });
            sim.handles.push(elector.handle());
            sim.tasks.push(tokio::spawn(elector.run(cancel.clone())));
        }
        sim
    }

    /// One random fault, logged for the failure report.
    async fn fault(&mut self, rng: &mut StdRng) {
        let who = rng.random_range(0..self.faults.len());
        let faults = self.faults[who].clone();
        let current = self.lock.get().await.ok().flatten();
        let next_token = current
            .as_ref()
            .map_or(0, |seen| seen.record.leader_transitions.max(0) + 1);
        let step = match rng.random_range(0..16) {
            0 => {
                let on = rng.random_bool(0.6);
                faults.set_unavailable(on);
                format!("cut {who}: {on}")
            }
            1 => {
                let latency = Duration::from_millis(rng.random_range(0..40_000));
                faults.set_latency(latency);
                format!("latency {who}: {latency:?}")
            }
            2 => {
                let n = rng.random_range(1..4);
                faults.fail_next(n);
                format!("fail next {n} of {who}")
            }
            3 => {
                let n = rng.random_range(1..3);
                faults.conflict_next(n);
                format!("conflict next {n} of {who}")
            }
            4 if rng.random_bool(0.4) => {
                let n = rng.random_range(1..3);
                faults.lose_replies_next(n);
                format!("lose next {n} replies of {who}")
            }
            4 if rng.random_bool(0.5) => {
                let n = rng.random_range(1..3);
                faults.delay_next_writes(n);
                format!("next {n} writes of {who} land after the next read")
            }
            4 => {
                let n = rng.random_range(1..3);
                faults.unreplicate_next(n);
                format!("next {n} writes of {who} not confirmed durable")
            }
            5 => {
                let on = rng.random_bool(0.5);
                faults.set_drop_hints(on);
                format!("drop hints of {who}: {on}")
            }
            6 => {
                let on = rng.random_bool(0.5);
                faults.set_repeat_hints(on);
                format!("repeat hints of {who}: {on}")
            }
            7 => {
                self.lock.delete();
                "delete the record".to_owned()
            }
            8 | 9
                if current
                    .as_ref()
                    .is_some_and(|seen| !seen.record.holder_identity.is_empty())
                    && rng.random_bool(0.3) =>
            {
                // A client-go elector given the holder's identity adopts its record and renews
                // it, keeping acquireTime and leaderTransitions (the term's mark).
                let seen = current.expect("checked above");
                let micros = rng.random_range(1..1_000_000);
                let renewal = LeaderElectionRecord {
                    renew_time: chrono::DateTime::from_timestamp(1_700_000_100, micros * 1_000),
                    ..seen.record.clone()
                };
                if self.lock.update(&renewal, &seen.version).await.is_ok() {
                    self.outside_writes.push(Instant::now());
                }
                format!(
                    "outside renewal keeping the mark of {}",
                    seen.record.holder_identity
                )
            }
            8 | 9 => {
                let Some(seen) = current else {
                    return;
                };
                let holder = ["", "z", "a"][rng.random_range(0..3)];
                let outside = LeaderElectionRecord {
                    holder_identity: holder.into(),
                    lease_duration_seconds: rng.random_range(1..20),
                    leader_transitions: next_token,
                    acquire_time: chrono::DateTime::from_timestamp(1_700_000_000, 0),
                    ..Default::default()
                };
                if self.lock.update(&outside, &seen.version).await.is_ok() {
                    self.outside_writes.push(Instant::now());
                }
                format!("outside write: holder {holder:?}, token {next_token}")
            }
            10 => {
                self.lock.set_raw("not a record");
                "corrupt the record".to_owned()
            }
            11 => {
                // The current token: a forged hint that inflated tokens would break the
                // floor's premise (every token at most the version it landed at), which holds on
                // the backends that have a floor (etcd), where hints cannot be forged.
                let forged = LeaderElectionRecord {
                    holder_identity: "ghost".into(),
                    lease_duration_seconds: i32::MAX,
                    leader_transitions: (next_token - 1).max(0),
                    ..Default::default()
                };
                faults.forge_hint(Hint::Record(Versioned {
                    record: forged,
                    version: Version::from(rng.random_range(0..1_000u64)),
                }));
                format!("forged ghost hint to {who}")
            }
            12 if rng.random_bool(0.5) => {
                let Some(seen) = current else {
                    return;
                };
                faults.forge_hint(Hint::Record(Versioned {
                    record: LeaderElectionRecord {
                        holder_identity: String::new(),
                        ..seen.record
                    },
                    version: seen.version,
                }));
                format!("forged free hint at the current version to {who}")
            }
            12 => {
                faults.forge_hint(Hint::Changed);
                format!("forged Changed to {who}")
            }
            13 => {
                // A planned handover: an ordinary write that keeps holder, token and times, so
                // not a forced handover: terms must not overlap across it.
                let to = if rng.random_bool(0.8) {
                    self.identities[who]
                } else {
                    "ghost"
                };
                let asked = request_handover(&self.lock, to, Duration::from_secs(5)).await;
                format!(
                    "handover to {to}: {}",
                    if asked.is_ok() { "asked" } else { "refused" }
                )
            }
            14 => {
                let ready = rng.random_bool(0.5);
                self.readiness[who].send_replace(ready);
                format!("ready {who}: {ready}")
            }
            _ => {
                self.heal_one(who);
                self.log.push(format!("{:?} heal {who}", Instant::now()));
                return;
            }
        };
        self.injected += 1;
        self.log.push(format!("{:?} {step}", Instant::now()));
    }

    fn heal_one(&self, who: usize) {
        let faults = &self.faults[who];
        faults.set_unavailable(false);
        faults.set_latency(Duration::ZERO);
        faults.set_drop_hints(false);
        faults.set_repeat_hints(false);
        // Faults armed for the next calls are faults too: a reply lost after the heal is not
        // healed (seed 77023 lost two replies after it, and the held-back writes they left
        // took the election past the settle bound).
        faults.fail_next(0);
        faults.conflict_next(0);
        faults.lose_replies_next(0);
        faults.unreplicate_next(0);
        faults.delay_next_writes(0);
        self.readiness[who].send_replace(true);
    }

    async fn heal(&mut self) {
        for who in 0..self.faults.len() {
            self.heal_one(who);
        }
        if self.lock.get().await.is_err() {
            self.lock.delete();
            self.log.push("heal: delete the corrupt record".to_owned());
        }
    }

    /// Checks the invariants over every term; `Err` describes the first violation.
    fn check(&self) -> Result<(), String> {
        let mut terms = self.terms.lock().unwrap().clone();
        terms.sort_by_key(|t| t.started);
        for pair in terms.windows(2) {
            if pair[1].token <= pair[0].token && !self.no_floor {
                return Err(format!(
                    "token went from {} (candidate {}) to {} (candidate {})",
                    pair[0].token, pair[0].candidate, pair[1].token, pair[1].candidate
                ));
            }
        }
        for (i, earlier) in terms.iter().enumerate() {
            for later in &terms[i + 1..] {
                let forced = self
                    .outside_writes
                    .iter()
                    .any(|at| earlier.started <= *at && *at <= later.started);
                if later.candidate != earlier.candidate && later.started < earlier.end() && !forced
                {
                    return Err(format!(
                        "two leaders: candidate {} (token {}) started at {:?} while candidate {} (token {}) was valid until {:?}",
                        later.candidate, later.token, later.started, earlier.candidate, earlier.token, earlier.end()
                    ));
                }
            }
        }
        self.check_renews(&terms)?;
        self.check_releases()
    }

    /// Every release a candidate announced is one the store took from it (a free record with
    /// that token), never another writer's free record read back.
    fn check_releases(&self) -> Result<(), String> {
        let landed = self.landed_free.lock().unwrap();
        for (candidate, token) in self.announced.lock().unwrap().iter() {
            let took = landed.iter().any(|write| {
                write.candidate == *candidate && u64::try_from(write.token).ok() == Some(*token)
            });
            if !took {
                return Err(format!(
                    "candidate {candidate} announced the release of token {token}, but the store \
                     never took a free record with that token from it"
                ));
            }
        }
        Ok(())
    }

    /// No write of a term's holder and token is sent after the term started and after it
    /// ended (a renew past the deadline, or after the elector gave the term up).
    fn check_renews(&self, terms: &[TermSeen]) -> Result<(), String> {
        let sent = self.sent.lock().unwrap();
        for term in terms {
            let identity = self.identities[term.candidate];
            let late = sent.iter().find(|write| {
                write.candidate == term.candidate
                    && write.holder == identity
                    && u64::try_from(write.token).ok() == Some(term.token)
                    && write.at > term.started
                    && write.at > term.end()
            });
            if let Some(write) = late {
                return Err(format!(
                    "renew after the deadline: candidate {} sent a write of its term {} at {:?}, after the term ended at {:?}",
                    term.candidate, term.token, write.at, term.end()
                ));
            }
        }
        Ok(())
    }
}

/// What one seed did.
struct SeedRun {
    steps: usize,
    faults: u64,
}

async fn run_seed(seed: u64, max_steps: usize) -> Result<SeedRun, String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut sim = Sim::start(seed, &mut rng);
    let mut steps = 0;
    let mut violation = None;
    for _ in 0..max_steps.min(STEPS) {
        sleep(Duration::from_millis(rng.random_range(0..4_000))).await;
        sim.fault(&mut rng).await;
        steps += 1;
        if let Err(found) = sim.check() {
            violation = Some(format!("after step {steps}: {found}"));
            break;
        }
    }
    sim.heal().await;
    let healed = Instant::now();
    let mut led = false;
    let settle = settle(sim.lease);
    while Instant::now() < healed + settle {
        sleep(Duration::from_millis(500)).await;
        if sim.handles.iter().any(|h| h.is_leader()) {
            led = true;
            break;
        }
    }
    sim.cancel.cancel();
    for task in sim.tasks.drain(..) {
        let _ = task.await;
    }
    let result = match violation {
        Some(found) => Err(found),
        None => sim.check().and_then(|()| {
            led.then_some(())
                .ok_or_else(|| format!("nobody led within {settle:?} after the faults healed"))
        }),
    };
    let faults = sim.injected;
    result
        .map(|()| SeedRun { steps, faults })
        .map_err(|violation| {
            let terms: Vec<String> = sim
                .terms
                .lock()
                .unwrap()
                .iter()
                .map(|t| {
                    format!(
                        "{:?} candidate {} token {} valid until {:?}",
                        t.started,
                        t.candidate,
                        t.token,
                        t.end()
                    )
                })
                .collect();
            format!(
                "{violation}\nschedule:\n  {}\nterms:\n  {}",
                sim.log.join("\n  "),
                terms.join("\n  ")
            )
        })
}

fn seeds() -> Vec<u64> {
    if let Ok(seed) = std::env::var("SIM_SEED") {
        return vec![seed.parse().expect("SIM_SEED is a number")];
    }
    let count = std::env::var("SIM_SEEDS")
        .ok()
        .map_or(QUICK_SEEDS, |n| n.parse().expect("SIM_SEEDS is a number"));
    let base: u64 = std::env::var("SIM_BASE")
        .ok()
        .map_or(0, |n| n.parse().expect("SIM_BASE is a number"));
    (base..base + count).collect()
}

/// Stamps the trace with the paused clock's time since the run began (the wall clock barely
/// moves in a run of minutes of paused time).
struct PausedClock(std::time::Instant);

impl tracing_subscriber::fmt::time::FormatTime for PausedClock {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        let elapsed = Instant::now().into_std().saturating_duration_since(self.0);
        write!(w, "{:>9.3}s", elapsed.as_secs_f64())
    }
}

/// Runs one seed for at most `max_steps` steps on its own paused runtime.
fn run_on_paused_clock(seed: u64, max_steps: usize) -> Result<SeedRun, String> {
    // SIM_TRACE=1 with SIM_SEED prints the elector's logs of that run.
    let _logs = std::env::var("SIM_TRACE").is_ok().then(|| {
        tracing::subscriber::set_default(
            tracing_subscriber::fmt()
                .with_max_level(tracing::Level::DEBUG)
                .with_test_writer()
                .with_timer(PausedClock(std::time::Instant::now()))
                .finish(),
        )
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(run_seed(seed, max_steps))
}

/// The fewest steps of `seed`'s schedule that still fail (at most `failed_at`), found by
/// trying every shorter prefix from the shortest (each run is milliseconds).
fn shrink(seed: u64, failed_at: usize) -> (usize, String) {
    for steps in 0..failed_at {
        if let Err(violation) = run_on_paused_clock(seed, steps) {
            return (steps, violation);
        }
    }
    let violation = run_on_paused_clock(seed, failed_at)
        .err()
        .unwrap_or_else(|| "passed on the second run: the seed does not replay".to_owned());
    (failed_at, violation)
}

#[test]
fn simulated_schedules_never_make_two_leaders_or_reuse_a_token() {
    let seeds = seeds();
    let max_steps = std::env::var("SIM_STEPS")
        .ok()
        .map_or(STEPS, |n| n.parse().expect("SIM_STEPS is a number"));
    let started = std::time::Instant::now();
    let mut failures = Vec::new();
    let (mut steps, mut faults) = (0, 0);
    for &seed in &seeds {
        match run_on_paused_clock(seed, max_steps) {
            Ok(run) => {
                steps += run.steps;
                faults += run.faults;
            }
            Err(violation) => {
                let (shortest, shrunk) = shrink(seed, max_steps.min(STEPS));
                eprintln!(
                    "seed {seed} failed (replay: SIM_SEED={seed}): {violation}\n\
                     shrunk to {shortest} steps (replay: SIM_SEED={seed} SIM_STEPS={shortest}): {shrunk}"
                );
                failures.push(seed);
                if failures.len() >= 3 {
                    break;
                }
            }
        }
    }
    println!(
        "simulation: {} seeds (from {}), {steps} steps, {faults} faults injected, {} violations, in {:.1?}",
        seeds.len(),
        seeds.first().copied().unwrap_or(0),
        failures.len(),
        started.elapsed(),
    );
    assert!(failures.is_empty(), "failing seeds: {failures:?}");
}

/// What a [`Recorder`] keeps.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Records {
    /// Every write, when it is sent (before the faults: what the elector asked for, at the
    /// moment it asked), for the renew-deadline check.
    Sent,
    /// The free records the store took (between the faults and the store), for the check of
    /// announced releases.
    LandedFree,
}

/// Records a candidate's writes, as `records` says.
#[derive(Debug)]
struct Recorder<L> {
    inner: L,
    candidate: usize,
    writes: Arc<Mutex<Vec<Sent>>>,
    records: Records,
}

impl<L> Recorder<L> {
    fn note(&self, record: &LeaderElectionRecord) {
        self.writes.lock().unwrap().push(Sent {
            candidate: self.candidate,
            at: Instant::now(),
            holder: record.holder_identity.clone(),
            token: i64::from(record.leader_transitions),
        });
    }

    fn noted<T>(
        &self,
        record: &LeaderElectionRecord,
        result: lock_core::LockResult<T>,
    ) -> lock_core::LockResult<T> {
        if self.records == Records::LandedFree && result.is_ok() && record.is_free() {
            self.note(record);
        }
        result
    }
}

#[async_trait::async_trait]
impl<L: Lock> Lock for Recorder<L> {
    async fn get(&self) -> lock_core::LockResult<Option<Versioned>> {
        self.inner.get().await
    }
    async fn create(&self, record: &LeaderElectionRecord) -> lock_core::LockResult<Version> {
        if self.records == Records::Sent {
            self.note(record);
        }
        let result = self.inner.create(record).await;
        self.noted(record, result)
    }
    async fn update(
        &self,
        record: &LeaderElectionRecord,
        expected: &Version,
    ) -> lock_core::LockResult<Version> {
        if self.records == Records::Sent {
            self.note(record);
        }
        let result = self.inner.update(record, expected).await;
        self.noted(record, result)
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn watch(&self) -> Option<lock_core::backend::HintStream> {
        self.inner.watch()
    }
    async fn token_floor(&self) -> lock_core::LockResult<u64> {
        self.inner.token_floor().await
    }
}

/// A backend without a token floor whose hints still arrive (Redis, Kubernetes).
#[derive(Debug, Clone)]
struct NoFloor(MemoryLock);

#[async_trait::async_trait]
impl Lock for NoFloor {
    async fn get(&self) -> lock_core::LockResult<Option<Versioned>> {
        self.0.get().await
    }
    async fn create(&self, record: &LeaderElectionRecord) -> lock_core::LockResult<Version> {
        self.0.create(record).await
    }
    async fn update(
        &self,
        record: &LeaderElectionRecord,
        expected: &Version,
    ) -> lock_core::LockResult<Version> {
        self.0.update(record, expected).await
    }
    fn describe(&self) -> String {
        self.0.describe()
    }
    fn watch(&self) -> Option<lock_core::backend::HintStream> {
        self.0.watch()
    }
}
