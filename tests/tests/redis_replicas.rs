//! Writes acknowledged by replicas (`RedisLockOptions::min_replicas`), on a real primary and
//! replica: what a write that the replicas did not acknowledge does, and how, without the
//! option, a failover to a replica that missed a takeover hands its fencing token out twice.

use std::time::Duration;

use lock_core::{ElectionConfig, ElectionEvent, LeaderElector, Leadership, Lock, LockError};
use lock_redis::{RedisLock, RedisLockOptions};
use lock_tests::driver::record;
use lock_tests::servers::redis::RedisServer;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::{timeout, Instant};
use tokio_util::sync::CancellationToken;

/// Longest wait for anything that should happen promptly.
const PROMPTLY: Duration = Duration::from_secs(10);

fn options(min_replicas: u32) -> RedisLockOptions {
    RedisLockOptions::default()
        .with_connect_timeout(Duration::from_millis(500))
        .with_response_timeout(Duration::from_millis(500))
        .with_min_replicas(min_replicas)
        .with_replica_timeout(Duration::from_secs(1))
}

/// A primary and one replica of it, in sync.
fn primary_and_replica() -> (RedisServer, RedisServer) {
    let (primary, mut replicas) = primary_and_replicas(1);
    (primary, replicas.remove(0))
}

/// A primary and `count` replicas of it, in sync.
fn primary_and_replicas(count: usize) -> (RedisServer, Vec<RedisServer>) {
    let primary = RedisServer::start();
    let replicas = (0..count)
        .map(|_| RedisServer::builder().replica_of(primary.port()).start())
        .collect();
    wait_in_sync(&primary, count);
    (primary, replicas)
}

/// Waits until `count` replicas of `primary` are online at its replication offset.
fn wait_in_sync(primary: &RedisServer, count: usize) {
    let deadline = std::time::Instant::now() + PROMPTLY;
    let mut admin = primary
        .admin_client()
        .get_connection_with_timeout(Duration::from_secs(1))
        .expect("admin connection");
    loop {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut admin)
            .expect("INFO");
        let offset = info
            .lines()
            .find_map(|line| line.strip_prefix("master_repl_offset:"))
            .unwrap_or_default()
            .trim()
            .to_owned();
        let synced = info
            .lines()
            .filter(|line| line.starts_with("slave") && line.contains("state=online"))
            .filter(|line| line.contains(&format!("offset={offset},")))
            .count();
        if synced >= count {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the replicas did not catch up: {info}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Cuts the replica loose (`REPLICAOF NO ONE`): it keeps what it has and gets nothing more,
/// as a replica does that a network partition or a crash parts from its primary, and it can
/// be written to, as once promoted.
fn detach(replica: &RedisServer) {
    let mut admin = replica
        .admin_client()
        .get_connection_with_timeout(Duration::from_secs(1))
        .expect("admin connection");
    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query(&mut admin)
        .expect("REPLICAOF NO ONE");
}

async fn lock_on(server: &RedisServer, min_replicas: u32) -> RedisLock {
    RedisLock::new(&server.url(), "replicated", options(min_replicas)).expect("lock")
}

#[tokio::test]
async fn acknowledged_writes_succeed_and_unacknowledged_ones_fail_as_not_replicated_after_landing()
{
    let (primary, replica) = primary_and_replica();
    let lock = lock_on(&primary, 1).await;
    let v1 = lock
        .create(&record("a", 0))
        .await
        .expect("acknowledged create");
    let v2 = lock
        .update(&record("a", 0), &v1)
        .await
        .expect("acknowledged renew");

    detach(&replica);
    let err = lock.update(&record("b", 1), &v2).await.unwrap_err();
    let LockError::NotReplicated { reason, .. } = &err else {
        panic!("expected NotReplicated, got {err:?}");
    };
    assert!(
        reason.contains("0 of the 1 replicas required (min_replicas) acknowledged it within 1s"),
        "{reason}"
    );
    assert!(err.is_retryable());
    // It landed on the primary: the elector must treat it as a write that may stay.
    let stored = lock.get().await.unwrap().expect("a record");
    assert_eq!(stored.record.holder_identity, "b");

    // Asking for more replicas than exist fails the same way, whatever the write.
    let greedy = lock_on(&primary, 2).await;
    let err = greedy
        .update(&record("c", 2), &stored.version)
        .await
        .unwrap_err();
    assert!(matches!(err, LockError::NotReplicated { .. }), "{err:?}");
}

/// A candidate's events and its run, until the test stops it.
struct Candidate {
    events: UnboundedReceiver<ElectionEvent>,
    cancel: CancellationToken,
}

fn candidate(lock: RedisLock, identity: &str) -> Candidate {
    let config = ElectionConfig::new(identity)
        .with_lease_duration(Duration::from_secs(2))
        .with_renew_deadline(Duration::from_millis(1_500))
        .with_retry_period(Duration::from_millis(200))
        .with_release_on_cancel(true);
    let elector = LeaderElector::new(lock, config).expect("valid config");
    let events = elector.subscribe();
    let cancel = CancellationToken::new();
    tokio::spawn(elector.run(cancel.clone()));
    Candidate { events, cancel }
}

impl Candidate {
    /// The next term it starts within `limit`, if any.
    async fn term_within(&mut self, limit: Duration) -> Option<Leadership> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match timeout(left, self.events.recv()).await {
                Ok(Some(ElectionEvent::StartedLeading(term))) => return Some(term),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return None,
            }
        }
    }
}

