//! Writers racing on one record: exactly one create and one update of a version win.

use std::sync::Arc;

use crate::{LockError, LockResult};
use tokio::sync::Barrier;

use super::full_record;
use crate::testing::conformance::Backend;

/// How many writers race in the race cases.
const RACERS: usize = 20;

/// Counts how many results were `Ok` and how many were the error `expected` names.
fn tally<T>(results: &[LockResult<T>], expected: fn(&LockError) -> bool) -> (usize, usize) {
    let wins = results.iter().filter(|result| result.is_ok()).count();
    let losses = results
        .iter()
        .filter(|result| result.as_ref().is_err_and(expected))
        .count();
    (wins, losses)
}

fn describe_errors<T>(results: &[LockResult<T>]) -> Vec<String> {
    results
        .iter()
        .filter_map(|result| result.as_ref().err().map(ToString::to_string))
        .collect()
}

/// The index of the one writer whose record is stored now.
async fn stored_writer(backend: &dyn Backend, name: &str) -> usize {
    let lock = backend.lock(name).await;
    let stored = lock
        .get()
        .await
        .expect("get after the race")
        .expect("a record after the race");
    let winner = stored
        .record
        .holder_identity
        .strip_prefix("holder-")
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or_else(|| panic!("the stored record is not one of the racers': {stored:?}"));
    assert_eq!(
        stored.record,
        full_record(winner as u32),
        "the stored record is intact"
    );
    winner - 100
}

/// Case 3: Twenty handles create at once: one wins, nineteen hear `AlreadyExists`.
pub async fn concurrent_creates_have_one_winner(backend: Arc<dyn Backend>, name: &str) {
    let barrier = Arc::new(Barrier::new(RACERS));
    let mut racers = Vec::new();
    for i in 0..RACERS {
        let lock = backend.lock(name).await;
        let barrier = barrier.clone();
        racers.push(tokio::spawn(async move {
            barrier.wait().await;
            lock.create(&full_record(100 + i as u32)).await
        }));
    }
    let mut results = Vec::new();
    for racer in racers {
        results.push(racer.await.expect("a racing create panicked"));
    }
    let (wins, losses) = tally(&results, |err| {
        matches!(err, LockError::AlreadyExists { .. })
    });
    assert_eq!(
        wins,
        1,
        "exactly one create wins; errors: {:?}",
        describe_errors(&results)
    );
    assert_eq!(
        losses,
        RACERS - 1,
        "the others hear AlreadyExists: {:?}",
        describe_errors(&results)
    );
    let winner = stored_writer(backend.as_ref(), name).await;
    assert!(results[winner].is_ok(), "the stored record is the winner's");
}

/// Case 4: Twenty handles update the same version at once: one wins, nineteen hear `Conflict`.
pub async fn concurrent_updates_of_one_version_have_one_winner(
    backend: Arc<dyn Backend>,
    name: &str,
) {
    let setup = backend.lock(name).await;
    let version = setup
        .create(&full_record(0))
        .await
        .expect("create the record to race on");
    let barrier = Arc::new(Barrier::new(RACERS));
    let mut racers = Vec::new();
    for i in 0..RACERS {
        let lock = backend.lock(name).await;
        let barrier = barrier.clone();
        let version = version.clone();
        racers.push(tokio::spawn(async move {
            barrier.wait().await;
            lock.update(&full_record(100 + i as u32), &version).await
        }));
    }
    let mut results = Vec::new();
    for racer in racers {
        results.push(racer.await.expect("a racing update panicked"));
    }
    let (wins, losses) = tally(&results, |err| matches!(err, LockError::Conflict { .. }));
    assert_eq!(
        wins,
        1,
        "exactly one update wins; errors: {:?}",
        describe_errors(&results)
    );
    assert_eq!(
        losses,
        RACERS - 1,
        "the others hear Conflict: {:?}",
        describe_errors(&results)
    );
    let winner = stored_writer(backend.as_ref(), name).await;
    let won = results[winner]
        .as_ref()
        .expect("the stored record is the winner's");
    let stored = setup.get().await.expect("get").expect("a record");
    assert_eq!(
        &stored.version, won,
        "the stored version is the one the winner got"
    );
}
