//! The elector in leader-for-life mode over the in-memory life lock, on tokio's paused clock:
//! no clock ends a term, only the "platform" (the test) or a cancellation does; events and the
//! handle are those of the lease mode.

use std::time::Duration;

use lock_core::testing::MemoryLifeLock;
use lock_core::{ElectionConfig, ElectionEvent, LifeElector, LifeLock, RunOutcome, StopReason};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const RETRY: Duration = Duration::from_secs(2);

struct Candidate {
    handle: lock_core::ElectorHandle,
    events: UnboundedReceiver<ElectionEvent>,
    cancel: CancellationToken,
    running: JoinHandle<RunOutcome>,
}

fn start(lock: &MemoryLifeLock, config: ElectionConfig) -> Candidate {
    let elector = LifeElector::new(lock.clone(), config.with_retry_period(RETRY)).unwrap();
    let handle = elector.handle();
    let events = elector.subscribe();
    let cancel = CancellationToken::new();
    let running = tokio::spawn(elector.run(cancel.clone()));
    Candidate {
        handle,
        events,
        cancel,
        running,
    }
}

/// The next event within `limit` of paused time.
async fn next(events: &mut UnboundedReceiver<ElectionEvent>, limit: Duration) -> ElectionEvent {
    tokio::time::timeout(limit, events.recv())
        .await
        .expect("an event in time")
        .expect("the stream is open")
}

/// Skips `NewLeader` events up to the next other one.
async fn next_but_new_leader(events: &mut UnboundedReceiver<ElectionEvent>) -> ElectionEvent {
    loop {
        match next(events, Duration::from_secs(60)).await {
            ElectionEvent::NewLeader(_) => continue,
            other => return other,
        }
    }
}

async fn started(events: &mut UnboundedReceiver<ElectionEvent>) -> lock_core::Leadership {
    match next_but_new_leader(events).await {
        ElectionEvent::StartedLeading(term) => term,
        other => panic!("expected StartedLeading, got {other:?}"),
    }
}

