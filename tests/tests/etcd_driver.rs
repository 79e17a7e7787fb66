//! The etcd lock against a real `etcd` (started by the test helpers on free loopback ports):
//! the lock contract, values written by hand, change hints across compactions and their end
//! when the server dies, the token floor after a deletion, a value too large to read, TLS with client certificates, users with roles, a dead or wedged server, and
//! revisions that keep growing across restarts. The create and update races are the
//! conformance suite's (`tests/etcd.rs`).

use std::future::Future;
use std::time::{Duration, Instant};

use futures::StreamExt;
use lock_core::backend::{Hint, Version, Versioned};
use lock_core::{
    ElectionConfig, ElectionEvent, LeaderElectionRecord, LeaderElector, Lock, LockError, RunOutcome,
};
use lock_etcd::{EtcdLock, EtcdLockOptions};
use lock_tests::driver::{get_eventually, next_hint, next_record, record};
use lock_tests::hint_end::stream_ends_within;
use lock_tests::servers::etcd::EtcdServer;
use tokio_util::sync::CancellationToken;

/// Longest wait for anything that should happen promptly (generous: other builds and tests
/// share two cores).
const PROMPTLY: Duration = Duration::from_secs(20);
/// The request timeout of the locks in these tests.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

/// Short timeouts, so that failures show quickly.
fn quick() -> EtcdLockOptions {
    EtcdLockOptions::default()
        .with_connect_timeout(Duration::from_secs(1))
        .with_request_timeout(REQUEST_TIMEOUT)
}

async fn lock(server: &EtcdServer, name: &str) -> EtcdLock {
    within(EtcdLock::connect(&[server.endpoint()], name, quick()))
        .await
        .expect("connect")
}

async fn within<F: Future>(future: F) -> F::Output {
    lock_tests::driver::within(PROMPTLY, future).await
}

fn number(version: &Version) -> i64 {
    version
        .as_str()
        .parse()
        .unwrap_or_else(|_| panic!("the version {version} is a revision"))
}

