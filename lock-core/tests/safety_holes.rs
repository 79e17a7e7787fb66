//! Regression tests for the safety holes of issue 11 that live in the elector, each named after
//! its hole, on tokio's paused clock: every one failed before its fix.

mod support;

use std::sync::Arc;
use std::time::Duration;

use lock_core::backend::{Hint, Version, Versioned};
use lock_core::testing::{FaultyLock, MemoryLock};
use lock_core::{
    ElectionConfig, ElectionState, LeaderElectionRecord, Leadership, Lock, LockResult,
};
use support::{config, held_by, start, Candidate, ScriptedHints, LEASE, RENEW_DEADLINE, RETRY};
use tokio::time::{sleep, Instant};

const TICK: Duration = Duration::from_millis(100);

/// Samples both candidates every tick for `span` and fails if they ever lead at once.
async fn never_both_lead(a: &Candidate, b: &Candidate, span: Duration) {
    let end = Instant::now() + span;
    while Instant::now() < end {
        assert!(
            !(a.handle.is_leader() && b.handle.is_leader()),
            "{} and {} lead at once",
            a.handle.identity(),
            b.handle.identity()
        );
        sleep(TICK).await;
    }
}

/// A free record with `leaderTransitions` set, as a released lock leaves it.
fn free_at(token: i32) -> LeaderElectionRecord {
    LeaderElectionRecord {
        holder_identity: String::new(),
        lease_duration_seconds: 1,
        leader_transitions: token,
        ..Default::default()
    }
}

/// Hole 1: the leader is cut off from the store and the record is deleted. The standby used to
/// create the record at once, with token 0, while the cut-off leader still led.
#[tokio::test(start_paused = true)]
async fn hole1_a_vanished_record_is_not_free_and_its_tokens_do_not_restart() {
    let lock = MemoryLock::new("vanished");
    lock.create(&free_at(5)).await.unwrap();
    let cut = FaultyLock::new(lock.clone());
    let cable = cut.faults();
    let mut a = start(cut, config("a"));
    let first = a.next_term(Duration::from_secs(1)).await;
    assert_eq!(first.fencing_token(), 6);
    let mut b = start(lock.clone(), config("b"));
    sleep(RETRY).await;
    cable.set_unavailable(true);
    lock.delete();
    let deleted_at = Instant::now();
    let second = tokio::time::timeout(LEASE * 2, async {
        loop {
            assert!(
                !(first.is_leader() && b.handle.is_leader()),
                "b leads while the cut-off a still does"
            );
            if b.handle.is_leader() {
                return b.handle.leadership().unwrap();
            }
            sleep(TICK).await;
        }
    })
    .await
    .expect("b leads once the vanished record's lease ran out");
    assert!(
        Instant::now() - deleted_at >= LEASE,
        "a vanished record counts as held for a full lease"
    );
    assert!(
        second.fencing_token() > first.fencing_token(),
        "token {} after {}: tokens never go back after a deletion",
        second.fencing_token(),
        first.fencing_token()
    );
    let _ = b.next_term(Duration::from_secs(1)).await;
    b.stop().await;
    a.stop().await;
}

/// The memory lock with a fixed token floor and no hints: `floor: 0` is a backend without a
/// floor (Redis, Kubernetes) while polling; above 0, one whose counter survives a deletion.
#[derive(Debug)]
struct Floored {
    inner: MemoryLock,
    floor: u64,
}

