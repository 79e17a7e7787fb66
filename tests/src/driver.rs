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
