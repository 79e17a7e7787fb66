//! The observer on tokio's paused clock: it follows handovers, reports "no leader" the moment
//! an observed lease runs out, never trusts a hint, polls without hints, survives failed reads,
//! and never writes.

mod support;

use std::time::Duration;

use lock_core::backend::{Hint, Versioned};
use lock_core::testing::{FaultControl, FaultyLock, MemoryLock};
use lock_core::{
    LeaderElectionRecord, Lock, NoLeader, Observed, Observer, ObserverConfig, ObserverEvent,
};
use support::{config, start, ScriptedHints, LEASE, RENEW_DEADLINE, RETRY};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{sleep, Instant};
use tokio_util::sync::CancellationToken;

const MINUTE: Duration = Duration::from_secs(60);

struct Watching {
    events: mpsc::UnboundedReceiver<ObserverEvent>,
    state: tokio::sync::watch::Receiver<Observed>,
    faults: FaultControl,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

/// Starts an observer on `lock` through a fault wrapper that counts its calls.
fn observe(lock: MemoryLock, config: ObserverConfig) -> Watching {
    let lock = FaultyLock::new(lock);
    let faults = lock.faults();
    let observer = Observer::new(lock, config).expect("valid config");
    let events = observer.subscribe();
    let state = observer.state();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(observer.run(cancel.clone()));
    Watching {
        events,
        state,
        faults,
        cancel,
        task,
    }
}

impl Watching {
    /// The next event, within `within` (on the paused clock).
    async fn next(&mut self, within: Duration) -> ObserverEvent {
        tokio::time::timeout(within, self.events.recv())
            .await
            .unwrap_or_else(|_| panic!("no observer event within {within:?}"))
            .expect("the observer stopped")
    }

    /// The next change of leader, skipping read failures.
    async fn next_change(&mut self, within: Duration) -> Observed {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if let ObserverEvent::LeaderChanged(observed) = self.next(left).await {
                return observed;
            }
        }
    }

    /// Asserts that no change is reported for `period`.
    async fn quiet_for(&mut self, period: Duration) {
        if let Ok(event) = tokio::time::timeout(period, self.events.recv()).await {
            panic!("unexpected event {event:?}");
        }
    }

    /// Stops the observer and asserts it never wrote.
    async fn stop(self) -> u64 {
        self.cancel.cancel();
        self.task.await.expect("observer panicked");
        let counts = self.faults.counts();
        assert_eq!(counts.creates(), 0, "the observer created a record");
        assert_eq!(counts.updates(), 0, "the observer updated the record");
        assert_eq!(
            counts.token_floors(),
            0,
            "the observer asked for a token floor"
        );
        counts.gets()
    }
}

fn leader(observed: &Observed) -> (&str, u64) {
    observed
        .term_key()
        .unwrap_or_else(|| panic!("expected a leader, got {observed}"))
}

fn held(identity: &str, term: i32, lease_seconds: i32) -> LeaderElectionRecord {
    LeaderElectionRecord {
        holder_identity: identity.to_owned(),
        lease_duration_seconds: lease_seconds,
        leader_transitions: term,
        ..LeaderElectionRecord::default()
    }
}