#[async_trait::async_trait]
impl Lock for Floored {
    async fn get(&self) -> LockResult<Option<Versioned>> {
        self.inner.get().await
    }
    async fn create(&self, record: &LeaderElectionRecord) -> LockResult<Version> {
        self.inner.create(record).await
    }
    async fn update(
        &self,
        record: &LeaderElectionRecord,
        expected: &Version,
    ) -> LockResult<Version> {
        self.inner.update(record, expected).await
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn token_floor(&self) -> LockResult<u64> {
        Ok(self.floor)
    }
}

/// Hole 1: a candidate that never saw the record (started after the loss) relies on the
/// backend's floor, where the backend has one.
#[tokio::test(start_paused = true)]
async fn hole1_a_new_record_starts_at_the_backends_token_floor() {
    let lock = Floored {
        inner: MemoryLock::new("floored"),
        floor: 41,
    };
    let mut a = start(lock, config("a"));
    let term = a.next_term(Duration::from_secs(1)).await;
    assert_eq!(term.fencing_token(), 41);
    a.stop().await;
}

/// Hole 2: a free record written from outside under a leader used to leave it leading until its
/// next renew (up to a retry period, or the renew deadline with a slow store).
#[tokio::test(start_paused = true)]
async fn hole2_an_outside_write_ends_the_term_at_once() {
    for holder in ["", "z"] {
        let lock = MemoryLock::new("outside");
        let mut a = start(lock.clone(), config("a"));
        let term = a.next_term(Duration::from_secs(1)).await;
        sleep(RETRY / 2).await;
        let current = lock.get().await.unwrap().unwrap();
        let outside = LeaderElectionRecord {
            holder_identity: holder.into(),
            ..current.record.clone()
        };
        lock.update(&outside, &current.version).await.unwrap();
        let written_at = Instant::now();
        tokio::time::timeout(RETRY, term.lost())
            .await
            .expect("the term ends");
        assert!(
            Instant::now() - written_at < Duration::from_millis(10),
            "holder {holder:?}: ended {:?} after the outside write",
            Instant::now() - written_at
        );
        assert_eq!(
            lock.get().await.unwrap().unwrap().record,
            outside,
            "the outside write is left alone"
        );
        a.stop().await;
    }
}

/// Hole 2: a forged hint alone never ends a term; the leader checks with a read.
#[tokio::test(start_paused = true)]
async fn hole2_a_forged_hint_does_not_end_the_term() {
    let lock = MemoryLock::new("forged-to-leader");
    let (send, hints) = tokio::sync::mpsc::unbounded_channel();
    let mut a = start(ScriptedHints::new(lock.clone(), hints), config("a"));
    let term = a.next_term(Duration::from_secs(1)).await;
    let current = lock.get().await.unwrap().unwrap();
    send.send(Hint::Record(Versioned {
        record: LeaderElectionRecord {
            holder_identity: "ghost".into(),
            ..current.record.clone()
        },
        version: Version::from(1_000u64),
    }))
    .unwrap();
    send.send(Hint::Changed).unwrap();
    sleep(RETRY * 3).await;
    assert!(term.is_leader());
    a.stop().await;
}

/// Hole 3: two processes with the same identity. One's write went unanswered (it never landed)
/// while the twin took the lock with the same token; the next read named "a" with that token,
/// and the first adopted it: both led, for good, each renew accepting the other's record.
#[tokio::test(start_paused = true)]
async fn hole3_a_twin_with_the_same_identity_never_leads_with_this_process() {
    let lock = MemoryLock::new("twins");
    lock.create(&free_at(5)).await.unwrap();
    let slow = FaultyLock::new(lock.clone());
    let faults = slow.faults();
    faults.set_latency(Duration::from_secs(1));
    // t=0..1 s: the read (free at 5); t=1..2 s: the take, which fails before landing.
    let first = start(slow, config("a"));
    sleep(Duration::from_millis(1_500)).await;
    faults.fail_next(1);
    // The twin takes token 6 at t=1.5 s.
    let twin = start(lock.clone(), config("a"));
    never_both_lead(&first, &twin, Duration::from_secs(120)).await;
    assert!(
        twin.handle.is_leader(),
        "the twin that won keeps its term: the other waits for a lease that never runs out"
    );
    assert!(!first.handle.is_leader());
    let stored = lock.get().await.unwrap().unwrap().record;
    assert_eq!(stored.leader_transitions, 6, "one term only");
    first.stop().await;
    twin.stop().await;
}

/// Hole 3: release hands back only the exact record this process wrote, never a twin's term
/// with the same identity and token.
#[tokio::test(start_paused = true)]
async fn hole3_release_never_frees_a_twins_term() {
    let lock = MemoryLock::new("twin-release");
    let mut a = start(lock.clone(), config("a").with_release_on_cancel(true));
    a.next_term(Duration::from_secs(1)).await;
    // The twin's record: same identity and token, its own acquireTime.
    let current = lock.get().await.unwrap().unwrap();
    let twins = LeaderElectionRecord {
        acquire_time: chrono::DateTime::from_timestamp(1_700_000_000, 7_000),
        ..current.record.clone()
    };
    assert_ne!(twins.acquire_time, current.record.acquire_time);
    lock.update(&twins, &current.version).await.unwrap();
    sleep(Duration::from_millis(10)).await;
    a.stop().await;
    assert_eq!(
        lock.get().await.unwrap().unwrap().record,
        twins,
        "the twin's term is left alone"
    );
}

/// Hole 7: a leader cut off from the store stepped down at its renew deadline, but the handle
/// (and so `GET /`) kept naming it as leader.
#[tokio::test(start_paused = true)]
async fn hole7_a_cut_off_leader_stops_naming_itself_at_its_renew_deadline() {
    let cut = FaultyLock::new(MemoryLock::new("stale"));
    let cable = cut.faults();
    let mut a = start(cut, config("a").with_rejoin(true));
    let term = a.next_term(Duration::from_secs(1)).await;
    assert_eq!(a.handle.leader().as_deref(), Some("a"));
    cable.set_unavailable(true);
    let deadline = term.valid_until();
    tokio::time::sleep_until(deadline - TICK).await;
    assert_eq!(a.handle.leader().as_deref(), Some("a"));
    tokio::time::sleep_until(deadline).await;
    assert_eq!(a.handle.leader(), None, "not after its renew deadline");
    let state: ElectionState = a.handle.state().borrow().clone();
    assert_eq!(state.current_leader("a"), None);
    sleep(LEASE * 2).await;
    assert_eq!(
        a.handle.leader(),
        None,
        "still cut off: nobody known to lead"
    );
    a.stop().await;
}

/// Hole 7: a pause past the deadline (no task of the elector runs) answers right at once.
#[tokio::test(start_paused = true)]
async fn hole7_a_paused_leader_does_not_name_itself_the_moment_it_resumes() {
    let lock = MemoryLock::new("paused");
    let mut a = start(lock.clone(), config("a"));
    let term = a.next_term(Duration::from_secs(1)).await;
    let mut b = start(lock.clone(), config("b"));
    sleep(RETRY).await;
    assert_eq!(b.handle.leader().as_deref(), Some("a"));
    // Freeze both elector tasks, as SIGSTOP would, past the lease.
    a.task.abort();
    b.task.abort();
    tokio::time::advance(LEASE + RETRY).await;
    assert!(!term.is_leader());
    assert_eq!(a.handle.leader(), None, "a's term is over");
    assert_eq!(
        b.handle.leader(),
        None,
        "a's lease as b observed it has run out"
    );
    let _ = b.events.try_recv();
}

/// Hole 8: a forged hint naming a ghost with a huge lease made every standby follow the ghost;
/// a killed leader was then never replaced. Standbys confirm by a read at least once a minute.
#[tokio::test(start_paused = true)]
async fn hole8_a_forged_hint_delays_a_takeover_by_at_most_a_minute() {
    let lock = MemoryLock::new("ghost");
    let mut a = start(lock.clone(), config("a"));
    a.next_term(Duration::from_secs(1)).await;
    let (send, hints) = tokio::sync::mpsc::unbounded_channel();
    let mut b = start(ScriptedHints::new(lock.clone(), hints), config("b"));
    sleep(TICK).await;
    let current = lock.get().await.unwrap().unwrap();
    send.send(Hint::Record(Versioned {
        record: LeaderElectionRecord {
            holder_identity: "ghost".into(),
            lease_duration_seconds: i32::MAX,
            ..current.record.clone()
        },
        version: Version::from(1_000_000u64),
    }))
    .unwrap();
    sleep(TICK).await;
    a.task.abort();
    let killed_at = Instant::now();
    b.next_term(Duration::from_secs(60) + LEASE * 2).await;
    assert!(Instant::now() - killed_at >= LEASE);
    b.stop().await;
}

/// Hole 8: after the record's deletion a standby that follows a long lease with hints that say
/// nothing (a Redis `DEL` sends no message) finds out within a minute.
#[tokio::test(start_paused = true)]
async fn hole8_a_silent_deletion_is_found_by_the_confirming_read() {
    let lock = MemoryLock::new("silent-delete");
    let ghost = LeaderElectionRecord {
        holder_identity: "ghost".into(),
        lease_duration_seconds: i32::MAX,
        leader_transitions: 3,
        ..Default::default()
    };
    lock.create(&ghost).await.unwrap();
    let deaf = FaultyLock::new(lock.clone());
    deaf.faults().set_drop_hints(true);
    let mut b = start(deaf, config("b"));
    sleep(RETRY).await;
    lock.delete();
    // Found within a minute; then the vanished ghost's lease is waited for, capped at four of
    // b's own leases.
    let term = b.next_term(Duration::from_secs(60) + LEASE * 5).await;
    assert_eq!(term.fencing_token(), 4, "above the ghost's token");
    b.stop().await;
}

/// A lock whose versions the test sets, for a backend whose counter restarted lower after a
/// deletion (versions seeded from a clock that stepped back).
#[derive(Debug, Default)]
struct Settable {
    current: std::sync::Mutex<Option<Versioned>>,
}

#[async_trait::async_trait]
impl Lock for Settable {
    async fn get(&self) -> LockResult<Option<Versioned>> {
        Ok(self.current.lock().unwrap().clone())
    }
    async fn create(&self, record: &LeaderElectionRecord) -> LockResult<Version> {
        let mut current = self.current.lock().unwrap();
        if current.is_some() {
            return Err(lock_core::LockError::AlreadyExists {
                lock: self.describe(),
            });
        }
        *current = Some(Versioned {
            record: record.clone(),
            version: Version::from(1u64),
        });
        Ok(Version::from(1u64))
    }
    async fn update(
        &self,
        record: &LeaderElectionRecord,
        expected: &Version,
    ) -> LockResult<Version> {
        let mut current = self.current.lock().unwrap();
        let Some(seen) = current.as_ref().filter(|seen| &seen.version == expected) else {
            return Err(lock_core::LockError::Conflict {
                lock: self.describe(),
                expected: expected.to_string(),
            });
        };
        let next = Version::from(seen.version.as_str().parse::<u64>().unwrap() + 1);
        *current = Some(Versioned {
            record: record.clone(),
            version: next.clone(),
        });
        Ok(next)
    }
    fn describe(&self) -> String {
        "settable".into()
    }
}

/// Hole 14: a record made again at a lower version (a counter seeded from a clock that stepped
/// back) looked like a late hint, and every hint for it was dropped.
#[tokio::test(start_paused = true)]
async fn hole14_a_record_made_again_at_a_lower_version_is_read_not_dropped() {
    let lock = Arc::new(Settable::default());
    let held = |holder: &str, token: i32| LeaderElectionRecord {
        holder_identity: holder.into(),
        lease_duration_seconds: 15,
        leader_transitions: token,
        ..Default::default()
    };
    *lock.current.lock().unwrap() = Some(Versioned {
        record: held("old", 2),
        version: Version::from(900u64),
    });
    let (send, hints) = tokio::sync::mpsc::unbounded_channel();
    let mut b = start(ScriptedHints::new(lock.clone(), hints), config("b"));
    sleep(TICK).await;
    // Deleted and made again free, at version 3: the hint says so.
    let remade = Versioned {
        record: free_at(7),
        version: Version::from(3u64),
    };
    *lock.current.lock().unwrap() = Some(remade.clone());
    send.send(Hint::Record(remade)).unwrap();
    let term = b.next_term(Duration::from_secs(1)).await;
    assert_eq!(term.fencing_token(), 8);
    b.stop().await;
}

/// Hole 1 and 3 together: a leader whose term ended reads its own old record as its own (no
/// twin alarm, no adoption) and starts its next term above it.
#[tokio::test(start_paused = true)]
async fn hole1_a_leader_back_from_a_cut_starts_above_its_own_last_token() {
    let cut = FaultyLock::new(MemoryLock::new("back"));
    let cable = cut.faults();
    let mut a = start(cut, config("a").with_rejoin(true));
    let first: Leadership = a.next_term(Duration::from_secs(1)).await;
    cable.set_unavailable(true);
    first.lost().await;
    cable.set_unavailable(false);
    let second = a.next_term(LEASE * 2).await;
    assert!(second.fencing_token() > first.fencing_token());
    assert!(Instant::now() >= first.renewed_at() + RENEW_DEADLINE);
    a.stop().await;
}

// Found by an adversarial review of the fixes above (each failed before its fix).

/// A record that vanished, then came and went again between two polls of a standby: the
/// standby keeps counting the lease of the *first* absence and creates while the term that
/// came and went (its leader cut off) is still valid. Both also get the same token.
#[tokio::test(start_paused = true)]
async fn hole1_a_record_that_came_and_went_between_two_polls_is_not_missed() {
    let mut failures = Vec::new();
    for seed in 0..20u64 {
        let lock = MemoryLock::new("aba");
        lock.create(&held_by("z", 3)).await.unwrap();
        let a_lock = FaultyLock::new(Floored {
            inner: lock.clone(),
            floor: 0,
        });
        let a_cable = a_lock.faults();
        let b_lock = FaultyLock::new(Floored {
            inner: lock.clone(),
            floor: 0,
        });
        let b_cable = b_lock.faults();
        let mut a = start(a_lock, config("a").with_random_seed(seed));
        let b = start(b_lock, config("b").with_random_seed(seed + 1000));
        sleep(Duration::from_millis(500)).await;
        b_cable.set_unavailable(true);
        sleep(Duration::from_millis(500)).await;
        lock.delete();
        sleep(Duration::from_secs(7)).await;
        b_cable.set_unavailable(false);
        let term_a = a.next_term(Duration::from_secs(40)).await;
        // a is cut off at once, and its record deleted: a deletion under a cut-off leader.
        a_cable.set_unavailable(true);
        lock.delete();
        let deleted = Instant::now();
        let mut overlap = None;
        while Instant::now() < deleted + Duration::from_secs(30) {
            if term_a.is_leader() && b.handle.is_leader() {
                let tb = b.handle.leadership().unwrap();
                overlap = Some(format!(
                    "seed {seed}: a (token {}) valid until {:?} and b (token {}) lead at once, {:?} after the deletion",
                    term_a.fencing_token(),
                    term_a.valid_until() - deleted,
                    tb.fencing_token(),
                    Instant::now() - deleted
                ));
                break;
            }
            sleep(TICK).await;
        }
        if let Some(o) = overlap {
            failures.push(o);
        }
        a.stop().await;
        b.stop().await;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn never_both(a: &lock_core::Leadership, b: &support::Candidate) -> Option<String> {
    if a.is_leader() && b.handle.is_leader() {
        let tb = b.handle.leadership().unwrap();
        return Some(format!(
            "a (token {}) valid for {:?} more while b leads (token {})",
            a.fencing_token(),
            a.valid_until() - Instant::now(),
            tb.fencing_token()
        ));
    }
    None
}

/// A forged hint that shows the *current* version as free (anyone who can PUBLISH and read the
/// key can make one): the standby takes over by a compare-and-swap that succeeds, while the
/// leader's term is valid; the leader hears of it only through a slow read.
#[tokio::test(start_paused = true)]
async fn hole8_a_forged_free_hint_is_confirmed_by_a_read_before_a_takeover() {
    let lock = MemoryLock::new("forged-free");
    let slow = FaultyLock::new(lock.clone());
    let a_faults = slow.faults();
    let mut a = start(slow, config("a"));
    let term = a.next_term(Duration::from_secs(1)).await;
    a_faults.set_latency(Duration::from_secs(3));
    let (send, hints) = tokio::sync::mpsc::unbounded_channel();
    let b = start(ScriptedHints::new(lock.clone(), hints), config("b"));
    sleep(Duration::from_secs(6)).await;
    let current = lock.get().await.unwrap().unwrap();
    send.send(Hint::Record(Versioned {
        record: LeaderElectionRecord {
            holder_identity: String::new(),
            ..current.record.clone()
        },
        version: current.version.clone(),
    }))
    .unwrap();
    for _ in 0..100 {
        if let Some(o) = never_both(&term, &b) {
            panic!("{o}");
        }
        sleep(TICK).await;
    }
    a.stop().await;
    b.stop().await;
}

/// One forged ghost hint a minute: the confirming read restarts the dead leader's lease each
/// time, so a killed leader is never replaced.
#[tokio::test(start_paused = true)]
async fn hole8_a_forged_hint_each_minute_never_stops_the_election() {
    let lock = MemoryLock::new("ghost-each-minute");
    let mut a = start(lock.clone(), config("a"));
    a.next_term(Duration::from_secs(1)).await;
    let (send, hints) = tokio::sync::mpsc::unbounded_channel();
    let b = start(ScriptedHints::new(lock.clone(), hints), config("b"));
    sleep(TICK).await;
    a.task.abort();
    let killed = Instant::now();
    let current = lock.get().await.unwrap().unwrap();
    for i in 0..10u64 {
        send.send(Hint::Record(Versioned {
            record: LeaderElectionRecord {
                holder_identity: "ghost".into(),
                lease_duration_seconds: i32::MAX,
                ..current.record.clone()
            },
            version: Version::from(1_000_000 + i),
        }))
        .unwrap();
        sleep(Duration::from_secs(50)).await;
    }
    assert!(
        b.handle.is_leader(),
        "nobody leads {:?} after the leader was killed (one forged hint every 50 s)",
        Instant::now() - killed
    );
    b.stop().await;
}

/// One forged hint with leaderTransitions at i32::MAX: every standby that got it can never
/// start a term again (until restarted), whatever the store holds.
#[tokio::test(start_paused = true)]
async fn hole8_a_forged_huge_token_never_stops_the_election() {
    let lock = MemoryLock::new("huge-token");
    let mut a = start(lock.clone(), config("a"));
    a.next_term(Duration::from_secs(1)).await;
    let (send, hints) = tokio::sync::mpsc::unbounded_channel();
    let b = start(ScriptedHints::new(lock.clone(), hints), config("b"));
    sleep(TICK).await;
    send.send(Hint::Record(Versioned {
        record: LeaderElectionRecord {
            holder_identity: "ghost".into(),
            lease_duration_seconds: 1,
            leader_transitions: i32::MAX,
            ..Default::default()
        },
        version: Version::from(1_000_000u64),
    }))
    .unwrap();
    sleep(TICK).await;
    a.task.abort();
    sleep(Duration::from_secs(600)).await;
    assert!(
        b.handle.is_leader(),
        "nobody leads 10 min after the leader was killed"
    );
    b.stop().await;
}

/// A rolling change of timings: a leads with a 60 s lease and 50 s renew deadline; b has the
/// defaults. a is cut off and the record deleted: b waits its own 15 s lease for the vanished
/// record, not the 60 s it saw in a's record.
#[tokio::test(start_paused = true)]
async fn hole1_a_vanished_record_is_waited_for_with_its_holders_longer_lease() {
    let lock = MemoryLock::new("mixed");
    let cut = FaultyLock::new(lock.clone());
    let cable = cut.faults();
    let long = ElectionConfig::new("a")
        .with_lease_duration(Duration::from_secs(60))
        .with_renew_deadline(Duration::from_secs(50));
    let mut a = start(cut, long);
    let term = a.next_term(Duration::from_secs(1)).await;
    let b = start(lock.clone(), config("b"));
    sleep(RETRY).await;
    cable.set_unavailable(true);
    lock.delete();
    for _ in 0..600 {
        if let Some(o) = never_both(&term, &b) {
            panic!("{o}");
        }
        sleep(TICK).await;
    }
    a.stop().await;
    b.stop().await;
}

/// An outside write keeps the leader's exact record (holder, token, acquireTime mark) but
/// shortens its lease (kubectl edit of leaseDurationSeconds). The leader hears of it, reads,
/// finds "its own" record and carries on; the standby waits only the new 1 s lease.
#[tokio::test(start_paused = true)]
async fn hole2_an_outside_edit_that_shortens_the_leaders_lease_ends_its_term() {
    let lock = MemoryLock::new("own-short");
    let slow = FaultyLock::new(lock.clone());
    let a_faults = slow.faults();
    let mut a = start(slow, config("a"));
    let term = a.next_term(Duration::from_secs(1)).await;
    let b = start(lock.clone(), config("b"));
    sleep(RETRY + Duration::from_millis(10)).await; // just after a renew
    let current = lock.get().await.unwrap().unwrap();
    let edited = LeaderElectionRecord {
        lease_duration_seconds: 1,
        ..current.record.clone()
    };
    lock.update(&edited, &current.version).await.unwrap();
    sleep(TICK).await; // a has read "its own" record back and carries on
    a_faults.set_latency(Duration::from_millis(800)); // a store answering in 0.8 s
    for _ in 0..300 {
        if let Some(o) = never_both(&term, &b) {
            panic!("{o}");
        }
        sleep(TICK / 10).await;
    }
    a.stop().await;
    b.stop().await;
}

/// A suspend (the boot clock runs, the monotonic one does not) while a renew is in flight: the
/// term's boot stamp is derived *after* the reply as "boot now less the monotonic time since the
/// send", so the whole suspend is counted as if it were before the send and the term looks
/// fresh although more than the renew deadline passed in real time since the renew was sent.
/// (std::thread::sleep stands in for the suspend: it moves the boot clock, not tokio's paused
/// clock.)
#[tokio::test(start_paused = true)]
async fn hole7_a_suspend_during_a_renew_counts_after_its_send() {
    let quick = |id: &str| {
        ElectionConfig::new(id)
            .with_lease_duration(Duration::from_secs(3))
            .with_renew_deadline(Duration::from_secs(2))
            .with_retry_period(Duration::from_millis(500))
    };
    let slow = FaultyLock::new(MemoryLock::new("suspend"));
    let faults = slow.faults();
    let mut a = start(slow, quick("a"));
    let term = a.next_term(Duration::from_secs(1)).await;
    faults.set_latency(Duration::from_millis(300));
    sleep(Duration::from_millis(600)).await; // the renew sent at 0.5 s is in flight
    std::thread::sleep(Duration::from_millis(2_500)); // suspended for 2.5 s
    sleep(Duration::from_millis(300)).await; // its reply arrives
    assert!(
        !term.is_leader(),
        "2.5 s of real time passed since the last renew was sent (renew deadline 2 s), yet the term is valid"
    );
    a.stop().await;
}

// Found by a second adversarial review (each failed before its fix).

#[tokio::test(start_paused = true)]
async fn hole1_a_vanished_record_learnt_by_hint_is_waited_for_with_its_longer_lease() {
    let lock = MemoryLock::new("mixed-hinted");
    lock.create(&held_by("z", 1)).await.unwrap();
    let cut = FaultyLock::new(lock.clone());
    let cable = cut.faults();
    let long = ElectionConfig::new("a")
        .with_lease_duration(Duration::from_secs(60))
        .with_renew_deadline(Duration::from_secs(50));
    let mut a = start(cut, long);
    sleep(Duration::from_secs(1)).await;
    let (send, hints) = tokio::sync::mpsc::unbounded_channel();
    let b = start(ScriptedHints::new(lock.clone(), hints), config("b"));
    // a takes z's expired record over at 15 s; b (1 s later) hears of it by a genuine hint.
    let term = a.next_term(Duration::from_secs(20)).await;
    send.send(Hint::Record(lock.get().await.unwrap().unwrap()))
        .unwrap();
    sleep(Duration::from_secs(3)).await;
    assert_eq!(b.handle.leader().as_deref(), Some("a"));
    // a is cut off; the record vanishes (a Redis restart, a deletion); b hears of it.
    cable.set_unavailable(true);
    lock.delete();
    send.send(Hint::Changed).unwrap();
    let gone = Instant::now();
    while Instant::now() < gone + Duration::from_secs(70) {
        assert!(
            !(term.is_leader() && b.handle.is_leader()),
            "a (valid {:?} more) and b lead at once, {:?} after the record vanished",
            term.valid_until() - Instant::now(),
            Instant::now() - gone
        );
        sleep(TICK).await;
    }
    a.stop().await;
    b.stop().await;
}

/// A lock whose next create lands but loses its reply, after which reads fail until told
/// otherwise; its hints never come (a quiet stream).
#[derive(Debug, Clone)]
struct GateLock(std::sync::Arc<Gate>);

impl std::ops::Deref for GateLock {
    type Target = Gate;
    fn deref(&self) -> &Gate {
        &self.0
    }
}

#[derive(Debug)]
struct Gate {
    inner: MemoryLock,
    lose_create: std::sync::atomic::AtomicBool,
    fail_gets: std::sync::atomic::AtomicBool,
}

fn unavailable() -> lock_core::LockError {
    lock_core::LockError::Unavailable {
        lock: "gate".into(),
        reason: "injected".into(),
        source: None,
    }
}

#[async_trait::async_trait]
impl Lock for GateLock {
    async fn get(&self) -> lock_core::LockResult<Option<lock_core::backend::Versioned>> {
        if self.fail_gets.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(unavailable());
        }
        self.inner.get().await
    }
    async fn create(
        &self,
        record: &LeaderElectionRecord,
    ) -> lock_core::LockResult<lock_core::backend::Version> {
        let result = self.inner.create(record).await;
        if self
            .lose_create
            .swap(false, std::sync::atomic::Ordering::SeqCst)
            && result.is_ok()
        {
            self.fail_gets
                .store(true, std::sync::atomic::Ordering::SeqCst);
            return Err(unavailable());
        }
        result
    }
    async fn update(
        &self,
        record: &LeaderElectionRecord,
        expected: &lock_core::backend::Version,
    ) -> lock_core::LockResult<lock_core::backend::Version> {
        self.inner.update(record, expected).await
    }
    fn describe(&self) -> String {
        "gate".into()
    }
    fn watch(&self) -> Option<lock_core::backend::HintStream> {
        Some(Box::pin(tokio_stream::pending()))
    }
    async fn token_floor(&self) -> lock_core::LockResult<u64> {
        self.inner.token_floor().await
    }
}

/// b's create over a vanished record is one it must not lead with at once (a record came and
/// went meanwhile: c's, whose leader is cut off). Its reply is lost, and b is cancelled before
/// a read tells it the create landed: b "releases" that record, writing a free one, and d takes
/// the free record over at once while c's term is still valid. Had b's reply come back, the
/// record would have been held for a lease (HeldBack) and d would have waited it.
#[tokio::test(start_paused = true)]
async fn hole1_cancelling_never_frees_a_create_that_must_be_held() {
    let lock = MemoryLock::new("release-unchecked");
    lock.create(&held_by("z", 1)).await.unwrap();
    let gate = GateLock(std::sync::Arc::new(Gate {
        inner: lock.clone(),
        lose_create: false.into(),
        fail_gets: false.into(),
    }));
    let b = start(gate.clone(), config("b"));
    sleep(Duration::from_secs(1)).await;
    lock.delete(); // z's record is lost; b (quiet hints) finds out at z's expiry, at 15 s.
    sleep(Duration::from_secs(15)).await;
    assert!(!b.handle.is_leader());
    // c never saw a record: it creates at once (documented) and leads.
    let cut = FaultyLock::new(lock.clone());
    let cable = cut.faults();
    let mut c = start(cut, config("c"));
    let term_c = c.next_term(Duration::from_secs(1)).await;
    sleep(Duration::from_secs(12)).await;
    // c is cut off and its record lost; b's create is about to come (a lease after 15 s).
    cable.set_unavailable(true);
    lock.delete();
    gate.lose_create
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let gone = Instant::now();
    while !gate.fail_gets.load(std::sync::atomic::Ordering::SeqCst) {
        sleep(TICK).await;
        assert!(
            Instant::now() < gone + Duration::from_secs(20),
            "b never created"
        );
    }
    assert!(term_c.is_leader(), "c's term should still be valid here");
    // b is shut down (reads work again for its release).
    gate.fail_gets
        .store(false, std::sync::atomic::Ordering::SeqCst);
    b.cancel.cancel();
    sleep(TICK).await;
    let d = start(lock.clone(), config("d"));
    while term_c.is_leader() {
        assert!(
            !d.handle.is_leader(),
            "c (valid {:?} more, token {}) and d (token {}) lead at once; record: {:?}",
            term_c.valid_until() - Instant::now(),
            term_c.fencing_token(),
            d.handle.leadership().unwrap().fencing_token(),
            lock.get().await.unwrap().map(|v| v.record)
        );
        sleep(TICK).await;
    }
    c.stop().await;
    d.stop().await;
}

/// A memory lock whose versions are opaque tokens (as a Kubernetes resourceVersion is).
#[derive(Debug, Clone)]
struct Opaque(MemoryLock);

fn opaque(v: lock_core::backend::Version) -> lock_core::backend::Version {
    lock_core::backend::Version::new(v.as_str().to_owned())
}

#[async_trait::async_trait]
impl Lock for Opaque {
    async fn get(&self) -> lock_core::LockResult<Option<lock_core::backend::Versioned>> {
        Ok(self.0.get().await?.map(|v| lock_core::backend::Versioned {
            record: v.record,
            version: opaque(v.version),
        }))
    }
    async fn create(
        &self,
        record: &LeaderElectionRecord,
    ) -> lock_core::LockResult<lock_core::backend::Version> {
        self.0.create(record).await.map(opaque)
    }
    async fn update(
        &self,
        record: &LeaderElectionRecord,
        expected: &lock_core::backend::Version,
    ) -> lock_core::LockResult<lock_core::backend::Version> {
        self.0.update(record, expected).await.map(opaque)
    }
    fn describe(&self) -> String {
        "opaque".into()
    }
}

/// A genuine but late hint (of a renew that b never read, on a backend with opaque versions)
/// restarts b's view of x's lease: b's `leader()` names x for up to a lease after the lease b
/// observed for x's newest record ran out, while d already leads.
#[tokio::test(start_paused = true)]
async fn hole7_a_late_hint_never_names_a_holder_whose_lease_ran_out() {
    let lock = MemoryLock::new("late-hint");
    let store = Opaque(lock.clone());
    store.create(&held_by("x", 1)).await.unwrap();
    let (send, hints) = tokio::sync::mpsc::unbounded_channel();
    let b = start(ScriptedHints::new(store.clone(), hints), config("b"));
    sleep(Duration::from_secs(1)).await;
    // x renews twice (then dies); b hears of the renews only by a "changed" hint, and reads v3.
    let v1 = store.get().await.unwrap().unwrap();
    let mut renewed = v1.record.clone();
    renewed.renew_time = Some(chrono::Utc::now());
    let v2 = store.update(&renewed, &v1.version).await.unwrap();
    let late = lock_core::backend::Versioned {
        record: renewed.clone(),
        version: v2.clone(),
    };
    renewed.renew_time = Some(chrono::Utc::now() + chrono::Duration::seconds(1));
    store.update(&renewed, &v2).await.unwrap();
    send.send(Hint::Changed).unwrap();
    let read_v3 = Instant::now();
    let d = start(store.clone(), config("d").with_hints(false));
    sleep(Duration::from_secs(7)).await;
    // The hint of v2 arrives late.
    send.send(Hint::Record(late)).unwrap();
    sleep(TICK).await;
    while Instant::now() < read_v3 + Duration::from_secs(40) {
        if d.handle.is_leader() {
            assert_ne!(
                b.handle.leader().as_deref(),
                Some("x"),
                "b names x {:?} after it read x's last record (lease 15 s), while d leads",
                Instant::now() - read_v3
            );
        }
        sleep(TICK).await;
    }
    b.stop().await;
    d.stop().await;
}