/// The schedule that repeats a token: `a` leads (token 0) and releases, all replicated; one
/// replica of `replicas` is parted from the primary; `b` takes over on the primary (token 1),
/// which that replica never gets; that replica is promoted, and `c`, a candidate that never
/// saw token 1 (a new process, say), takes over there. Returns the tokens `b` and `c` led with.
async fn failover_after_an_unreplicated_takeover(
    min_replicas: u32,
    replicas: usize,
) -> (Option<u64>, u64) {
    let (primary, mut others) = primary_and_replicas(replicas);
    let replica = others.pop().expect("a replica");
    let mut a = candidate(lock_on(&primary, min_replicas).await, "a");
    let first = a.term_within(PROMPTLY).await.expect("a leads");
    assert_eq!(first.fencing_token(), 0);
    a.cancel.cancel();
    // The release is on the primary and, once in sync, on the replica.
    let deadline = Instant::now() + PROMPTLY;
    let released = lock_on(&primary, 0).await;
    while !released
        .get()
        .await
        .unwrap()
        .expect("a record")
        .record
        .is_free()
    {
        assert!(Instant::now() < deadline, "a did not release");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_in_sync(&primary, replicas);

    detach(&replica);
    let mut b = candidate(lock_on(&primary, min_replicas).await, "b");
    let b_term = b.term_within(Duration::from_secs(5)).await;

    // The failover: the replica, without b's takeover, is where everyone writes now.
    let mut c = candidate(lock_on(&replica, 0).await, "c");
    let c_term = c
        .term_within(PROMPTLY)
        .await
        .expect("c leads on the promoted replica");
    b.cancel.cancel();
    c.cancel.cancel();
    (
        b_term.map(|term| term.fencing_token()),
        c_term.fencing_token(),
    )
}

#[tokio::test]
async fn without_replica_acknowledgements_a_failover_hands_a_fencing_token_out_twice() {
    let (b, c) = failover_after_an_unreplicated_takeover(0, 1).await;
    assert_eq!(
        b,
        Some(1),
        "b leads on the primary with a write no replica has"
    );
    assert_eq!(
        c, 1,
        "c, on the promoted replica, leads with b's token again"
    );
}

#[tokio::test]
async fn with_one_replica_acknowledging_no_term_runs_on_a_write_a_failover_can_lose() {
    let (b, c) = failover_after_an_unreplicated_takeover(1, 1).await;
    assert_eq!(
        b, None,
        "b's takeover was not acknowledged, so b must not lead on it"
    );
    assert_eq!(c, 1, "token 1 is c's alone");
}

#[tokio::test]
async fn with_two_replicas_one_acknowledgement_is_lost_when_the_other_replica_is_promoted() {
    // Sentinel does not always promote the replica with the most data (replica-priority comes
    // first, and the offsets it compares may be seconds old): only as many acknowledgements
    // as there are replicas keep every term through any promotion.
    let (b, c) = failover_after_an_unreplicated_takeover(1, 2).await;
    assert_eq!(b, Some(1), "one replica acknowledged b's takeover");
    assert_eq!(c, 1, "the other, promoted, hands token 1 out again");
    let (b, c) = failover_after_an_unreplicated_takeover(2, 2).await;
    assert_eq!(
        b, None,
        "with both required, b's takeover was not acknowledged"
    );
    assert_eq!(c, 1, "token 1 is c's alone");
}

#[test]
fn min_replicas_in_a_redis_url_is_refused_not_dropped() {
    let err = RedisLock::new(
        "redis+sentinel://127.0.0.1:26379/m?min_replicas=1",
        "x",
        RedisLockOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, LockError::InvalidConfig(message) if message.contains("with_min_replicas")),
        "{err:?}"
    );
}