/// No event but `NewLeader` arrives within `window`.
async fn no_term_within(events: &mut UnboundedReceiver<ElectionEvent>, window: Duration) {
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(event) = tokio::time::timeout_at(deadline, events.recv()).await {
        match event {
            Some(ElectionEvent::NewLeader(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_term_for_life_outlasts_any_lease_and_standbys_follow_it() {
    let lock = MemoryLifeLock::new("days");
    let mut a = start(&lock, ElectionConfig::new("a"));
    let term = started(&mut a.events).await;
    assert!(term.is_for_life());
    let mut b = start(&lock, ElectionConfig::new("b"));
    // b reads the holder and follows a.
    match next(&mut b.events, RETRY * 2).await {
        ElectionEvent::NewLeader(Some(holder)) => assert_eq!(holder, "a"),
        other => panic!("expected NewLeader(a), got {other:?}"),
    }
    assert_eq!(b.handle.leader().as_deref(), Some("a"));
    // A day passes without a single write: a still leads, b never does.
    no_term_within(&mut b.events, Duration::from_secs(24 * 3600)).await;
    assert!(term.is_leader());
    assert!(a.handle.is_leader());
    assert_eq!(a.handle.leader().as_deref(), Some("a"));
    assert!(a.handle.check_health(Duration::ZERO).is_ok());
    assert!(!b.handle.is_leader());
    assert_eq!(b.handle.leader().as_deref(), Some("a"));
    assert_eq!(lock.acquisitions(), 1);
    a.running.abort();
    b.running.abort();
}

#[tokio::test(start_paused = true)]
async fn the_death_of_the_holders_process_hands_over_at_once_with_a_greater_token() {
    let lock = MemoryLifeLock::new("death");
    let mut a = start(&lock, ElectionConfig::new("a"));
    let first = started(&mut a.events).await;
    let mut b = start(&lock, ElectionConfig::new("b"));
    no_term_within(&mut b.events, Duration::from_secs(60)).await;
    // a's process dies: its task is gone, and the platform frees its lock.
    a.running.abort();
    assert!(lock.process_gone("a"));
    let before = tokio::time::Instant::now();
    let second = started(&mut b.events).await;
    assert_eq!(
        before.elapsed(),
        Duration::ZERO,
        "woken at once, no lease to wait out"
    );
    assert!(second.fencing_token() > first.fencing_token());
    assert_eq!(
        lock.holder().await.unwrap(),
        Some(("b".to_owned(), second.fencing_token()))
    );
    b.running.abort();
}

#[tokio::test(start_paused = true)]
async fn a_hold_the_platform_ends_stops_the_term_first_and_rejoins_with_a_new_token() {
    let lock = MemoryLifeLock::new("expired");
    let mut a = start(&lock, ElectionConfig::new("a").with_rejoin(true));
    let first = started(&mut a.events).await;
    assert!(lock.end_hold());
    match next_but_new_leader(&mut a.events).await {
        ElectionEvent::StoppedLeading {
            fencing_token,
            reason,
        } => {
            assert_eq!(fencing_token, first.fencing_token());
            assert_eq!(reason, StopReason::HoldLost);
        }
        other => panic!("expected StoppedLeading, got {other:?}"),
    }
    assert!(!first.is_leader());
    assert!(first.cancellation_token().is_cancelled());
    let second = started(&mut a.events).await;
    assert!(second.fencing_token() > first.fencing_token());
    assert!(!first.is_leader(), "an ended term never comes back");
    a.running.abort();

    // Without rejoin, the election ends with the hold.
    let mut c = start(&lock, ElectionConfig::new("c"));
    lock.end_hold();
    let third = started(&mut c.events).await;
    lock.end_hold();
    assert_eq!(
        c.running.await.unwrap(),
        RunOutcome::LostLeadership(StopReason::HoldLost)
    );
    assert!(!third.is_leader());
}

#[tokio::test(start_paused = true)]
async fn cancelling_releases_when_asked_and_keeps_the_lock_otherwise() {
    let lock = MemoryLifeLock::new("shutdown");
    let mut a = start(&lock, ElectionConfig::new("a").with_release_on_cancel(true));
    let first = started(&mut a.events).await;
    let mut b = start(&lock, ElectionConfig::new("b"));
    a.cancel.cancel();
    assert!(matches!(
        next_but_new_leader(&mut a.events).await,
        ElectionEvent::StoppedLeading {
            reason: StopReason::Cancelled,
            ..
        }
    ));
    assert!(matches!(
        next_but_new_leader(&mut a.events).await,
        ElectionEvent::Released { fencing_token } if fencing_token == first.fencing_token()
    ));
    assert_eq!(
        a.running.await.unwrap(),
        RunOutcome::Cancelled { released: true }
    );
    let second = started(&mut b.events).await;
    assert!(second.fencing_token() > first.fencing_token());

    // b does not release: the lock stays b's until its process is gone.
    let mut c = start(&lock, ElectionConfig::new("c"));
    b.cancel.cancel();
    assert_eq!(
        b.running.await.unwrap(),
        RunOutcome::Cancelled { released: false }
    );
    assert!(!second.is_leader());
    no_term_within(&mut c.events, Duration::from_secs(3600)).await;
    assert_eq!(
        lock.holder()
            .await
            .unwrap()
            .map(|(holder, _)| holder)
            .as_deref(),
        Some("b")
    );
    lock.process_gone("b");
    let third = started(&mut c.events).await;
    assert!(third.fencing_token() > second.fencing_token());
    // A standby that is cancelled ends at once, without a term.
    let d = start(&lock, ElectionConfig::new("d"));
    d.cancel.cancel();
    assert_eq!(
        d.running.await.unwrap(),
        RunOutcome::Cancelled { released: false }
    );
    c.running.abort();
}

#[tokio::test(start_paused = true)]
async fn leader_for_life_is_also_a_constructor_of_the_lease_elector() {
    let lock = MemoryLifeLock::new("ctor");
    let elector =
        lock_core::LeaderElector::for_life(lock.clone(), ElectionConfig::new("a")).unwrap();
    assert_eq!(elector.handle().lock_name(), "memory-life://ctor");
    assert!(LifeElector::new(lock, ElectionConfig::new("")).is_err());
}

/// A session that ends by the clock unless kept (as an etcd lease): its hold has a deadline
/// that nothing moves on here, and a `lost` that nobody cancels (its keep-alive never runs).
#[derive(Debug)]
struct UnkeptSession(Duration);

struct NoRelease;

#[async_trait::async_trait]
impl lock_core::LifeRelease for NoRelease {
    async fn release(self: Box<Self>) -> lock_core::LockResult<()> {
        Ok(())
    }
}

#[async_trait::async_trait]
impl LifeLock for UnkeptSession {
    async fn acquire(
        &self,
        _identity: &str,
        _cancel: &CancellationToken,
    ) -> lock_core::LockResult<Option<lock_core::LifeHold>> {
        Ok(Some(lock_core::LifeHold {
            fencing_token: 7,
            lost: CancellationToken::new(),
            release: Box::new(NoRelease),
            deadline: Some(lock_core::HoldDeadline::new(
                tokio::time::Instant::now() + self.0,
            )),
        }))
    }

    async fn holder(&self) -> lock_core::LockResult<Option<(String, u64)>> {
        Ok(None)
    }

    fn describe(&self) -> String {
        "unkept-session".to_owned()
    }
}

/// A term whose hold has a deadline by the clock (an etcd session) is not leader once it has
/// passed, although the backend never said the hold was lost (its keep-alive did not run, as
/// in a process resumed from a long stop), and the elector stops it then.
#[tokio::test(start_paused = true)]
async fn a_holds_deadline_ends_the_term_without_the_backends_word() {
    let elector = LifeElector::new(
        UnkeptSession(Duration::from_secs(10)),
        ElectionConfig::new("a"),
    )
    .unwrap();
    let mut events = elector.subscribe();
    let running = tokio::spawn(elector.run(CancellationToken::new()));
    let term = started(&mut events).await;
    assert!(term.is_for_life() && term.is_leader());
    tokio::time::advance(Duration::from_millis(9_999)).await;
    assert!(term.is_leader());
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(!term.is_leader(), "the hold's deadline passed");
    match next_but_new_leader(&mut events).await {
        ElectionEvent::StoppedLeading {
            fencing_token,
            reason,
        } => {
            assert_eq!(fencing_token, 7);
            assert_eq!(reason, StopReason::HoldLost);
        }
        other => panic!("expected StoppedLeading, got {other:?}"),
    }
    assert_eq!(
        running.await.unwrap(),
        RunOutcome::LostLeadership(StopReason::HoldLost)
    );
}
