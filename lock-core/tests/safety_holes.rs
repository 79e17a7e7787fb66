//! Regression tests for the safety holes of issue 11 that live in the elector, each named after
//! its hole, on tokio's paused clock: every one failed before its fix.

mod support;

use std::sync::Arc;
use std::time::Duration;

use lock_core::{
    ElectionState, FaultyLock, Hint, LeaderElectionRecord, Leadership, Lock, LockResult,
    MemoryLock, Version, Versioned,
};
use support::{config, start, Candidate, ScriptedHints, LEASE, RENEW_DEADLINE, RETRY};
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

/// A lock whose backend can tell a floor for new tokens (as etcd's revision does).
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
    let term = b.next_term(Duration::from_secs(60) + LEASE * 2).await;
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
