//! Issue 11, hole 8 (file side): a hint stream that can no longer see changes must end, so
//! that the elector polls instead of waiting on it.

mod support;

use std::time::Duration;

use futures::StreamExt;
use lock_core::Lock;
use lock_file::FileLock;
use support::record;

#[tokio::test]
async fn hole8_the_hint_stream_ends_when_the_watched_directory_goes() {
    let dir = tempfile::tempdir().unwrap();
    let elections = dir.path().join("elections");
    let path = elections.join("election.json");
    let lock = FileLock::new(&path);
    lock.create(&record("a", 1)).await.unwrap();
    let mut hints = lock.watch().expect("inotify or polling");
    std::fs::remove_dir_all(&elections).unwrap();
    // The directory is made again: a watch on the old one would never see this record.
    lock.create(&record("b", 2)).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        for _ in 0..100 {
            if hints.next().await.is_none() {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(ended, Ok(true), "the hint stream outlived its directory");
}
