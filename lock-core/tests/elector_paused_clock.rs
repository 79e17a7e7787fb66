//! The elector's logic on tokio's paused clock, against the in-memory lock and the fault
//! wrapper: deterministic and fast, with exact timing assertions.

mod support;

use std::time::Duration;

use lock_core::backend::Version;
use lock_core::testing::{FaultyLock, MemoryLock};
use lock_core::{ElectionEvent, LeaderElectionRecord, Lock, RunOutcome, StopReason};
use support::{config, start, Candidate, ScriptedHints, LEASE, RENEW_DEADLINE, RETRY};
use tokio::time::{advance, sleep, Instant};

const MINUTE: Duration = Duration::from_secs(60);

async fn stored(lock: &MemoryLock) -> LeaderElectionRecord {
    lock.get().await.unwrap().expect("a record").record
}

#[tokio::test(start_paused = true)]
async fn a_lone_candidate_creates_the_record_and_leads_with_token_zero() {
    let lock = MemoryLock::new("lone");
    let mut a = start(lock.clone(), config("a"));
    let term = a.next_term(Duration::from_secs(1)).await;
    assert_eq!(term.fencing_token(), 0);
    assert!(term.is_leader());
    assert!(a.handle.is_leader());
    let record = stored(&lock).await;
    assert_eq!(record.holder_identity, "a");
    assert_eq!(record.lease_duration_seconds, 15);
    assert_eq!(record.leader_transitions, 0);
    assert!(record.acquire_time.is_some());
    assert_eq!(a.stop().await, RunOutcome::Cancelled { released: false });
    // Not released by default (client-go's default): the record still names a.
    assert_eq!(stored(&lock).await.holder_identity, "a");
}

