//! The file life lock within one process: the OS lock excludes a second holder (flocks are per
//! open file), release hands over at once with a greater token, dropping the hold keeps it.

use std::time::Duration;

use lock_core::{LifeLock, Lock};
use lock_file::FileLifeLock;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn one_holder_at_a_time_and_tokens_grow() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("life.json");
    let a = FileLifeLock::new(&path);
    let b = FileLifeLock::new(&path);
    assert_eq!(a.holder().await.unwrap(), None);
    let never = CancellationToken::new();
    let first = a.acquire("a", &never).await.unwrap().expect("a holds");
    assert_eq!(
        b.holder().await.unwrap(),
        Some(("a".to_owned(), first.fencing_token))
    );
    assert!(a.life_path().ends_with("life.json.life"));

    // b waits while a holds, and gives up when cancelled.
    let cancel = CancellationToken::new();
    let waiting = {
        let (b, cancel) = (b.clone(), cancel.clone());
        tokio::spawn(async move { b.acquire("b", &cancel).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "b must not hold while a does");
    cancel.cancel();
    let gave_up = tokio::time::timeout(Duration::from_secs(2), waiting)
        .await
        .unwrap()
        .unwrap();
    assert!(gave_up.unwrap().is_none());

    // a releases: b takes it within a poll or two, with a greater token, and the record says so.
    let taking = {
        let b = b.clone();
        tokio::spawn(async move { b.acquire("b", &CancellationToken::new()).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    first.release.release().await.unwrap();
    let second = tokio::time::timeout(Duration::from_secs(2), taking)
        .await
        .unwrap()
        .unwrap()
        .unwrap()
        .expect("b holds");
    assert!(second.fencing_token > first.fencing_token);
    let record = b.record_lock().get().await.unwrap().unwrap().record;
    assert_eq!(record.holder_identity, "b");
    assert_eq!(
        u64::try_from(record.leader_transitions).unwrap(),
        second.fencing_token
    );

    // Dropping the hold without releasing keeps the OS lock: nobody else takes it.
    drop(second.release);
    let cancel = CancellationToken::new();
    let blocked = {
        let (a, cancel) = (a.clone(), cancel.clone());
        tokio::spawn(async move { a.acquire("a", &cancel).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!blocked.is_finished());
    assert_eq!(
        a.holder()
            .await
            .unwrap()
            .map(|(holder, _)| holder)
            .as_deref(),
        Some("b")
    );
    cancel.cancel();
    assert!(blocked.await.unwrap().unwrap().is_none());
}
