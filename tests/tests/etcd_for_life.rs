//! The etcd life lock against a real etcd: one holder at a time, a release hands over at once
//! through the watch with a greater token, the key is bound to the holder's lease, and a lease
//! ended by the server (revoked by an operator) cancels the hold's `lost` and frees the key.

use std::time::Duration;

use lock_core::LifeLock;
use lock_etcd::{EtcdLifeLock, EtcdLock, EtcdLockOptions};
use lock_tests::proxy::Proxy;
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

/// A life lock reaching the server through `proxy`, with `options`.
fn life_lock_through(proxy: &Proxy, name: &str, options: EtcdLockOptions) -> EtcdLifeLock {
    let endpoint = format!("http://{}", proxy.address());
    let lock = EtcdLock::new(&[endpoint], name, options).expect("a valid endpoint and name");
    EtcdLifeLock::new(lock, TTL).expect("a valid TTL")
}

/// Waits until `b` holds the key, then checks that `a`'s hold had already ended by then: the
/// key went with `a`'s lease, so a hold whose `lost` is still not cancelled is a second holder.
async fn b_takes_over_after_a_knows(b: &EtcdLifeLock, a_lost: &CancellationToken) {
    let second = tokio::time::timeout(TTL * 4, b.acquire("b", &CancellationToken::new()))
        .await
        .expect("b takes over once a's session is gone")
        .unwrap()
        .expect("b holds");
    assert!(
        a_lost.is_cancelled(),
        "b holds the key (token {}) while a's hold is not yet lost: two holders",
        second.fencing_token
    );
    second.release.release().await.unwrap();
}

/// The server counts a lease's TTL from the grant, not from the put that follows it: a holder
/// whose take was slow (three round trips between the grant and the transaction that puts the
/// key) and which is cut off at once must count its session from the grant too, or its `lost`
/// comes after the key is gone and a standby holds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_take_counts_the_session_from_the_grant() {
    let server = EtcdServer::start();
    let proxy = Proxy::start(
        format!("127.0.0.1:{}", server.client_port())
            .parse()
            .unwrap(),
    )
    .await;
    let a = life_lock_through(&proxy, "life-slow", EtcdLockOptions::default());
    let b = life_lock(&server, "life-slow");
    // Connect while the link is fast, then slow it: every chunk waits 200 ms each way.
    assert_eq!(a.holder().await.unwrap(), None);
    proxy.slow(Duration::from_millis(200));
    let first = a
        .acquire("a", &CancellationToken::new())
        .await
        .unwrap()
        .expect("a holds");
    // Cut off the moment it holds: no keep-alive reaches the server any more.
    proxy.cut();
    b_takes_over_after_a_knows(&b, &first.lost).await;
}

/// A keep-alive stream that must be opened again while the server cannot be reached does not
/// hold the end of the session back past the TTL: opening it is bounded by what is left of the
/// session, as the wait for an answer is, not by the request timeout (here longer than the TTL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keep_alive_stream_opened_again_during_a_partition_ends_the_hold_within_the_ttl() {
    let server = EtcdServer::start();
    let proxy = Proxy::start(
        format!("127.0.0.1:{}", server.client_port())
            .parse()
            .unwrap(),
    )
    .await;
    let options = EtcdLockOptions::default().with_request_timeout(Duration::from_secs(10));
    let a = life_lock_through(&proxy, "life-reopen", options);
    let b = life_lock(&server, "life-reopen");
    let first = a
        .acquire("a", &CancellationToken::new())
        .await
        .unwrap()
        .expect("a holds");
    // The connection breaks (its keep-alive stream with it), and new ones hang.
    proxy.reset();
    proxy.cut();
    b_takes_over_after_a_knows(&b, &first.lost).await;
}

/// How many reads (ranges) the server has answered so far, from its metrics.
async fn ranges(server: &EtcdServer) -> u64 {
    let metrics = reqwest::get(format!("{}/metrics", server.endpoint()))
        .await
        .expect("etcd serves its metrics")
        .text()
        .await
        .unwrap();
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("etcd_mvcc_range_total "))
        .and_then(|count| count.trim().parse::<f64>().ok())
        .map(|count| count as u64)
        .expect("etcd_mvcc_range_total in the metrics")
}

/// A standby waits on its watch while the key is held: it reads the key when the watch says
/// it may have changed, and otherwise every few seconds, not in a loop. (The watch's first hint
/// only says it is established; a standby that reads again on it and opens a new watch each
/// time reads the key without pause for as long as the holder lives.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_does_not_read_the_key_without_pause_while_it_is_held() {
    let server = EtcdServer::start();
    let a = life_lock(&server, "life-idle");
    let b = life_lock(&server, "life-idle");
    let first = a
        .acquire("a", &CancellationToken::new())
        .await
        .unwrap()
        .expect("a holds");
    let cancel = CancellationToken::new();
    let waiting = {
        let (b, cancel) = (b.clone(), cancel.clone());
        tokio::spawn(async move { b.acquire("b", &cancel).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = ranges(&server).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let read = ranges(&server).await - before;
    assert!(
        read <= 10,
        "the standby read the key {read} times in 3 s while nothing changed"
    );
    // It still takes over at once when the key goes.
    first.release.release().await.unwrap();
    let second = tokio::time::timeout(Duration::from_secs(2), waiting)
        .await
        .expect("b takes over at once")
        .unwrap()
        .unwrap()
        .expect("b holds");
    assert!(second.fencing_token > first.fencing_token);
    cancel.cancel();
    second.release.release().await.unwrap();
}

/// The first `StartedLeading` term of `elector`, run on the current runtime.
async fn first_term(elector: lock_core::LifeElector) -> lock_core::Leadership {
    let mut events = elector.subscribe();
    tokio::spawn(elector.run(CancellationToken::new()));
    loop {
        if let Some(lock_core::ElectionEvent::StartedLeading(term)) = events.recv().await {
            break term;
        }
    }
}

/// A holder paused past its session's TTL (its runtime no longer runs, as under SIGSTOP) loses
/// the key to a standby; its term must not say it leads, even before any of its tasks has run
/// again to learn that the session ended (a term held for life has no renew deadline, but an
/// etcd session has one).
#[test]
fn a_paused_holder_is_not_leader_once_its_session_is_gone() {
    let server = EtcdServer::start();
    let config = |name: &str| lock_core::ElectionConfig::new(name);
    let paused = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let a_term = paused.block_on(async {
        let elector = lock_core::LifeElector::new(life_lock(&server, "life-pause"), config("a"));
        first_term(elector.unwrap()).await
    });
    // From here on nothing of a's runtime runs: no keep-alive, as in a stopped process.
    let running = tokio::runtime::Runtime::new().unwrap();
    let b_term = running.block_on(async {
        let elector = lock_core::LifeElector::new(life_lock(&server, "life-pause"), config("b"));
        tokio::time::timeout(TTL * 4, first_term(elector.unwrap()))
            .await
            .expect("b takes over once a's session is gone")
    });
    assert!(b_term.is_leader());
    assert!(b_term.fencing_token() > a_term.fencing_token());
    assert!(
        !a_term.is_leader(),
        "b leads with token {} while a's term (token {}) still says it leads",
        b_term.fencing_token(),
        a_term.fencing_token()
    );
}