#[tokio::test(start_paused = true)]
async fn the_leader_renews_with_its_cached_version_and_never_reads() {
    let lock = FaultyLock::new(MemoryLock::new("renew"));
    let faults = lock.faults();
    let inner = lock.inner().clone();
    let mut a = start(lock, config("a"));
    a.next_term(Duration::from_secs(1)).await;
    let acquired = stored(&inner).await;
    sleep(MINUTE).await;
    // One read while standing by, then only writes: one per retry period.
    assert_eq!(faults.counts().gets(), 1);
    let renews = faults.counts().updates();
    assert!((29..=31).contains(&renews), "{renews} renews in a minute");
    let record = stored(&inner).await;
    assert_eq!(
        record.acquire_time, acquired.acquire_time,
        "acquireTime kept on renew"
    );
    assert_eq!(record.leader_transitions, 0, "renewing is not a new term");
    assert!(a.handle.is_leader());
    a.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_conflict_makes_the_leader_read_once_and_keep_its_term() {
    let lock = FaultyLock::new(MemoryLock::new("conflict"));
    let faults = lock.faults();
    let mut a = start(lock, config("a"));
    let term = a.next_term(Duration::from_secs(1)).await;
    faults.conflict_next(1);
    sleep(RETRY * 3).await;
    assert_eq!(faults.counts().gets(), 2, "one read after the conflict");
    assert!(term.is_leader());
    assert!(!term.cancellation_token().is_cancelled());
    a.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_leader_whose_record_was_taken_steps_down_at_its_next_renew() {
    let lock = MemoryLock::new("taken");
    let mut a = start(lock.clone(), config("a").with_rejoin(false));
    let term = a.next_term(Duration::from_secs(1)).await;
    let current = lock.get().await.unwrap().unwrap();
    let usurper = LeaderElectionRecord {
        holder_identity: "z".into(),
        leader_transitions: 1,
        ..current.record
    };
    lock.update(&usurper, &current.version).await.unwrap();
    let outcome = tokio::time::timeout(RETRY * 2, a.task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        outcome,
        RunOutcome::LostLeadership(StopReason::Superseded {
            holder: Some("z".into())
        })
    );
    assert!(term.cancellation_token().is_cancelled());
    assert!(!term.is_leader());
    assert_eq!(
        stored(&lock).await.holder_identity,
        "z",
        "never overwritten"
    );
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_backend_ends_the_term_exactly_at_the_renew_deadline() {
    let lock = FaultyLock::new(MemoryLock::new("down"));
    let faults = lock.faults();
    let mut a = start(lock, config("a").with_rejoin(false));
    let term = a.next_term(Duration::from_secs(1)).await;
    sleep(Duration::from_millis(4_500)).await;
    let last_renew = term.renewed_at();
    faults.set_unavailable(true);
    term.lost().await;
    let lost_at = Instant::now();
    assert_eq!(lost_at, last_renew + RENEW_DEADLINE);
    assert!(
        lost_at < last_renew + LEASE,
        "before anyone else may take over"
    );
    assert!(!term.is_leader());
    assert!(!a.handle.is_leader());
    let outcome = a.task.await.unwrap();
    assert_eq!(
        outcome,
        RunOutcome::LostLeadership(StopReason::RenewDeadlineExceeded)
    );
}

#[tokio::test(start_paused = true)]
async fn one_failed_renew_is_retried_before_a_tight_deadline() {
    // Renew deadline 3 s < two retry periods of 2 s: a retry a full period later would be late.
    let lock = FaultyLock::new(MemoryLock::new("tight"));
    let faults = lock.faults();
    let tight = config("a")
        .with_lease_duration(Duration::from_secs(4))
        .with_renew_deadline(Duration::from_secs(3))
        .with_retry_period(Duration::from_secs(2));
    let mut a = start(lock, tight);
    let term = a.next_term(Duration::from_secs(1)).await;
    faults.fail_next(1);
    sleep(Duration::from_secs(30)).await;
    assert!(term.is_leader(), "one passing error must not cost the term");
    assert!(!term.cancellation_token().is_cancelled());
    a.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_hung_backend_cannot_stretch_the_term() {
    let lock = FaultyLock::new(MemoryLock::new("hung"));
    let faults = lock.faults();
    let mut a = start(lock, config("a"));
    let term = a.next_term(Duration::from_secs(1)).await;
    let last_renew = term.renewed_at();
    faults.set_latency(Duration::from_secs(3600));
    term.lost().await;
    assert_eq!(Instant::now(), last_renew + RENEW_DEADLINE);
    a.cancel.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_crashed_leader_is_replaced_one_lease_after_the_standby_observed_its_last_renew() {
    let lock = MemoryLock::new("crash");
    let mut a = start(lock.clone(), config("a"));
    let first = a.next_term(Duration::from_secs(1)).await;
    let mut b = start(lock.clone(), config("b"));
    sleep(Duration::from_millis(5_100)).await;
    let last_renew = first.renewed_at();
    a.task.abort();
    let second = b.next_term(LEASE * 2).await;
    // Hints deliver each renew at once, so the standby's observation is the send time here.
    assert_eq!(Instant::now(), last_renew + LEASE);
    assert_eq!(second.fencing_token(), first.fencing_token() + 1);
    assert_eq!(stored(&lock).await.leader_transitions, 1);
    b.stop().await;
}

#[tokio::test(start_paused = true)]
async fn without_hints_a_standby_polls_and_is_never_early() {
    let lock = MemoryLock::new("poll");
    let mut a = start(lock.clone(), config("a"));
    let first = a.next_term(Duration::from_secs(1)).await;
    let polled = FaultyLock::new(lock.clone());
    let faults = polled.faults();
    let mut b = start(polled, config("b").with_hints(false));
    sleep(MINUTE).await;
    let gets = faults.counts().gets();
    // client-go's cadence: one read every 2 to 4.4 s.
    assert!((13..=31).contains(&gets), "{gets} polls in a minute");
    let last_renew = first.renewed_at();
    a.task.abort();
    b.next_term(LEASE * 2).await;
    let waited = Instant::now() - last_renew;
    assert!(waited >= LEASE, "took over after {waited:?}");
    assert!(
        waited <= LEASE + RETRY.mul_f64(2.2) * 2,
        "took over after {waited:?}"
    );
    b.stop().await;
}

#[tokio::test(start_paused = true)]
async fn with_hints_an_idle_standby_reads_only_to_confirm_once_a_minute() {
    let lock = MemoryLock::new("idle");
    let mut a = start(lock.clone(), config("a"));
    a.next_term(Duration::from_secs(1)).await;
    let watched = FaultyLock::new(lock.clone());
    let faults = watched.faults();
    let b = start(watched, config("b"));
    sleep(MINUTE * 5 - Duration::from_secs(1)).await;
    assert_eq!(
        faults.counts().gets(),
        5,
        "the first read, then one confirming read a minute"
    );
    assert_eq!(faults.counts().updates() + faults.counts().creates(), 0);
    assert_eq!(b.handle.leader().as_deref(), Some("a"));
    b.stop().await;
    a.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_released_lock_is_taken_at_once_with_hints_and_within_a_poll_without() {
    for use_hints in [true, false] {
        let lock = MemoryLock::new("release");
        let mut a = start(lock.clone(), config("a").with_release_on_cancel(true));
        let first = a.next_term(Duration::from_secs(1)).await;
        let mut b = start(lock.clone(), config("b").with_hints(use_hints));
        sleep(Duration::from_secs(7)).await;
        let released_at = Instant::now();
        assert_eq!(a.stop().await, RunOutcome::Cancelled { released: true });
        assert!(first.cancellation_token().is_cancelled());
        let second = b.next_term(Duration::from_secs(5)).await;
        let waited = Instant::now() - released_at;
        if use_hints {
            assert_eq!(waited, Duration::ZERO);
        } else {
            assert!(waited <= RETRY.mul_f64(2.2), "waited {waited:?}");
        }
        assert_eq!(second.fencing_token(), first.fencing_token() + 1);
        b.stop().await;
    }
}

#[tokio::test(start_paused = true)]
async fn release_writes_nothing_when_the_record_no_longer_names_this_term() {
    let lock = FaultyLock::new(MemoryLock::new("no-release"));
    let faults = lock.faults();
    let inner = lock.inner().clone();
    let mut a = start(lock, config("a").with_release_on_cancel(true));
    a.next_term(Duration::from_secs(1)).await;
    // Another writer takes the lock between two renews; then a is cancelled.
    let current = inner.get().await.unwrap().unwrap();
    let other = LeaderElectionRecord {
        holder_identity: "z".into(),
        leader_transitions: 7,
        ..current.record
    };
    inner.update(&other, &current.version).await.unwrap();
    let writes_before = faults.counts().updates();
    assert_eq!(a.stop().await, RunOutcome::Cancelled { released: false });
    assert_eq!(
        faults.counts().updates(),
        writes_before,
        "no write on release"
    );
    assert_eq!(stored(&inner).await, other);
}

#[tokio::test(start_paused = true)]
async fn fencing_tokens_grow_with_every_term_even_for_the_same_identity() {
    let lock = FaultyLock::new(MemoryLock::new("rejoin"));
    let faults = lock.faults();
    let mut a = start(lock, config("a").with_rejoin(true));
    let first = a.next_term(Duration::from_secs(1)).await;
    faults.set_unavailable(true);
    first.lost().await;
    faults.set_unavailable(false);
    // The record still names a, but a stopped leading: its first successful read releases
    // that record (nobody leads under it), then a leaves the lock to others for a retry period
    // before it takes it again (late_renew.rs tests the release).
    let lost_at = Instant::now();
    let second = a.next_term(LEASE * 2).await;
    let waited = Instant::now() - lost_at;
    assert!(
        waited >= RETRY && waited < LEASE,
        "led again {waited:?} after losing"
    );
    assert!(second.fencing_token() > first.fencing_token());
    a.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_write_whose_reply_was_lost_is_adopted_when_the_next_read_shows_it_landed() {
    let lock = FaultyLock::new(MemoryLock::new("ambiguous"));
    let faults = lock.faults();
    let inner = lock.inner().clone();
    faults.lose_replies_next(1);
    let started = Instant::now();
    let mut a = start(lock, config("a"));
    let term = a.next_term(Duration::from_secs(1)).await;
    // The create landed though its reply was lost: the next read shows it, and the term counts
    // from when that write was sent.
    assert_eq!(Instant::now(), started);
    assert_eq!(term.fencing_token(), 0);
    assert_eq!(term.renewed_at(), started);
    assert_eq!(stored(&inner).await.holder_identity, "a");
    sleep(MINUTE).await;
    assert!(term.is_leader(), "renews as usual");
    a.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_write_not_confirmed_durable_starts_no_term_even_though_it_landed() {
    // A Redis whose replicas did not acknowledge the takeover: the record is on the primary,
    // but a failover may lose it and hand its token to someone else. The candidate must not
    // lead on it: it waits for the lease of what it wrote, then takes over above it.
    let lock = FaultyLock::new(MemoryLock::new("unreplicated"));
    let faults = lock.faults();
    let inner = lock.inner().clone();
    faults.unreplicate_next(1);
    let started = Instant::now();
    let mut a = start(lock, config("a"));
    let term = a.next_term(LEASE * 3).await;
    let waited = Instant::now() - started;
    assert!(
        waited >= LEASE,
        "led {waited:?} after a write that was not confirmed durable"
    );
    // Above the unconfirmed write's token 0, and above the backend's counter, which the
    // candidate reads once it has found its held-back write in place.
    assert!(term.fencing_token() > 0, "token {}", term.fencing_token());
    assert_eq!(
        u64::try_from(stored(&inner).await.leader_transitions).unwrap(),
        term.fencing_token()
    );
    assert!(term.is_leader());
    a.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_takeover_not_confirmed_durable_is_handed_back_at_once() {
    // Right after a Redis failover the replicas have not reattached yet: a takeover lands on
    // the new primary unacknowledged. It starts no term, and holding it for its lease would
    // leave everyone naming a leader that is not leading (the sentinel test saw no leader for
    // a lease after a failover). A takeover replaces a lease that ran out, so releasing it is
    // as safe as writing it was: it is handed back at once and the election goes on.
    let lock = FaultyLock::new(MemoryLock::new("unreplicated-takeover"));
    let faults = lock.faults();
    let inner = lock.inner().clone();
    inner
        .create(&LeaderElectionRecord {
            holder_identity: "x".to_owned(),
            lease_duration_seconds: 15,
            leader_transitions: 7,
            ..LeaderElectionRecord::default()
        })
        .await
        .unwrap();
    faults.unreplicate_next(1);
    let started = Instant::now();
    let mut a = start(lock, config("a"));
    let mut events = a.handle.subscribe();
    let term = a.next_term(LEASE * 3).await;
    let waited = Instant::now() - started;
    assert!(
        waited >= LEASE && waited < LEASE + RETRY * 3,
        "led {waited:?} after the start: the unconfirmed takeover was held for a lease"
    );
    assert!(term.fencing_token() > 8, "token {}", term.fencing_token());
    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        seen.push(label(event));
    }
    assert!(
        seen.iter().any(|label| label == "handed_back:8"),
        "the hand-back is announced: {seen:?}"
    );
    assert!(term.is_leader());
    a.stop().await;
}

#[tokio::test(start_paused = true)]
async fn renews_not_confirmed_durable_do_not_extend_the_term() {
    let lock = FaultyLock::new(MemoryLock::new("unreplicated-renews"));
    let faults = lock.faults();
    let mut a = start(lock, config("a").with_rejoin(false));
    let term = a.next_term(Duration::from_secs(1)).await;
    let last_confirmed = term.renewed_at();
    // Every renew lands but none is confirmed: the term ends by its renew deadline, counted
    // from the last confirmed write, although the record names a throughout.
    faults.unreplicate_next(u32::MAX);
    sleep(RENEW_DEADLINE + RETRY * 2).await;
    assert!(!term.is_leader());
    assert!(term.cancellation_token().is_cancelled());
    assert_eq!(term.renewed_at(), last_confirmed);
    a.stop().await;
}

#[tokio::test(start_paused = true)]
async fn cancelling_while_a_take_is_in_flight_still_ends_the_term_and_releases() {
    let lock = FaultyLock::new(MemoryLock::new("cancel-take"));
    let faults = lock.faults();
    let inner = lock.inner().clone();
    faults.set_latency(Duration::from_secs(1));
    let a = start(lock, config("a").with_release_on_cancel(true));
    let mut events = a.handle.subscribe();
    // t=0..1 s: the read; t=1..2 s: the token floor; t=2..3 s: the create. Cancel in the
    // middle of the create.
    sleep(Duration::from_millis(2_500)).await;
    assert_eq!(a.stop().await, RunOutcome::Cancelled { released: true });
    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        seen.push(label(event));
    }
    assert_eq!(
        seen,
        ["new_leader:a", "started", "stopped:Cancelled", "released"]
    );
    assert!(stored(&inner).await.is_free(), "nobody waits for a lease");
}

#[tokio::test(start_paused = true)]
async fn cancelling_after_an_unanswered_take_hands_back_what_landed() {
    let lock = FaultyLock::new(MemoryLock::new("cancel-unanswered"));
    let faults = lock.faults();
    let inner = lock.inner().clone();
    faults.set_latency(Duration::from_secs(1));
    faults.lose_replies_next(1);
    let a = start(lock, config("a").with_release_on_cancel(true));
    // t=0..1 s: the read; t=1..2 s: the token floor; t=2..3 s: the create lands, its reply is
    // lost; t=3 s: a read begins.
    sleep(Duration::from_millis(3_500)).await;
    assert_eq!(stored(&inner).await.holder_identity, "a");
    assert_eq!(a.stop().await, RunOutcome::Cancelled { released: true });
    assert!(stored(&inner).await.is_free());
}

#[tokio::test(start_paused = true)]
async fn fencing_tokens_never_repeat_at_the_top_of_the_range() {
    let lock = MemoryLock::new("exhausted");
    let top = LeaderElectionRecord {
        holder_identity: String::new(),
        lease_duration_seconds: 1,
        leader_transitions: i32::MAX,
        ..Default::default()
    };
    lock.create(&top).await.unwrap();
    let a = start(lock.clone(), config("a"));
    sleep(MINUTE).await;
    assert!(!a.handle.is_leader(), "no term without a greater token");
    assert_eq!(stored(&lock).await, top, "left as it was");
    a.stop().await;
}

/// A lock whose every record has the version "1", as a backend whose counter restarted after
/// the record was deleted and made again.
#[derive(Debug, Default)]
struct SameVersion {
    record: std::sync::Mutex<Option<LeaderElectionRecord>>,
}

#[async_trait::async_trait]
impl Lock for SameVersion {
    async fn get(&self) -> lock_core::LockResult<Option<lock_core::backend::Versioned>> {
        Ok(self
            .record
            .lock()
            .unwrap()
            .clone()
            .map(|record| lock_core::backend::Versioned {
                record,
                version: Version::new("1"),
            }))
    }
    async fn create(&self, record: &LeaderElectionRecord) -> lock_core::LockResult<Version> {
        *self.record.lock().unwrap() = Some(record.clone());
        Ok(Version::new("1"))
    }
    async fn update(
        &self,
        record: &LeaderElectionRecord,
        _expected: &Version,
    ) -> lock_core::LockResult<Version> {
        *self.record.lock().unwrap() = Some(record.clone());
        Ok(Version::new("1"))
    }
    fn describe(&self) -> String {
        "same-version".into()
    }
}

#[tokio::test(start_paused = true)]
async fn a_record_made_again_with_a_reused_version_restarts_the_lease_clock() {
    let lock = std::sync::Arc::new(SameVersion::default());
    let held = |holder: &str| LeaderElectionRecord {
        holder_identity: holder.into(),
        lease_duration_seconds: 15,
        ..Default::default()
    };
    *lock.record.lock().unwrap() = Some(held("b"));
    let s = start(lock.clone(), config("s"));
    sleep(Duration::from_secs(10)).await;
    // Another holder's record at the same version: s must see it as new.
    *lock.record.lock().unwrap() = Some(held("z"));
    let written_at = Instant::now();
    let mut took_over = None;
    for _ in 0..400 {
        sleep(Duration::from_millis(100)).await;
        if s.handle.is_leader() {
            took_over = Some(Instant::now());
            break;
        }
    }
    let waited = took_over.expect("s takes over once z's lease ran out") - written_at;
    assert!(
        waited >= LEASE,
        "s took over {waited:?} after z's record was written"
    );
    s.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_corrupt_record_is_reported_and_never_overwritten() {
    let lock = MemoryLock::new("corrupt");
    lock.set_raw("not a record");
    let a = start(lock.clone(), config("a"));
    sleep(MINUTE).await;
    assert_eq!(lock.raw().as_deref(), Some(&b"not a record"[..]));
    assert!(!a.handle.is_leader());
    assert!(a.handle.leadership().is_none());
    let err = lock.get().await.unwrap_err();
    assert!(err.to_string().contains("memory://corrupt"), "{err}");
    a.stop().await;
}

#[tokio::test(start_paused = true)]
async fn dropped_hints_cost_time_never_safety() {
    let lock = MemoryLock::new("dropped");
    let mut a = start(lock.clone(), config("a").with_release_on_cancel(true));
    let first = a.next_term(Duration::from_secs(1)).await;
    let deaf = FaultyLock::new(lock.clone());
    deaf.faults().set_drop_hints(true);
    let mut b = start(deaf, config("b"));
    sleep(Duration::from_secs(30)).await;
    assert!(
        !b.handle.is_leader(),
        "b missed every renew hint, yet never took over early"
    );
    assert!(first.is_leader());
    let released_at = Instant::now();
    a.stop().await;
    b.next_term(LEASE * 2).await;
    // Without the release hint, b takes over when its observed lease runs out.
    assert!(Instant::now() - released_at <= LEASE);
    b.stop().await;
}

#[tokio::test(start_paused = true)]
async fn repeated_hints_do_not_send_a_standby_back_to_a_record_it_saw_replaced() {
    let lock = MemoryLock::new("repeated");
    let mut a = start(lock.clone(), config("a").with_release_on_cancel(true));
    a.next_term(Duration::from_secs(1)).await;
    let mut standbys = Vec::new();
    for name in ["b", "c"] {
        let echoing = FaultyLock::new(lock.clone());
        echoing.faults().set_repeat_hints(true);
        let faults = echoing.faults();
        let candidate = start(echoing, config(name));
        let events = candidate.handle.subscribe();
        standbys.push((candidate, events, faults));
    }
    sleep(Duration::from_secs(5)).await;
    a.stop().await;
    sleep(Duration::from_secs(5)).await;
    let winner = lock.get().await.unwrap().unwrap().record.holder_identity;
    for (candidate, mut events, faults) in standbys {
        let mut seen = Vec::new();
        while let Ok(event) = events.try_recv() {
            seen.push(label(event));
        }
        let expected: Vec<String> = if candidate.handle.identity() == winner {
            vec![
                "new_leader:a".into(),
                "new_leader:-".into(),
                format!("new_leader:{winner}"),
                "started".into(),
            ]
        } else {
            vec![
                "new_leader:a".into(),
                "new_leader:-".into(),
                format!("new_leader:{winner}"),
            ]
        };
        assert_eq!(seen, expected, "{}", candidate.handle.identity());
        // At most one lost race for the loser: it never retries a record it saw replaced.
        assert!(faults.counts().updates() + faults.counts().creates() <= 4);
        candidate.stop().await;
    }
}

#[tokio::test(start_paused = true)]
async fn events_arrive_in_order_and_the_state_channel_agrees() {
    let lock = MemoryLock::new("events");
    let mut a = start(lock.clone(), config("a").with_release_on_cancel(true));
    let mut state = a.handle.state();
    a.next_term(Duration::from_secs(1)).await;
    assert!(state.borrow_and_update().leadership.is_some());
    assert_eq!(state.borrow().leader.as_deref(), Some("a"));
    let b = start(lock.clone(), config("b"));
    let mut b_events = b.handle.subscribe();
    sleep(Duration::from_secs(3)).await;
    let a_handle = a.handle.clone();
    a.stop().await;
    assert!(state.borrow_and_update().leadership.is_none());
    assert!(!a_handle.is_leader());
    sleep(Duration::from_secs(1)).await;
    let mut seen = Vec::new();
    while let Ok(event) = b_events.try_recv() {
        seen.push(label(event));
    }
    assert!(b.handle.is_leader());
    assert_eq!(
        seen,
        ["new_leader:a", "new_leader:-", "new_leader:b", "started"],
        "b saw the release, then its own term"
    );
    b.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_leader_sees_new_leader_started_stopped_released_in_that_order() {
    let lock = MemoryLock::new("order");
    let a = start(lock.clone(), config("a").with_release_on_cancel(true));
    let mut events = a.handle.subscribe();
    sleep(Duration::from_secs(5)).await;
    let handle = a.handle.clone();
    let Candidate { cancel, task, .. } = a;
    cancel.cancel();
    task.await.unwrap();
    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        seen.push(label(event));
    }
    assert_eq!(
        seen,
        ["new_leader:a", "started", "stopped:Cancelled", "released"]
    );
    assert!(handle.leadership().is_none());
    assert_eq!(handle.leader(), None, "the state knows the lock is free");
}

#[tokio::test(start_paused = true)]
async fn health_fails_for_a_leader_whose_backend_stopped_answering_until_it_sees_a_new_holder() {
    let lock = FaultyLock::new(MemoryLock::new("health-outage"));
    let faults = lock.faults();
    let inner = lock.inner().clone();
    let mut a = start(lock, config("a").with_rejoin(true));
    let term = a.next_term(Duration::from_secs(1)).await;
    let tolerance = Duration::from_secs(5);
    faults.set_unavailable(true);
    term.lost().await;
    // Stepped down at the renew deadline, but the lock still names a as far as a can tell.
    assert!(
        a.handle.check_health(tolerance).is_ok(),
        "within lease + tolerance"
    );
    sleep_until_after(term.renewed_at() + LEASE + tolerance).await;
    let err = a.handle.check_health(tolerance).unwrap_err();
    assert!(err.to_string().contains("believes it leads"), "{err}");
    // The backend answers again and another candidate holds the lock: healthy again.
    let b = start(inner.clone(), config("b"));
    faults.set_unavailable(false);
    sleep(LEASE * 2).await;
    let holder = stored(&inner).await.holder_identity;
    assert_eq!(a.handle.leader().as_deref(), Some(holder.as_str()));
    assert!(
        a.handle.check_health(tolerance).is_ok(),
        "healthy with {holder} leading"
    );
    assert!(b.handle.check_health(tolerance).is_ok());
    b.stop().await;
    a.stop().await;
}

async fn sleep_until_after(at: Instant) {
    tokio::time::sleep_until(at + Duration::from_millis(1)).await;
}

#[tokio::test(start_paused = true)]
async fn health_fails_only_for_a_wedged_leader() {
    let lock = MemoryLock::new("health");
    let mut a = start(lock.clone(), config("a"));
    let term = a.next_term(Duration::from_secs(1)).await;
    let tolerance = Duration::from_secs(20);
    assert!(a.handle.check_health(tolerance).is_ok());
    let b = start(lock.clone(), config("b"));
    // Wedge a: its loop stops running while it believes it leads.
    a.task.abort();
    advance(LEASE + tolerance).await;
    assert!(
        b.handle.check_health(tolerance).is_ok(),
        "standbys are healthy"
    );
    assert!(
        a.handle.check_health(tolerance).is_ok(),
        "not yet past lease + tolerance"
    );
    advance(Duration::from_secs(3)).await;
    let err = a.handle.check_health(tolerance).unwrap_err();
    assert!(
        err.to_string()
            .contains("believes it leads memory://health"),
        "{err}"
    );
    assert!(!term.is_leader(), "is_leader was already false long before");
    b.stop().await;
}

fn label(event: ElectionEvent) -> String {
    match event {
        ElectionEvent::NewLeader(leader) => {
            format!("new_leader:{}", leader.as_deref().unwrap_or("-"))
        }
        ElectionEvent::StartedLeading(_) => "started".into(),
        ElectionEvent::StoppedLeading { reason, .. } => format!("stopped:{reason:?}"),
        ElectionEvent::Released { .. } => "released".into(),
        ElectionEvent::HandedBack { fencing_token } => format!("handed_back:{fencing_token}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_hint_older_than_the_last_read_does_not_rewind_the_standby() {
    let lock = MemoryLock::new("late");
    let mut a = start(lock.clone(), config("a"));
    a.next_term(Duration::from_secs(1)).await;
    let old = lock.get().await.unwrap().unwrap();
    sleep(RETRY * 2).await;
    let (send, hints) = tokio::sync::mpsc::unbounded_channel();
    let scripted = FaultyLock::new(ScriptedHints::new(lock.clone(), hints));
    let faults = scripted.faults();
    let b = start(scripted, config("b"));
    sleep(Duration::from_millis(10)).await;
    assert_eq!(faults.counts().gets(), 1, "b read the current record");
    // A late hint for an older version that says the lock was free: b must not believe it.
    let released = LeaderElectionRecord {
        holder_identity: String::new(),
        ..old.record.clone()
    };
    send.send(lock_core::backend::Hint::Record(
        lock_core::backend::Versioned {
            record: released,
            version: old.version.clone(),
        },
    ))
    .unwrap();
    sleep(Duration::from_secs(1)).await;
    assert_eq!(
        faults.counts().updates() + faults.counts().creates(),
        0,
        "no take attempted"
    );
    assert_eq!(b.handle.leader().as_deref(), Some("a"));
    b.stop().await;
    a.stop().await;
}
