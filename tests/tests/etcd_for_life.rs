//! The etcd life lock against a real etcd: one holder at a time, a release hands over at once
//! through the watch with a greater token, the key is bound to the holder's lease, and a lease
//! ended by the server (revoked by an operator) cancels the hold's `lost` and frees the key.

use std::time::Duration;

use lock_core::LifeLock;
use lock_etcd::{EtcdLifeLock, EtcdLock, EtcdLockOptions};
use lock_tests::servers::etcd::EtcdServer;
use tokio_util::sync::CancellationToken;

const TTL: Duration = Duration::from_secs(3);

fn life_lock(server: &EtcdServer, name: &str) -> EtcdLifeLock {
    let lock = EtcdLock::new(&[server.endpoint()], name, EtcdLockOptions::default())
        .expect("a valid endpoint and name");
    EtcdLifeLock::new(lock, TTL).expect("a valid TTL")
}

/// The ids of the leases the server knows, in hex as etcdctl prints them.
fn leases(server: &EtcdServer) -> Vec<String> {
    server
        .etcdctl(&["lease", "list"])
        .lines()
        .skip(1)
        .map(|line| line.trim().to_owned())
        .filter(|line| !line.is_empty())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_holder_per_session_and_the_sessions_end_hands_over() {
    let server = EtcdServer::start();
    let a = life_lock(&server, "life");
    let b = life_lock(&server, "life");
    assert_eq!(a.holder().await.unwrap(), None);
    let never = CancellationToken::new();
    let first = a.acquire("a", &never).await.unwrap().expect("a holds");
    assert_eq!(
        b.holder().await.unwrap(),
        Some(("a".to_owned(), first.fencing_token))
    );
    assert_eq!(leases(&server).len(), 1, "the key's session");

    // b waits while a's session lives, however long.
    let taking = {
        let b = b.clone();
        tokio::spawn(async move { b.acquire("b", &CancellationToken::new()).await })
    };
    tokio::time::sleep(TTL * 2).await;
    assert!(!taking.is_finished(), "b took a lock whose session lives");
    assert!(!first.lost.is_cancelled());

    // a releases: the lease is revoked, the key goes, and b's watch wakes it at once.
    let released = tokio::time::Instant::now();
    first.release.release().await.unwrap();
    let second = tokio::time::timeout(Duration::from_secs(5), taking)
        .await
        .expect("b takes over")
        .unwrap()
        .unwrap()
        .expect("b holds");
    eprintln!("release to b's hold: {:?}", released.elapsed());
    assert!(released.elapsed() < Duration::from_secs(1));
    assert!(second.fencing_token > first.fencing_token);

    // An operator revokes b's lease: b hears its session ended, and a waiting a takes over.
    let waiting = {
        let a = a.clone();
        tokio::spawn(async move { a.acquire("a", &CancellationToken::new()).await })
    };
    let lease = leases(&server);
    assert_eq!(lease.len(), 1, "{lease:?}");
    server.etcdctl(&["lease", "revoke", &lease[0]]);
    tokio::time::timeout(TTL + Duration::from_secs(2), second.lost.cancelled())
        .await
        .expect("the end of b's session is noticed");
    let third = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("a takes over")
        .unwrap()
        .unwrap()
        .expect("a holds");
    assert!(third.fencing_token > second.fencing_token);
    assert_eq!(
        b.holder().await.unwrap(),
        Some(("a".to_owned(), third.fencing_token))
    );
    // Cancelling a waiting acquire returns at once.
    let cancel = CancellationToken::new();
    cancel.cancel();
    assert!(b.acquire("b", &cancel).await.unwrap().is_none());
    third.release.release().await.unwrap();
}

#[test]
fn a_ttl_etcd_cannot_keep_is_refused() {
    let lock = EtcdLock::new(&["127.0.0.1:2379"], "life", EtcdLockOptions::default()).unwrap();
    for ttl in [Duration::from_secs(1), Duration::from_millis(2500)] {
        let err = EtcdLifeLock::new(lock.clone(), ttl).unwrap_err();
        assert!(
            err.to_string().contains("whole seconds, at least 2s"),
            "{err}"
        );
    }
}
