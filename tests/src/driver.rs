//! Helpers for the tests of one backend's driver: reading its change hints, waiting for a hint
//! stream to end, watching again until a watch is served, and reading through a restart, each
//! bounded in time.

use std::time::Duration;

use futures::StreamExt;
use lock_core::backend::{Hint, HintStream, Version, Versioned};
use lock_core::{LeaderElectionRecord, Lock};
use tokio::time::Instant;

/// How long a driver test waits for a hint or a read that should come promptly.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A record held by `holder` with a 15 s lease and `transitions` as its token.
pub fn record(holder: &str, transitions: i32) -> LeaderElectionRecord {
    LeaderElectionRecord {
        holder_identity: holder.to_owned(),
        lease_duration_seconds: 15,
        leader_transitions: transitions,
        ..LeaderElectionRecord::default()
    }
}

/// Runs `future` for at most `limit`; panics if it takes longer.
pub async fn within<F: std::future::Future>(limit: Duration, future: F) -> F::Output {
    tokio::time::timeout(limit, future)
        .await
        .unwrap_or_else(|_| panic!("not finished within {limit:?}"))
}

/// The next hint, within [`PATIENCE`]; panics if the stream ends or stays silent.
pub async fn next_hint(hints: &mut HintStream) -> Hint {
    tokio::time::timeout(PATIENCE, hints.next())
        .await
        .unwrap_or_else(|_| panic!("no hint within {PATIENCE:?}"))
        .expect("the hint stream does not end")
}

/// Skips `Changed` hints up to the next `Record`.
pub async fn next_record(hints: &mut HintStream) -> (LeaderElectionRecord, Version) {
    loop {
        if let Hint::Record(versioned) = next_hint(hints).await {
            return (versioned.record, versioned.version);
        }
    }
}

/// Calls `get` until it succeeds, for at most [`PATIENCE`] (after a server restart a client
/// may need a call to notice the old connection is gone).
pub async fn get_eventually(lock: &impl Lock) -> Option<Versioned> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match lock.get().await {
            Ok(found) => return found,
            Err(err) if err.is_retryable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(err) => panic!("get keeps failing: {err}"),
        }
    }
}

/// Calls `watch` until a watch is served (its first hint is `Changed`), as the elector does
/// after a watch ended: at most 50 attempts, 200 ms apart, each waiting up to [`PATIENCE`].
pub async fn served_watch(lock: &impl Lock) -> HintStream {
    for _ in 0..50 {
        let mut hints = lock.watch().expect("the lock gives hints");
        match tokio::time::timeout(PATIENCE, hints.next()).await {
            Ok(Some(Hint::Changed)) => return hints,
            Ok(None) => tokio::time::sleep(Duration::from_millis(200)).await,
            other => panic!("unexpected first answer of a watch: {other:?}"),
        }
    }
    panic!("no watch of {} was served in 50 attempts", lock.describe())
}

/// What a Redis lock's key holds, read bypassing the lock: the field `record` of its hash, a
/// string set by hand, or `None` when the key is absent.
///
/// # Panics
/// When the server cannot be asked.
pub async fn redis_stored_record<C: redis::aio::ConnectionLike + Send>(
    connection: &mut C,
    key: &str,
) -> Option<Vec<u8>> {
    let kind: String = redis::cmd("TYPE")
        .arg(key)
        .query_async(connection)
        .await
        .expect("TYPE");
    let read = match kind.as_str() {
        "none" => return None,
        "string" => redis::cmd("GET").arg(key).query_async(connection).await,
        _ => {
            redis::cmd("HGET")
                .arg(key)
                .arg("record")
                .query_async(connection)
                .await
        }
    };
    read.expect("reading the key")
}

/// Runs one elector of `identity` on each lock until `cancel`, and waits (for at most `limit`
/// each) until every one of them leads: many elections in one process. Returns their tasks.
///
/// # Panics
/// When an election has no leader in time.
pub async fn lead_every_election<L: Lock + 'static>(
    locks: impl IntoIterator<Item = L>,
    identity: &str,
    cancel: &tokio_util::sync::CancellationToken,
    limit: Duration,
) -> Vec<tokio::task::JoinHandle<lock_core::RunOutcome>> {
    let mut events = Vec::new();
    let mut runs = Vec::new();
    for lock in locks {
        let elector = lock_core::LeaderElector::new(lock, lock_core::ElectionConfig::new(identity))
            .expect("a valid configuration");
        events.push(elector.subscribe());
        runs.push(tokio::spawn(elector.run(cancel.clone())));
    }
    for (index, events) in events.iter_mut().enumerate() {
        let led = within(limit, async {
            while let Some(event) = events.recv().await {
                if matches!(event, lock_core::ElectionEvent::StartedLeading(_)) {
                    return true;
                }
            }
            false
        })
        .await;
        assert!(led, "election {index} has a leader");
    }
    runs
}

/// Waits (for at most `limit` each) until every elector task of
/// [`lead_every_election`] ended, after its cancellation token was cancelled; returns how they
/// ended.
pub async fn ended(
    runs: Vec<tokio::task::JoinHandle<lock_core::RunOutcome>>,
    limit: Duration,
) -> Vec<lock_core::RunOutcome> {
    let mut outcomes = Vec::new();
    for run in runs {
        outcomes.push(within(limit, run).await.expect("the elector task"));
    }
    outcomes
}

/// Asks `measure` every 100 ms until it gives `expected`, for at most `limit`.
///
/// # Panics
/// Naming `what` and the last measure, when it never gives `expected`.
pub async fn measure_until<T, F, Fut>(what: &str, limit: Duration, expected: T, mut measure: F)
where
    T: PartialEq + std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let deadline = Instant::now() + limit;
    loop {
        let now = measure().await;
        if now == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {now:?}, not {expected:?} after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Opens `lock`'s hint stream and polls it first on a runtime that is shutting down (its task
/// list closed: a spawn is dropped at once), as an elector's resubscription may race a
/// shutdown. The shared watch's task is then refused, and the stream must end at once: not
/// hang (a hub that spawned its task while holding its own lock re-locked it when the refused
/// task was dropped, and hung), and not stay open with nothing behind it.
///
/// # Panics
/// When the stream does not end within 5 seconds, or gives a hint.
pub fn a_watch_joined_during_shutdown_ends<L: Lock + 'static>(lock: L) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let handle = runtime.handle().clone();
    drop(runtime);
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let first = handle.block_on(async move {
            let mut hints = lock.watch().expect("the lock gives hints");
            hints.next().await
        });
        let _ = done.send(first);
    });
    match finished.recv_timeout(Duration::from_secs(5)) {
        Ok(first) => assert_eq!(first, None, "the stream ends: nothing runs its watch"),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            panic!("the thread that polled the stream panicked")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("joining the shared watch hung while the runtime shut down")
        }
    }
}
