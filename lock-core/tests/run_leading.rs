//! `run_leading`: the leader's work runs with each term and stops when it ends; event streams end
//! with the election. On tokio's paused clock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lock_core::testing::{FaultyLock, MemoryLock};
use lock_core::{
    ElectionConfig, ElectionEvent, LeaderElector, Leadership, Lock, RunOutcome, WorkReturned,
    DEFAULT_LEASE_DURATION as LEASE, DEFAULT_RENEW_DEADLINE,
    DEFAULT_RENEW_DEADLINE as RENEW_DEADLINE,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What the work saw: (fencing token, started at, stopped at) per run of the work.
type Runs = Arc<Mutex<Vec<(u64, Instant, Option<Instant>)>>>;

/// Records when it is dropped: the moment the work was stopped.
struct StopStamp {
    runs: Runs,
    index: usize,
}

impl Drop for StopStamp {
    fn drop(&mut self) {
        self.runs.lock().unwrap()[self.index].2 = Some(Instant::now());
    }
}

/// Work that runs until it is stopped, recording its start and stop.
fn endless_work(
    runs: &Runs,
) -> impl FnMut(lock_core::Leadership) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
{
    let runs = runs.clone();
    move |term| {
        let runs = runs.clone();
        Box::pin(async move {
            let index = {
                let mut runs = runs.lock().unwrap();
                runs.push((term.fencing_token(), Instant::now(), None));
                runs.len() - 1
            };
            let _stamp = StopStamp { runs, index };
            std::future::pending::<()>().await;
        })
    }
}

/// The store goes away under the leader: the work is stopped no later than the term's clock
/// deadline; when the store is back, a new term starts the work again with a greater token.
#[tokio::test(start_paused = true)]
async fn work_stops_with_its_term_and_starts_with_the_next() {
    let lock = FaultyLock::new(MemoryLock::new("orders"));
    let faults = lock.faults();
    let elector = LeaderElector::new(lock, ElectionConfig::new("a").with_rejoin(true)).unwrap();
    let handle = elector.handle();
    let runs: Runs = Arc::default();
    let cancel = CancellationToken::new();
    let running = tokio::spawn(elector.run_leading(cancel.clone(), endless_work(&runs)));

    tokio::time::sleep(Duration::from_secs(1)).await;
    let first = handle.leadership().expect("a leads");
    faults.set_unavailable(true);
    tokio::time::sleep(RENEW_DEADLINE + Duration::from_secs(1)).await;
    {
        let runs = runs.lock().unwrap();
        assert_eq!(runs.len(), 1);
        let stopped = runs[0].2.expect("the work was stopped when the term ended");
        assert!(
            stopped <= first.valid_until(),
            "stopped after the term's deadline"
        );
    }
    faults.set_unavailable(false);
    tokio::time::sleep(LEASE * 2).await;
    {
        let runs = runs.lock().unwrap();
        assert_eq!(
            runs.len(),
            2,
            "a second term starts the work again: {runs:?}"
        );
        assert!(runs[1].0 > runs[0].0, "a greater token: {runs:?}");
        assert!(runs[1].2.is_none());
    }
    cancel.cancel();
    assert_eq!(
        running.await.unwrap(),
        RunOutcome::Cancelled { released: false }
    );
    assert!(runs.lock().unwrap()[1].2.is_some(), "cancel stops the work");
}

/// Work that returns ends the term and the election; with release on, the lock is free at once.
#[tokio::test(start_paused = true)]
async fn work_that_returns_releases_the_lock() {
    let lock = MemoryLock::new("orders");
    let config = ElectionConfig::new("a").with_release_on_cancel(true);
    let elector = LeaderElector::new(lock.clone(), config).unwrap();
    let outcome = elector
        .run_leading(CancellationToken::new(), |term| async move {
            assert!(term.is_leader());
            tokio::time::sleep(Duration::from_secs(3)).await;
        })
        .await;
    assert_eq!(outcome, RunOutcome::WorkReturned { released: true });
    let record = lock.get().await.unwrap().expect("a record").record;
    assert_eq!(record.holder_identity, "", "released");
}

/// Under `Restart`, work that returns at once is started again at most once a second, with the
/// same term.
#[tokio::test(start_paused = true)]
async fn restarted_work_waits_between_starts() {
    let elector = LeaderElector::new(MemoryLock::new("orders"), ElectionConfig::new("a")).unwrap();
    let starts: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::default();
    let cancel = CancellationToken::new();
    let recorded = starts.clone();
    let running = tokio::spawn(elector.run_leading_with(
        cancel.clone(),
        WorkReturned::Restart,
        move |term| {
            recorded
                .lock()
                .unwrap()
                .push((term.fencing_token(), Instant::now()));
            async {}
        },
    ));
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    cancel.cancel();
    assert_eq!(
        running.await.unwrap(),
        RunOutcome::Cancelled { released: false }
    );
    let starts = starts.lock().unwrap();
    assert_eq!(starts.len(), 4, "{starts:?}");
    for pair in starts.windows(2) {
        assert_eq!(pair[0].0, pair[1].0, "one term");
        assert!(
            pair[1].1 - pair[0].1 >= Duration::from_secs(1),
            "{starts:?}"
        );
    }
}

/// Dropping `run_leading`'s future stops the election too: the lock is released.
#[tokio::test(start_paused = true)]
async fn dropping_run_leading_stops_the_election() {
    let lock = MemoryLock::new("orders");
    let config = ElectionConfig::new("a").with_release_on_cancel(true);
    let elector = LeaderElector::new(lock.clone(), config).unwrap();
    let handle = elector.handle();
    let runs: Runs = Arc::default();
    let running = elector.run_leading(CancellationToken::new(), endless_work(&runs));
    let _ = tokio::time::timeout(Duration::from_secs(2), running).await;
    assert!(runs.lock().unwrap()[0].2.is_some(), "the work was stopped");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!handle.is_leader());
    let record = lock.get().await.unwrap().expect("a record").record;
    assert_eq!(record.holder_identity, "", "released");
}