#[tokio::test]
async fn contract_basics() {
    let server = EtcdServer::start();
    let lock = lock(&server, "basics").await;
    assert_eq!(
        lock.describe(),
        format!(
            "etcd://127.0.0.1:{}/leader-election/basics",
            server.client_port()
        )
    );
    assert_eq!(lock.key(), "leader-election/basics");

    assert!(lock.get().await.unwrap().is_none());
    let v1 = lock.create(&record("a", 0)).await.unwrap();
    assert_eq!(Some(number(&v1)), server.mod_revision(lock.key()));
    let err = lock.create(&record("b", 0)).await.unwrap_err();
    assert!(
        matches!(err, LockError::AlreadyExists { .. }),
        "create over a record: {err:?}"
    );

    let read = lock.get().await.unwrap().expect("a record");
    assert_eq!(read.record, record("a", 0));
    assert_eq!(read.version, v1);

    let v2 = lock.update(&record("a", 1), &v1).await.unwrap();
    assert!(v1.is_older_than(&v2), "{v1} then {v2}");
    let err = lock.update(&record("b", 2), &v1).await.unwrap_err();
    assert!(
        matches!(&err, LockError::Conflict { expected, .. } if *expected == v1.to_string()),
        "update at a stale version: {err:?}"
    );
    for made_up in [
        Version::new("not-a-version"),
        Version::ordered(0),
        Version::new("-1"),
    ] {
        let err = lock.update(&record("b", 2), &made_up).await.unwrap_err();
        assert!(matches!(err, LockError::Conflict { .. }), "{err:?}");
    }

    let read = lock.get().await.unwrap().expect("a record");
    assert_eq!(read.record, record("a", 1));
    assert_eq!(read.version, v2);

    // The stored form: client-go's JSON, exactly, readable with etcdctl.
    assert_eq!(
        server.get(lock.key()).as_deref(),
        Some(r#"{"holderIdentity":"a","leaseDurationSeconds":15,"leaderTransitions":1}"#)
    );
    assert_eq!(server.mod_revision(lock.key()), Some(number(&v2)));

    // The key vanished: an update is a conflict, not a resurrection.
    server.delete(lock.key());
    let err = lock.update(&record("a", 2), &v2).await.unwrap_err();
    assert!(matches!(err, LockError::Conflict { .. }), "{err:?}");
    assert!(lock.get().await.unwrap().is_none());
    assert_eq!(server.get(lock.key()), None);

    let v3 = lock.create(&record("c", 0)).await.unwrap();
    assert!(v2.is_older_than(&v3), "{v2} then {v3}");
}

#[tokio::test]
async fn values_written_by_hand_are_corrupt_and_left_untouched() {
    let server = EtcdServer::start();
    let lock = lock(&server, "by-hand").await;
    let key = lock.key().to_owned();

    let assert_corrupt = |result: Result<Version, LockError>, what: &str| {
        let err = match result {
            Err(err @ LockError::Corrupt { .. }) => err,
            other => panic!("{what}: expected Corrupt, got {other:?}"),
        };
        let message = err.to_string();
        assert!(message.contains(&key), "{what}: {message}");
        assert!(message.contains("left untouched"), "{what}: {message}");
    };

    // The lock wrote a record at v1, then someone replaced it by hand.
    let v1 = lock.create(&record("a", 0)).await.unwrap();
    let by_hand = server.put(&key, "hello");
    let err = lock.get().await.unwrap_err();
    assert!(matches!(err, LockError::Corrupt { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&key), "names the key: {message}");
    assert!(message.contains("\"hello\""), "shows the value: {message}");

    assert_corrupt(lock.create(&record("b", 0)).await, "create over it");
    assert_corrupt(
        lock.update(&record("b", 1), &v1).await,
        "update at the version the lock wrote",
    );
    // Even at the very revision of the value put by hand (which a caller can only guess: the
    // lock never hands it out) nothing is written.
    assert_corrupt(
        lock.update(&record("b", 1), &Version::ordered(by_hand as u64))
            .await,
        "update at the revision of the value put by hand",
    );
    for guess in 0..=by_hand + 1 {
        assert_corrupt(
            lock.update(&record("b", 1), &Version::ordered(guess as u64))
                .await,
            &format!("update at guessed revision {guess}"),
        );
    }
    assert_corrupt(
        lock.update(&record("b", 1), &Version::new("x")).await,
        "update at a version that is no revision",
    );
    // A lock that never saw the key decides the same.
    let fresh = lock_with_name(&server, "by-hand").await;
    assert_corrupt(
        fresh
            .update(&record("b", 1), &Version::ordered(by_hand as u64))
            .await,
        "a fresh lock's update at the right revision",
    );
    assert_eq!(server.get(&key).as_deref(), Some("hello"));
    assert_eq!(
        server.mod_revision(&key),
        Some(by_hand),
        "not even rewritten"
    );

    // JSON that is not a record, and other things people store.
    for value in [r#"{"leaseDurationSeconds":"15"}"#, "[]", "null", "", "{"] {
        let revision = server.put(&key, value);
        assert!(
            matches!(lock.get().await, Err(LockError::Corrupt { .. })),
            "{value:?}"
        );
        assert_corrupt(
            lock.update(&record("b", 1), &Version::ordered(revision as u64))
                .await,
            &format!("update over {value:?} at its revision"),
        );
        assert_eq!(server.get(&key).as_deref(), Some(value));
    }

    // A record written by another program (client-go's form) is a record: a lock that never
    // saw it may update it at the revision it was written at.
    let client_go = r#"{"holderIdentity":"go-elector","leaseDurationSeconds":15,"acquireTime":"2024-01-02T03:04:05Z","renewTime":"2024-01-02T03:04:05Z","leaderTransitions":7}"#;
    let revision = server.put(&key, client_go);
    let fresh = lock_with_name(&server, "by-hand").await;
    let v2 = fresh
        .update(&record("a", 8), &Version::ordered(revision as u64))
        .await
        .unwrap();
    assert_eq!(server.mod_revision(&key), Some(number(&v2)));
    let read = lock.get().await.unwrap().unwrap();
    assert_eq!((read.record, read.version), (record("a", 8), v2));

    // Deleted by hand: the lock works again.
    server.delete(&key);
    lock.create(&record("a", 0)).await.unwrap();
}

async fn lock_with_name(server: &EtcdServer, name: &str) -> EtcdLock {
    lock(server, name).await
}

#[tokio::test]
async fn hints_carry_records_and_survive_compaction() {
    let server = EtcdServer::start();
    let watcher = lock(&server, "hints").await;
    let writer = lock(&server, "hints").await;
    let mut hints = watcher.watch().expect("the etcd lock gives hints");
    assert_eq!(next_hint(&mut hints).await, Hint::Changed, "watching");

    let v1 = writer.create(&record("a", 0)).await.unwrap();
    assert_eq!(next_record(&mut hints).await, (record("a", 0), v1.clone()));
    let v2 = writer.update(&record("b", 1), &v1).await.unwrap();
    assert_eq!(
        next_hint(&mut hints).await,
        Hint::Record(Versioned {
            record: record("b", 1),
            version: v2.clone(),
        })
    );

    // Another election's writes are not announced here.
    let other = lock(&server, "hints-other").await;
    other.create(&record("x", 0)).await.unwrap();
    // Values that are not records and deletions only say "changed".
    server.put(writer.key(), "hello");
    assert_eq!(
        next_hint(&mut hints).await,
        Hint::Changed,
        "a value by hand"
    );
    server.delete(writer.key());
    assert_eq!(next_hint(&mut hints).await, Hint::Changed, "a deletion");

    // Compacting the history does not disturb a watch that is up to date.
    server.compact();
    let v3 = writer.create(&record("c", 0)).await.unwrap();
    assert_eq!(next_record(&mut hints).await, (record("c", 0), v3.clone()));
}

/// Hole 8 (issue 11): a watch whose server died must end its stream, or standbys trust a dead
/// stream and never poll. The elector's next watch, once the server is back, gives hints again.
#[tokio::test]
async fn hole8_a_watch_ends_when_etcd_dies_and_a_new_one_gives_hints_after_the_restart() {
    let mut server = EtcdServer::start();
    let watcher = lock(&server, "hints-dead").await;
    let writer = lock(&server, "hints-dead").await;
    let mut hints = watcher.watch().expect("the etcd lock gives hints");
    assert_eq!(next_hint(&mut hints).await, Hint::Changed, "watching");
    let v1 = writer.create(&record("a", 0)).await.unwrap();
    assert_eq!(next_record(&mut hints).await, (record("a", 0), v1.clone()));

    // Killed: the stream ends (after the lost connection is noticed), without a restart.
    server.kill();
    let (_, took) = stream_ends_within(&mut hints, PROMPTLY).await;
    assert!(took < PROMPTLY, "ended after {took:?}");

    // While the server is down a new watch ends at once instead of retrying inside the stream.
    let mut refused = watcher.watch().expect("hints");
    let (given, _) = stream_ends_within(&mut refused, PROMPTLY).await;
    assert!(
        given.is_empty(),
        "no hints from a watch that failed: {given:?}"
    );

    // Restarted on the same data: a new watch says "read", then carries the next write.
    server.restart();
    let current = get_eventually(&writer).await.expect("the record survived");
    assert_eq!(current.version, v1);
    let mut hints = watcher.watch().expect("hints");
    assert_eq!(next_hint(&mut hints).await, Hint::Changed, "watching again");
    let v2 = writer.update(&record("a", 1), &v1).await.unwrap();
    assert!(v1.is_older_than(&v2));
    assert_eq!(next_record(&mut hints).await, (record("a", 1), v2));
}

/// Hole 1 (issue 11), etcd: after the record is deleted, the token floor is still above every
/// token it carried (and above every revision that wrote it), also across a restart, so a new
/// term never starts back at 0.
#[tokio::test]
async fn hole1_the_token_floor_stays_above_the_tokens_of_a_deleted_record() {
    let mut server = EtcdServer::start();
    let lock = lock(&server, "floor").await;
    let floor = lock.token_floor().await.unwrap();
    assert!(floor >= 1, "a fresh store's floor: {floor}");
    // Five takeovers, as electors write them: one more transition per write.
    let mut version = lock.create(&record("a", 0)).await.unwrap();
    for transitions in 1..=5 {
        let holder = ["a", "b"][usize::try_from(transitions).unwrap() % 2];
        version = lock
            .update(&record(holder, transitions), &version)
            .await
            .unwrap();
    }
    server.delete(lock.key());
    assert!(lock.get().await.unwrap().is_none());

    let floor = lock.token_floor().await.unwrap();
    assert!(
        floor > 5,
        "the floor {floor} is not above the deleted token 5"
    );
    assert!(
        floor > u64::try_from(number(&version)).unwrap(),
        "the floor {floor} is not above the revision {version} that wrote the record"
    );
    assert_eq!(
        i64::try_from(floor).unwrap(),
        server.revision() + 1,
        "one past the store's revision"
    );

    // Another process, and the same after a restart: revisions never go back.
    server.kill();
    server.restart();
    get_eventually(&lock).await;
    let fresh = lock_with_name(&server, "floor").await;
    let after_restart = fresh.token_floor().await.unwrap();
    assert!(after_restart >= floor, "{after_restart} after {floor}");
    // A term started at the floor is above every old token, and a record there is stored.
    let start = i32::try_from(after_restart).unwrap();
    fresh.create(&record("c", start)).await.unwrap();
    assert_eq!(
        fresh
            .get()
            .await
            .unwrap()
            .unwrap()
            .record
            .leader_transitions,
        start
    );
}

/// Issue 11: the elector tells its own write from a twin's by acquireTime's microseconds, so
/// the lock must store and return them exactly (etcd keeps the JSON bytes).
#[tokio::test]
async fn acquire_time_microseconds_are_kept_exactly() {
    let server = EtcdServer::start();
    let lock = lock(&server, "micros").await;
    let acquired = chrono::DateTime::from_timestamp(1_700_000_000, 123_456_000).unwrap();
    let renewed = chrono::DateTime::from_timestamp(1_700_000_003, 654_321_000).unwrap();
    let written = LeaderElectionRecord {
        acquire_time: Some(acquired),
        renew_time: Some(renewed),
        ..record("a", 3)
    };
    let v1 = lock.create(&written).await.unwrap();
    let read = lock.get().await.unwrap().unwrap();
    assert_eq!(read.record, written);
    assert_eq!(read.record.acquire_time, Some(acquired));
    let stored = server.get(lock.key()).unwrap();
    assert!(
        stored.contains(r#""acquireTime":"2023-11-14T22:13:20.123456Z""#),
        "{stored}"
    );
    let renewed_again = LeaderElectionRecord {
        renew_time: Some(chrono::DateTime::from_timestamp(1_700_000_005, 1_000).unwrap()),
        ..written
    };
    lock.update(&renewed_again, &v1).await.unwrap();
    assert_eq!(lock.get().await.unwrap().unwrap().record, renewed_again);
}

/// Hole 14 (issue 11), etcd: a 5 MB value is above the client's message limit. Reading it must
/// be a clear Corrupt naming the size and the limit (not a retryable fault), nothing is written
/// over it, and a watch that meets it ends instead of failing and replaying it forever.
#[tokio::test]
async fn hole14_a_5mb_value_is_corrupt_and_ends_the_watch() {
    const BIG: usize = 5 * 1024 * 1024;
    let server = EtcdServer::builder()
        .max_request_bytes(u32::try_from(BIG * 2).unwrap())
        .start();
    let lock = lock(&server, "huge").await;
    let v1 = lock.create(&record("a", 0)).await.unwrap();
    let mut hints = lock.watch().expect("hints");
    assert_eq!(next_hint(&mut hints).await, Hint::Changed, "watching");

    let mut raw = within(etcd_client::Client::connect([server.endpoint()], None))
        .await
        .expect("a raw client");
    let put = within(raw.put(lock.key(), vec![b'x'; BIG], None))
        .await
        .expect("put 5 MB");
    let big_revision = put.header().unwrap().revision();

    let (given, _) = stream_ends_within(&mut hints, PROMPTLY).await;
    assert!(
        given.iter().all(|hint| !matches!(hint, Hint::Record(_))),
        "no record from a value that is not one: {given:?}"
    );

    let corrupt = |result: Result<(), LockError>, what: &str| {
        let err = result.expect_err(what);
        let message = err.to_string();
        assert!(matches!(err, LockError::Corrupt { .. }), "{what}: {err:?}");
        assert!(message.contains(lock.key()), "{what}: {message}");
        assert!(message.contains("too large"), "{what}: {message}");
        assert!(message.contains("the limit is"), "{what}: {message}");
    };
    corrupt(lock.get().await.map(drop), "get");
    corrupt(lock.create(&record("b", 9)).await.map(drop), "create");
    corrupt(lock.update(&record("b", 9), &v1).await.map(drop), "update");
    assert_eq!(server.mod_revision(lock.key()), Some(big_revision));
    // A lock made now connects (the server and the login are fine) and reports the same.
    let fresh = lock_with_name(&server, "huge").await;
    corrupt(fresh.get().await.map(drop), "a fresh lock's get");

    // Deleted by hand, the key works again.
    server.delete(lock.key());
    assert!(lock.get().await.unwrap().is_none());
    lock.create(&record("b", 9)).await.unwrap();
}

#[tokio::test]
async fn writes_missed_while_disconnected_are_replayed_unless_compacted() {
    let mut server = EtcdServer::start();
    let lock = lock(&server, "replay").await;
    let v1 = lock.create(&record("a", 0)).await.unwrap();
    let v2 = lock.update(&record("a", 1), &v1).await.unwrap();
    let v3 = lock.update(&record("a", 2), &v2).await.unwrap();

    // Resuming after v1 replays v2 and v3.
    let mut hints = lock.watch_from(&v1);
    assert_eq!(next_hint(&mut hints).await, Hint::Changed, "watching");
    assert_eq!(next_record(&mut hints).await, (record("a", 1), v2.clone()));
    assert_eq!(next_record(&mut hints).await, (record("a", 2), v3.clone()));
    drop(hints);

    // After a compaction those revisions are gone: the watch says "changed" (read the lock)
    // and goes on from now, so the next record it reports is the next write.
    server.compact();
    let mut hints = lock.watch_from(&v1);
    assert_eq!(next_hint(&mut hints).await, Hint::Changed);
    while let Ok(hint) = tokio::time::timeout(Duration::from_secs(1), hints.next()).await {
        assert_eq!(
            hint,
            Some(Hint::Changed),
            "compacted revisions are not replayed"
        );
    }
    let v4 = lock.update(&record("a", 3), &v3).await.unwrap();
    assert_eq!(
        next_hint(&mut hints).await,
        Hint::Record(Versioned {
            record: record("a", 3),
            version: v4.clone(),
        })
    );
    drop(hints);

    // A restart in between ends the watch; one made after it from the last version seen
    // replays the writes made meanwhile.
    let mut hints = lock.watch().unwrap();
    assert_eq!(next_hint(&mut hints).await, Hint::Changed, "watching");
    server.kill();
    stream_ends_within(&mut hints, PROMPTLY).await;
    server.restart();
    let current = get_eventually(&lock).await.unwrap();
    assert_eq!(current.version, v4);
    let v5 = lock.update(&record("a", 4), &v4).await.unwrap();
    let v6 = lock.update(&record("a", 5), &v5).await.unwrap();
    let mut hints = lock.watch_from(&v4);
    assert_eq!(next_hint(&mut hints).await, Hint::Changed, "watching");
    assert_eq!(next_record(&mut hints).await, (record("a", 4), v5));
    assert_eq!(next_record(&mut hints).await, (record("a", 5), v6));
}

#[tokio::test]
async fn tls_with_client_certificates() {
    let server = EtcdServer::start_tls();
    let endpoint = server.endpoint();
    assert!(endpoint.starts_with("https://127.0.0.1:"), "{endpoint}");
    let certificates = server.certificates().unwrap().clone();
    let options = quick()
        .with_tls_ca(&certificates.ca_cert)
        .with_client_identity(&certificates.client_cert, &certificates.client_key);
    let lock = EtcdLock::connect(&[&endpoint], "tls", options.clone())
        .await
        .unwrap();
    assert!(
        lock.describe().starts_with("etcds://127.0.0.1:"),
        "{}",
        lock.describe()
    );
    let mut hints = lock.watch().unwrap();
    assert_eq!(next_hint(&mut hints).await, Hint::Changed);
    let v1 = lock.create(&record("a", 0)).await.unwrap();
    assert_eq!(next_record(&mut hints).await, (record("a", 0), v1.clone()));
    let v2 = lock.update(&record("a", 1), &v1).await.unwrap();
    assert_eq!(lock.get().await.unwrap().unwrap().version, v2);

    // Without a client certificate, or with one from another CA, the server refuses. With TLS
    // 1.3 the client may only see the connection closing, so this stays retryable (a server's
    // CA can change while the client runs), and the message points at the certificate.
    let without = quick().with_tls_ca(&certificates.ca_cert);
    let stranger = quick()
        .with_tls_ca(&certificates.ca_cert)
        .with_client_identity(&certificates.stranger_cert, &certificates.stranger_key);
    for (options, what) in [
        (without, "no client certificate"),
        (stranger, "a stranger's"),
    ] {
        let err = EtcdLock::connect(&[&endpoint], "tls", options)
            .await
            .unwrap_err();
        assert!(err.is_retryable(), "{what}: {err:?}");
        assert!(
            err.to_string().contains("client certificate"),
            "{what}: {err}"
        );
    }

    // Without the CA the server is not trusted, and the message says so.
    let mut untrusting = quick();
    untrusting.client_identity = options.client_identity.clone();
    let err = EtcdLock::connect(&[&endpoint], "tls", untrusting)
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert!(err.to_string().contains("certificate"), "{err}");

    // TLS options for a plain endpoint are a configuration error.
    let plain = endpoint.replacen("https://", "http://", 1);
    let err = EtcdLock::new(&[plain], "tls", options).unwrap_err();
    assert!(matches!(err, LockError::InvalidConfig(_)), "{err:?}");
}

#[tokio::test]
async fn a_user_restricted_to_the_prefix_can_do_everything() {
    let mut server = EtcdServer::builder()
        .user("elector", "elector-secret", "leader-election/")
        .start();
    let endpoints = [server.endpoint()];
    let options = quick().with_user("elector", "elector-secret");
    let lock = EtcdLock::connect(&endpoints, "acl", options.clone())
        .await
        .unwrap();
    assert_eq!(
        lock.describe(),
        format!(
            "etcd://elector@127.0.0.1:{}/leader-election/acl",
            server.client_port()
        )
    );
    assert!(!format!("{lock:?}").contains("secret"));

    let mut hints = lock.watch().unwrap();
    assert_eq!(next_hint(&mut hints).await, Hint::Changed);
    assert!(lock.get().await.unwrap().is_none());
    let v1 = lock.create(&record("a", 0)).await.unwrap();
    assert_eq!(next_record(&mut hints).await, (record("a", 0), v1.clone()));
    let v2 = lock.update(&record("a", 1), &v1).await.unwrap();
    assert_eq!(next_record(&mut hints).await, (record("a", 1), v2.clone()));
    assert_eq!(lock.get().await.unwrap().unwrap().version, v2);
    assert!(server
        .get(lock.key())
        .unwrap()
        .contains("\"holderIdentity\":\"a\""));

    // A restart forgets every login token: the lock logs in again by itself. The watch ends
    // with the server; a new one (logged in anew) replays what it missed.
    server.kill();
    stream_ends_within(&mut hints, PROMPTLY).await;
    server.restart();
    assert_eq!(get_eventually(&lock).await.unwrap().version, v2);
    let v3 = lock.update(&record("a", 2), &v2).await.unwrap();
    let mut hints = lock.watch_from(&v2);
    assert_eq!(next_hint(&mut hints).await, Hint::Changed);
    assert_eq!(next_record(&mut hints).await, (record("a", 2), v3));

    // Outside its prefix the user is refused, and the message names the key and the fix.
    let outside =
        EtcdLock::new(&endpoints, "acl", options.clone().with_key_prefix("other/")).unwrap();
    let err = outside.get().await.unwrap_err();
    assert!(matches!(err, LockError::Forbidden { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("\"other/acl\""), "{message}");
    assert!(message.contains("user elector"), "{message}");
    assert!(message.contains("readwrite"), "{message}");
    assert!(
        message.contains("etcdctl role grant-permission --prefix=true"),
        "{message}"
    );
    let err = EtcdLock::connect(&endpoints, "acl", options.with_key_prefix("other/"))
        .await
        .unwrap_err();
    assert!(matches!(err, LockError::Forbidden { .. }), "{err:?}");
}

#[tokio::test]
async fn wrong_credentials_are_forbidden() {
    let server = EtcdServer::builder()
        .user("elector", "elector-secret", "leader-election/")
        .start();
    let endpoints = [server.endpoint()];

    let err = EtcdLock::connect(&endpoints, "auth", quick().with_user("elector", "hunter2"))
        .await
        .unwrap_err();
    assert!(matches!(err, LockError::Forbidden { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("authentication failed for user elector"),
        "{message}"
    );
    assert!(
        !message.contains("hunter2"),
        "the password is never shown: {message}"
    );

    let err = EtcdLock::connect(&endpoints, "auth", quick().with_user("nobody", "x"))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("authentication failed for user nobody"),
        "{err}"
    );

    // No user at all: the server refuses the first request.
    let err = EtcdLock::connect(&endpoints, "auth", quick())
        .await
        .unwrap_err();
    assert!(matches!(err, LockError::Forbidden { .. }), "{err:?}");
    assert!(err.to_string().contains("authentication failed"), "{err}");

    // The lazily connecting lock reports the same on its first call, and on the next.
    let lazy = EtcdLock::new(&endpoints, "auth", quick().with_user("elector", "hunter2")).unwrap();
    for _ in 0..2 {
        let err = lazy.get().await.unwrap_err();
        assert!(matches!(err, LockError::Forbidden { .. }), "{err:?}");
    }
}

#[tokio::test]
async fn a_killed_server_is_unavailable_within_the_request_timeout() {
    let mut server = EtcdServer::start();
    let lock = lock(&server, "down").await;
    let v1 = lock.create(&record("a", 0)).await.unwrap();

    server.kill();
    for _ in 0..3 {
        let started = Instant::now();
        let err = lock.update(&record("a", 1), &v1).await.unwrap_err();
        let took = started.elapsed();
        assert!(matches!(err, LockError::Unavailable { .. }), "{err:?}");
        assert!(
            took < REQUEST_TIMEOUT + Duration::from_secs(1),
            "took {took:?}"
        );
        let started = Instant::now();
        let err = lock.get().await.unwrap_err();
        assert!(err.is_retryable(), "{err:?}");
        assert!(started.elapsed() < REQUEST_TIMEOUT + Duration::from_secs(1));
    }
    // A lock made while the server is down fails as promptly.
    let started = Instant::now();
    let err = EtcdLock::connect(&[server.endpoint()], "down", quick())
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert!(started.elapsed() < Duration::from_millis(2500));

    server.restart();
    let current = get_eventually(&lock).await.expect("the record survived");
    assert_eq!(current.version, v1);
    let v2 = lock.update(&record("a", 1), &v1).await.unwrap();
    assert!(v1.is_older_than(&v2));
}

#[tokio::test]
async fn a_wedged_server_times_out_instead_of_hanging() {
    let server = EtcdServer::start();
    let lock = lock(&server, "wedged").await;
    let v1 = lock.create(&record("a", 0)).await.unwrap();

    server.process().pause();
    let started = Instant::now();
    let result = lock.update(&record("a", 1), &v1).await;
    let took = started.elapsed();
    let get = lock.get().await;
    server.process().resume();
    let err = result.unwrap_err();
    assert!(matches!(err, LockError::Unavailable { .. }), "{err:?}");
    assert!(err.to_string().contains("no answer within"), "{err}");
    assert!(took >= REQUEST_TIMEOUT, "took {took:?}");
    assert!(
        took < REQUEST_TIMEOUT + Duration::from_secs(1),
        "took {took:?}"
    );
    assert!(get.unwrap_err().is_retryable());

    // Once it answers again the lock works. The update may or may not have landed, and it
    // may land after the next read (its request was queued before the pause): a conflict is
    // read up on, a bounded number of times.
    let mut attempts = 0;
    loop {
        let current = get_eventually(&lock).await.unwrap();
        match lock.update(&record("a", 2), &current.version).await {
            Ok(_) => break,
            Err(LockError::Conflict { .. }) if attempts < 5 => attempts += 1,
            Err(err) => panic!("the lock does not work after the server resumed: {err:?}"),
        }
    }
}

#[tokio::test]
async fn versions_keep_growing_across_restarts() {
    let mut server = EtcdServer::start();
    let lock = lock(&server, "growing").await;
    let mut last = lock.create(&record("a", 0)).await.unwrap();
    for transitions in 1..=3 {
        let next = lock.update(&record("a", transitions), &last).await.unwrap();
        assert!(last.is_older_than(&next));
        last = next;
    }
    let before = server.revision();

    for round in 0..2 {
        server.kill();
        server.restart();
        let current = get_eventually(&lock).await.expect("the record survived");
        assert_eq!(current.version, last, "round {round}");
        let next = lock.update(&record("b", 10 + round), &last).await.unwrap();
        assert!(
            number(&next) > before,
            "{next} reuses a revision up to {before}"
        );
        assert!(last.is_older_than(&next));
        last = next;
    }
    // A new election's first version is above every old one, too.
    let other = lock_with_name(&server, "growing-other").await;
    let first = other.create(&record("c", 0)).await.unwrap();
    assert!(last.is_older_than(&first), "{last} then {first}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_elector_leads_and_releases_on_etcd() {
    let server = EtcdServer::start();
    let lock = lock(&server, "elector").await;
    let key = lock.key().to_owned();
    let config = ElectionConfig::new("worker-a").with_release_on_cancel(true);
    let elector = LeaderElector::new(lock, config).unwrap();
    let mut events = elector.subscribe();
    let cancel = CancellationToken::new();
    let running = tokio::spawn(elector.run(cancel.clone()));
    let term = within(async {
        loop {
            match events.recv().await {
                Some(ElectionEvent::StartedLeading(term)) => break term,
                Some(_) => continue,
                None => panic!("the elector ended without leading"),
            }
        }
    })
    .await;
    assert!(term.is_leader());
    let stored = LeaderElectionRecord::from_json(server.get(&key).unwrap().as_bytes()).unwrap();
    assert_eq!(stored.holder_identity, "worker-a");

    cancel.cancel();
    let outcome = within(running).await.unwrap();
    assert_eq!(outcome, RunOutcome::Cancelled { released: true });
    let stored = LeaderElectionRecord::from_json(server.get(&key).unwrap().as_bytes()).unwrap();
    assert!(stored.is_free(), "{stored:?}");
}

#[test]
fn bad_configuration_is_invalid_config() {
    let invalid = |result: Result<EtcdLock, LockError>| match result {
        Err(LockError::InvalidConfig(message)) => message,
        other => panic!("expected InvalidConfig, got {other:?}"),
    };
    let options = EtcdLockOptions::default();
    let none: [&str; 0] = [];
    invalid(EtcdLock::new(&none, "a", options.clone()));
    invalid(EtcdLock::new(&["ftp://x:1"], "a", options.clone()));
    invalid(EtcdLock::new(&["127.0.0.1"], "a", options.clone()));
    invalid(EtcdLock::new(&["127.0.0.1:2379"], "", options.clone()));
    invalid(EtcdLock::new(
        &["127.0.0.1:2379"],
        "a",
        options.clone().with_request_timeout(Duration::ZERO),
    ));
    let message = invalid(EtcdLock::new(
        &["https://127.0.0.1:2379"],
        "a",
        options.clone().with_tls_ca("/nonexistent/ca.pem"),
    ));
    assert!(message.contains("/nonexistent/ca.pem"), "{message}");
    let message = invalid(EtcdLock::new(
        &["http://root:hunter2@127.0.0.1:2379"],
        "a",
        options,
    ));
    assert!(!message.contains("hunter2"), "{message}");
}