#[tokio::test(start_paused = true)]
async fn follows_handovers_in_order_without_writing() {
    let lock = MemoryLock::new("handovers");
    let mut watching = observe(lock.clone(), ObserverConfig::default());
    assert_eq!(
        watching.next_change(Duration::from_secs(1)).await,
        Observed::NoLeader(NoLeader::NoRecord)
    );
    let mut terms = Vec::new();
    for round in 0..5u64 {
        let name = format!("c{}", round % 2);
        let mut candidate = start(lock.clone(), config(&name).with_release_on_cancel(true));
        let term = candidate.next_term(Duration::from_secs(20)).await;
        let seen = watching.next_change(Duration::from_secs(1)).await;
        assert_eq!(leader(&seen), (name.as_str(), term.fencing_token()));
        terms.push(term.fencing_token());
        // Renewals are not changes.
        watching.quiet_for(3 * LEASE).await;
        candidate.stop().await;
        assert_eq!(
            watching.next_change(Duration::from_secs(1)).await,
            Observed::NoLeader(NoLeader::Released {
                last_term: term.fencing_token()
            })
        );
    }
    assert_eq!(terms, [0, 1, 2, 3, 4]);
    watching.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_leader_that_stops_renewing_is_dropped_when_its_observed_lease_runs_out() {
    let lock = MemoryLock::new("killed");
    let mut watching = observe(lock.clone(), ObserverConfig::default());
    watching.next_change(Duration::from_secs(1)).await;
    let mut a = start(lock.clone(), config("a"));
    a.next_term(Duration::from_secs(1)).await;
    let seen = watching.next_change(Duration::from_secs(1)).await;
    assert_eq!(leader(&seen), ("a", 0));
    sleep(Duration::from_secs(30)).await;
    // Killed: no release, no more renews. The last renew was observed at most a poll ago.
    a.task.abort();
    let killed_at = Instant::now();
    let last_renew = lock.get().await.unwrap().unwrap();
    let gone = watching.next_change(LEASE + Duration::from_secs(1)).await;
    let waited = killed_at.elapsed();
    assert_eq!(
        gone,
        Observed::NoLeader(NoLeader::LeaseRanOut {
            identity: "a".to_owned(),
            term: 0
        })
    );
    assert!(
        waited > LEASE - RETRY - Duration::from_millis(500) && waited <= LEASE,
        "reported {waited:?} after the last renew"
    );
    // Never before the killed leader itself would have stopped leading.
    assert!(waited > RENEW_DEADLINE);
    // Nothing new was written: the record is the last renew, and it is not trusted.
    assert_eq!(lock.get().await.unwrap().unwrap(), last_renew);
    let now = Instant::now();
    assert_eq!(watching.state.borrow().leader_at(now), None);
    // A standby takes over once its own observation of the lease ran out.
    let mut b = start(lock.clone(), config("b"));
    b.next_term(LEASE + Duration::from_secs(5)).await;
    let seen = watching.next_change(Duration::from_secs(1)).await;
    assert_eq!(leader(&seen), ("b", 1));
    b.stop().await;
    watching.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_lease_is_counted_from_when_the_observer_read_the_version_not_from_renew_time() {
    let lock = MemoryLock::new("renew-time");
    // A record whose renewTime claims it was renewed in the far future.
    let mut record = held("a", 7, 10);
    record.renew_time = Some(chrono::Utc::now() + chrono::Duration::days(365));
    lock.create(&record).await.unwrap();
    let started = Instant::now();
    let mut watching = observe(lock.clone(), ObserverConfig::default());
    let Observed::Leader(seen) = watching.next_change(Duration::from_secs(1)).await else {
        panic!("expected a leader");
    };
    assert_eq!((seen.identity.as_str(), seen.term), ("a", 7));
    assert_eq!(seen.lease_expires_at, started + Duration::from_secs(10));
    let gone = watching.next_change(Duration::from_secs(11)).await;
    assert_eq!(
        gone,
        Observed::NoLeader(NoLeader::LeaseRanOut {
            identity: "a".to_owned(),
            term: 7
        })
    );
    assert_eq!(started.elapsed(), Duration::from_secs(10));
    watching.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_forged_hint_only_triggers_a_read() {
    let lock = FaultyLock::new(MemoryLock::new("forged"));
    let faults = lock.faults();
    let inner = lock.inner().clone();
    inner.create(&held("a", 3, 15)).await.unwrap();
    let observer = Observer::new(lock, ObserverConfig::default()).unwrap();
    let mut events = observer.subscribe();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(observer.run(cancel.clone()));
    let Some(ObserverEvent::LeaderChanged(first)) = events.recv().await else {
        panic!("expected the first read");
    };
    assert_eq!(leader(&first), ("a", 3));
    sleep(Duration::from_secs(1)).await;
    let reads = faults.counts().gets();
    let forged = Versioned {
        record: held("mallory", 99, 3600),
        version: 1_000u64.into(),
    };
    faults.forge_hint(Hint::Record(forged));
    sleep(Duration::from_millis(10)).await;
    assert_eq!(faults.counts().gets(), reads + 1, "the hint made it read");
    assert!(
        events.try_recv().is_err(),
        "no change may come from a forged hint"
    );
    cancel.cancel();
    task.await.unwrap();
    assert_eq!(faults.counts().creates() + faults.counts().updates(), 0);
}

#[tokio::test(start_paused = true)]
async fn without_hints_it_polls_every_retry_period_and_with_quiet_hints_confirms_every_minute() {
    let lock = MemoryLock::new("polling");
    lock.create(&held("a", 1, 3600)).await.unwrap();
    let mut polling = observe(lock.clone(), ObserverConfig::default().with_hints(false));
    let mut hinted = observe(lock.clone(), ObserverConfig::default());
    polling.next_change(Duration::from_secs(1)).await;
    hinted.next_change(Duration::from_secs(1)).await;
    sleep(3 * MINUTE + Duration::from_millis(10)).await;
    let polled = polling.stop().await;
    assert_eq!(
        polled,
        1 + 3 * 60 / RETRY.as_secs(),
        "one read per retry period"
    );
    let confirmed = hinted.stop().await;
    assert_eq!(confirmed, 1 + 3, "one confirming read a minute");
}

#[tokio::test(start_paused = true)]
async fn a_deleted_record_is_no_leader_and_a_changed_one_is_seen_through_hints() {
    let lock = MemoryLock::new("deleted");
    let mut watching = observe(lock.clone(), ObserverConfig::default());
    watching.next_change(Duration::from_secs(1)).await;
    lock.create(&held("a", 2, 3600)).await.unwrap();
    assert_eq!(
        leader(&watching.next_change(Duration::from_millis(10)).await),
        ("a", 2)
    );
    lock.delete();
    assert_eq!(
        watching.next_change(Duration::from_millis(10)).await,
        Observed::NoLeader(NoLeader::NoRecord)
    );
    watching.stop().await;
}

#[tokio::test(start_paused = true)]
async fn failed_and_slow_reads_are_reported_and_retried_and_the_leader_still_expires() {
    let lock = MemoryLock::new("failing");
    lock.create(&held("a", 5, 15)).await.unwrap();
    let started = Instant::now();
    let config = ObserverConfig::default().with_read_timeout(Duration::from_secs(1));
    let mut watching = observe(lock.clone(), config);
    assert_eq!(
        leader(&watching.next_change(Duration::from_secs(1)).await),
        ("a", 5)
    );
    watching.faults.set_latency(Duration::from_secs(30));
    lock.update(
        &held("a", 5, 15),
        &lock.get().await.unwrap().unwrap().version,
    )
    .await
    .unwrap();
    // The hint triggers a read that never answers in time.
    let ObserverEvent::ReadFailed(err) = watching.next(Duration::from_secs(2)).await else {
        panic!("expected a failed read");
    };
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("no answer within 1s"), "{err}");
    // Reported once, not per retry; the lease observed at the first read still runs out.
    let gone = watching.next(Duration::from_secs(15)).await;
    assert!(
        matches!(
            &gone,
            ObserverEvent::LeaderChanged(Observed::NoLeader(NoLeader::LeaseRanOut { .. }))
        ),
        "{gone:?}"
    );
    assert_eq!(started.elapsed(), LEASE);
    // Back: the renewed record is read as a new observation.
    watching.faults.set_latency(Duration::ZERO);
    watching.faults.set_unavailable(false);
    let back = watching.next_change(2 * RETRY).await;
    assert_eq!(leader(&back), ("a", 5));
    watching.stop().await;
}

#[tokio::test(start_paused = true)]
async fn when_the_hint_stream_ends_it_polls_every_retry_period() {
    let (hints, stream) = mpsc::unbounded_channel();
    let lock = FaultyLock::new(ScriptedHints::new(MemoryLock::new("ended"), stream));
    let faults = lock.faults();
    let observer = Observer::new(lock, ObserverConfig::default()).unwrap();
    let mut events = observer.subscribe();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(observer.run(cancel.clone()));
    assert!(matches!(
        events.recv().await,
        Some(ObserverEvent::LeaderChanged(Observed::NoLeader(
            NoLeader::NoRecord
        )))
    ));
    // Quiet hints: one confirming read a minute.
    sleep(MINUTE + Duration::from_millis(10)).await;
    assert_eq!(faults.counts().gets(), 2);
    // The stream ends (ScriptedHints gives no new one): a read at once, then polling.
    drop(hints);
    sleep(Duration::from_millis(10)).await;
    assert_eq!(faults.counts().gets(), 3);
    sleep(MINUTE).await;
    assert_eq!(faults.counts().gets(), 3 + 60 / RETRY.as_secs());
    cancel.cancel();
    task.await.unwrap();
    assert_eq!(faults.counts().creates() + faults.counts().updates(), 0);
}

#[tokio::test(start_paused = true)]
async fn hints_that_stop_silently_never_make_a_live_leader_flap() {
    let lock = MemoryLock::new("silent");
    let mut watching = observe(lock.clone(), ObserverConfig::default());
    watching.next_change(Duration::from_secs(1)).await;
    // The elector's own hints are not affected: only the observer's are swallowed.
    let mut a = start(lock.clone(), config("a"));
    a.next_term(Duration::from_secs(1)).await;
    assert_eq!(
        leader(&watching.next_change(Duration::from_secs(1)).await),
        ("a", 0)
    );
    watching.faults.set_drop_hints(true);
    let reads_before = watching.faults.counts().gets();
    // Renews are found by the read one retry period before each observed lease would end.
    watching.quiet_for(3 * MINUTE).await;
    let reads = watching.faults.counts().gets() - reads_before;
    let per_lease = (3 * MINUTE).as_secs() / (LEASE - RETRY).as_secs();
    assert!(
        (per_lease..=per_lease + 2).contains(&reads),
        "{reads} reads in 3 minutes"
    );
    assert!(watching
        .state
        .borrow()
        .leader_at(Instant::now())
        .is_some_and(|leader| leader.identity == "a"));
    a.stop().await;
    watching.stop().await;
}

/// Review: a read that is slow to answer (within the read timeout) must not hold back the
/// report that the observed lease ran out: while it waits, subscribers would go on believing
/// in a leader whose observed lease is over (and whom a standby may have replaced).
#[tokio::test(start_paused = true)]
async fn a_slow_read_does_not_delay_the_report_that_the_lease_ran_out() {
    let lock = MemoryLock::new("slow-read");
    lock.create(&held("a", 5, 15)).await.unwrap();
    let started = Instant::now();
    let mut watching = observe(lock.clone(), ObserverConfig::default());
    assert_eq!(
        leader(&watching.next_change(Duration::from_secs(1)).await),
        ("a", 5)
    );
    // Every read from now on answers after 4 s, within the default 5 s read timeout.
    watching.faults.set_latency(Duration::from_secs(4));
    let gone = watching.next_change(LEASE + RETRY * 2).await;
    assert!(
        matches!(gone, Observed::NoLeader(NoLeader::LeaseRanOut { .. })),
        "{gone:?}"
    );
    assert_eq!(
        started.elapsed(),
        LEASE,
        "'no leader' was reported late, while a read was under way"
    );
    watching.faults.set_latency(Duration::ZERO);
    watching.stop().await;
}