/// Event streams end (after their queued events) when `run` returns, and a stream opened
/// afterwards is ended already: loops over them need no `break`.
#[tokio::test(start_paused = true)]
async fn event_streams_end_when_the_election_does() {
    let elector = LeaderElector::new(MemoryLock::new("orders"), ElectionConfig::new("a")).unwrap();
    let handle = elector.handle();
    let mut events = elector.subscribe();
    let cancel = CancellationToken::new();
    let running = tokio::spawn(elector.run(cancel.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    cancel.cancel();
    running.await.unwrap();
    let mut seen = Vec::new();
    while let Some(event) = events.recv().await {
        seen.push(event);
    }
    assert!(
        seen.iter()
            .any(|event| matches!(event, ElectionEvent::StartedLeading(_))),
        "{seen:?}"
    );
    assert!(
        matches!(seen.last(), Some(ElectionEvent::StoppedLeading { .. })),
        "{seen:?}"
    );
    assert!(handle.subscribe().recv().await.is_none());
}

/// The work is never polled once `is_leader()` is false, even before any timer fired: tokio
/// rounds timers up to the next millisecond, so `ended` checks the clock on every poll.
#[tokio::test(start_paused = true)]
async fn work_is_polled_after_is_leader_turned_false() {
    // Any real clock is off a whole millisecond; make the paused one so too.
    tokio::time::advance(Duration::from_micros(500)).await;
    let lock = FaultyLock::new(MemoryLock::new("orders"));
    let faults = lock.faults();
    let elector = LeaderElector::new(lock, ElectionConfig::new("a").with_hints(false)).unwrap();
    let handle = elector.handle();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let seen: Arc<Mutex<Vec<bool>>> = Arc::default();
    let recorded = seen.clone();
    let mut rx = Some(rx);
    let work = move |term: Leadership| {
        let mut rx = rx.take().expect("one term");
        let recorded = recorded.clone();
        async move {
            // The leader's work: acts on every request, as long as it is polled.
            while rx.recv().await.is_some() {
                recorded.lock().unwrap().push(term.is_leader());
            }
            std::future::pending::<()>().await;
        }
    };
    let running = tokio::spawn(elector.run_leading(CancellationToken::new(), work));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let term = handle.leadership().expect("a leads");
    faults.set_unavailable(true);
    tokio::time::sleep_until(term.valid_until() - Duration::from_millis(5)).await;
    tokio::time::advance(term.valid_until() - Instant::now()).await;
    assert!(
        !term.is_leader(),
        "precondition: the term is over by the clock"
    );
    assert!(
        !term.cancellation_token().is_cancelled(),
        "precondition: the elector has not noticed yet"
    );
    tx.send(()).unwrap();
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let seen = seen.lock().unwrap().clone();
    running.abort();
    assert!(
        seen.is_empty(),
        "the work was polled (and acted) with is_leader() == false: {seen:?}"
    );
}

/// A panic on the elector's task (an `on_event` callback, a third-party lock) while an
/// `ElectorHandle` lives ends the event streams, so `run_leading` returns (resuming the panic)
/// instead of waiting forever.
#[tokio::test(start_paused = true)]
async fn a_panic_in_the_elector_ends_run_leading_with_that_panic() {
    let elector = LeaderElector::new(MemoryLock::new("orders"), ElectionConfig::new("a")).unwrap();
    let _handle = elector.handle(); // e.g. kept for a health endpoint
    elector.on_event(|event| {
        if matches!(event, ElectionEvent::StartedLeading(_)) {
            panic!("a bug in a metrics callback");
        }
    });
    let running = tokio::spawn(elector.run_leading(CancellationToken::new(), |_term| {
        std::future::pending::<()>()
    }));
    let ended = tokio::time::timeout(Duration::from_secs(24 * 3600), running)
        .await
        .expect("run_leading returns instead of waiting forever");
    let panic = ended.expect_err("run_leading resumes the elector's panic");
    assert!(panic.is_panic());
}

/// The work function is never called for a term that is over, however late the caller's task
/// gets to the event: what the closure does before its first await is leader's work too.
#[tokio::test(start_paused = true)]
async fn the_work_function_is_called_for_a_term_that_already_ended() {
    let lock = FaultyLock::new(MemoryLock::new("orders"));
    let faults = lock.faults();
    let elector = LeaderElector::new(lock, ElectionConfig::new("a")).unwrap();
    let called: Arc<Mutex<Vec<bool>>> = Arc::default();
    let recorded = called.clone();
    let mut running = Box::pin(elector.run_leading(
        CancellationToken::new(),
        move |term: Leadership| {
            recorded.lock().unwrap().push(term.is_leader());
            async {}
        },
    ));
    // The caller's task is polled once (the elector is spawned), then is busy for a while.
    assert!(futures::poll!(running.as_mut()).is_pending());
    tokio::time::sleep(Duration::from_secs(1)).await;
    faults.set_unavailable(true);
    tokio::time::sleep(DEFAULT_RENEW_DEADLINE + Duration::from_secs(1)).await;
    let outcome = running.await;
    assert!(
        matches!(outcome, RunOutcome::LostLeadership(_)),
        "{outcome:?}"
    );
    let called = called.lock().unwrap().clone();
    assert!(
        called.iter().all(|leading| *leading),
        "the work function ran with is_leader() == false: {called:?}"
    );
}

/// On cancel, the work is dropped before the elector ends the term and writes the release, even
/// when the work is in the middle of a synchronous step on another thread.
#[test]
fn release_is_written_while_the_work_is_still_running() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let in_section = Arc::new(AtomicBool::new(false));
    let released_during_section = Arc::new(AtomicBool::new(false));
    let cancel = CancellationToken::new();
    {
        let in_section = in_section.clone();
        let cancel = cancel.clone();
        // SIGTERM arrives while the work is between two awaits.
        std::thread::spawn(move || {
            while !in_section.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            cancel.cancel();
        });
    }
    let outcome = runtime.block_on(async {
        let config = ElectionConfig::new("a").with_release_on_cancel(true);
        let elector = LeaderElector::new(MemoryLock::new("orders"), config).unwrap();
        {
            let in_section = in_section.clone();
            let flag = released_during_section.clone();
            elector.on_event(move |event| {
                if matches!(event, ElectionEvent::Released { .. })
                    && in_section.load(Ordering::SeqCst)
                {
                    flag.store(true, Ordering::SeqCst);
                }
            });
        }
        let in_section = in_section.clone();
        elector
            .run_leading(cancel.clone(), move |_term| {
                let in_section = in_section.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    in_section.store(true, Ordering::SeqCst);
                    // A synchronous step (a blocking client call, a CPU-bound batch).
                    std::thread::sleep(Duration::from_millis(300));
                    in_section.store(false, Ordering::SeqCst);
                    std::future::pending::<()>().await;
                }
            })
            .await
    });
    assert_eq!(outcome, RunOutcome::Cancelled { released: true });
    assert!(
        !released_during_section.load(Ordering::SeqCst),
        "the lock was released while the work was still running"
    );
}

