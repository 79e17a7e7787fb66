//! Issue 11, hole 1 (file side) and hole 14: the `<file>.lock` file outlives a deletion of the
//! record file and remembers the highest version and the highest token written through it, so
//! that neither goes back when the record file is deleted, whatever the clock says.

mod support;

use std::time::Duration;

use futures::StreamExt;
use lock_core::backend::Hint;
use lock_core::{Lock, LockError};
use lock_file::FileLock;
use support::{clock_micros, record};

#[tokio::test]
async fn hole1_token_floor_survives_a_deleted_record_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("election.json");
    let lock = FileLock::new(&path);
    assert_eq!(lock.token_floor().await.unwrap(), 0, "a lock never used");
    let version = lock.create(&record("a", 5)).await.unwrap();
    lock.update(&record("b", 7), &version).await.unwrap();
    std::fs::remove_file(&path).unwrap();
    let floor = lock.token_floor().await.unwrap();
    assert!(
        floor >= 8,
        "token 7 was written, then the file deleted: floor {floor}"
    );
    // Another handle, as another process would have, sees the same floor.
    assert_eq!(FileLock::new(&path).token_floor().await.unwrap(), floor);
    // A lower token written later does not lower the floor.
    lock.create(&record("c", 0)).await.unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(lock.token_floor().await.unwrap(), floor);
    // Deleting the OS lock file too forgets (documented).
    std::fs::remove_file(dir.path().join("election.json.lock")).unwrap();
    assert_eq!(lock.token_floor().await.unwrap(), 0);
}

/// Writes a record whose version is `ahead` microseconds ahead of the clock, as a writer whose
/// clock was later stepped back would have left it.
fn write_ahead_of_the_clock(path: &std::path::Path, ahead: u64) -> u64 {
    let version = clock_micros() + ahead;
    let text = format!(
        "{{\"version\":{version},\"record\":{}}}\n",
        record("past", 3).to_json()
    );
    std::fs::write(path, text).unwrap();
    version
}

const DAY_MICROS: u64 = 86_400 * 1_000_000;

#[tokio::test]
async fn hole14_versions_after_a_delete_stay_above_old_ones_with_the_clock_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("election.json");
    let lock = FileLock::new(&path);
    let high = write_ahead_of_the_clock(&path, 30 * DAY_MICROS);
    let old = lock.update(&record("a", 4), &high.into()).await.unwrap();
    std::fs::remove_file(&path).unwrap();
    let again = lock.create(&record("b", 5)).await.unwrap();
    assert!(
        old.is_older_than(&again),
        "version {again} after the delete is not above {old}, written before it"
    );
    let err = lock.update(&record("x", 9), &old).await.unwrap_err();
    assert!(matches!(err, LockError::Conflict { .. }), "{err}");
}

/// Takes the hints already sent, until none comes for 300 ms (at most 100 of them).
async fn drain(hints: &mut lock_core::backend::HintStream) {
    for _ in 0..100 {
        match tokio::time::timeout(Duration::from_millis(300), hints.next()).await {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the hint stream ended"),
            Err(_) => return,
        }
    }
    panic!("hints kept coming");
}

#[tokio::test]
async fn hole14_a_lower_version_after_a_delete_still_wakes_the_watch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("election.json");
    let lock = FileLock::new(&path);
    let mut hints = lock.watch().expect("inotify or polling");
    let high = write_ahead_of_the_clock(&path, 30 * DAY_MICROS);
    lock.update(&record("a", 4), &high.into()).await.unwrap();
    // Drain the hints for those writes.
    drain(&mut hints).await;
    // Someone deletes the file and then writes a record (by rename, so that the only event is
    // the new record) with a version from the clock.
    std::fs::remove_file(&path).unwrap();
    drain(&mut hints).await;
    let temp = dir.path().join("hand-written");
    std::fs::write(
        &temp,
        format!(
            "{{\"version\":{},\"record\":{}}}\n",
            clock_micros(),
            record("hand", 6).to_json()
        ),
    )
    .unwrap();
    std::fs::rename(&temp, &path).unwrap();
    let woke = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match hints.next().await {
                Some(Hint::Record(seen)) if seen.record.holder_identity == "hand" => return,
                Some(Hint::Changed) => return,
                Some(_) => {}
                None => panic!("the hint stream ended"),
            }
        }
    })
    .await;
    assert!(woke.is_ok(), "no hint for the new record within 5 s");
}