/// Dropping `run`'s future while leading ends the term as any end does: the state says no
/// term, and callbacks and subscribers get `StoppedLeading` before the streams end.
#[tokio::test(start_paused = true)]
async fn dropping_run_while_leading_announces_the_end_of_the_term() {
    let elector = LeaderElector::new(MemoryLock::new("orders"), ElectionConfig::new("a")).unwrap();
    let handle = elector.handle();
    let mut events = elector.subscribe();
    let stopped_callbacks = Arc::new(Mutex::new(0));
    let counted = stopped_callbacks.clone();
    elector.on_event(move |event| {
        if matches!(event, ElectionEvent::StoppedLeading { .. }) {
            *counted.lock().unwrap() += 1;
        }
    });
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        elector.run(CancellationToken::new()),
    )
    .await;
    assert!(handle.leadership().is_none(), "the state says no term");
    assert!(!handle.is_leader());
    let mut seen = Vec::new();
    while let Some(event) = events.recv().await {
        seen.push(event);
    }
    assert!(
        matches!(seen.last(), Some(ElectionEvent::StoppedLeading { .. })),
        "{seen:?}"
    );
    assert_eq!(*stopped_callbacks.lock().unwrap(), 1);
}

/// A `run` future dropped before its first poll ends the event streams too.
#[tokio::test(start_paused = true)]
async fn a_run_dropped_unpolled_ends_the_event_streams() {
    let elector = LeaderElector::new(MemoryLock::new("orders"), ElectionConfig::new("a")).unwrap();
    let _handle = elector.handle();
    let mut events = elector.subscribe();
    drop(elector.run(CancellationToken::new()));
    let ended = tokio::time::timeout(Duration::from_secs(1), events.recv()).await;
    assert!(matches!(ended, Ok(None)), "{ended:?}");
}
