//! The etcd lock against a real `etcd` (started by the test helpers on free loopback ports):
//! the lock contract, values written by hand, change hints across compactions and a server
//! restart, TLS with client certificates, users with roles, a dead or wedged server, and
//! revisions that keep growing across restarts. The create and update races are the
//! conformance suite's (`tests/etcd.rs`).

use std::future::Future;
use std::time::{Duration, Instant};

use futures::StreamExt;
use lock_core::{
    ElectionConfig, ElectionEvent, Hint, LeaderElectionRecord, LeaderElector, Lock, LockError,
    RunOutcome, Version, Versioned,
};
use lock_etcd::{EtcdLock, EtcdLockOptions};
use lock_tests::driver::{get_eventually, next_hint, next_record};
use lock_tests::servers::etcd::EtcdServer;
use tokio_util::sync::CancellationToken;

/// Longest wait for anything that should happen promptly (generous: other builds and tests
/// share two cores).
const PROMPTLY: Duration = Duration::from_secs(20);
/// The request timeout of the locks in these tests.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

fn record(holder: &str, transitions: i32) -> LeaderElectionRecord {
    LeaderElectionRecord {
        holder_identity: holder.to_owned(),
        lease_duration_seconds: 15,
        leader_transitions: transitions,
        ..LeaderElectionRecord::default()
    }
}

/// Short timeouts, so that failures show quickly.
fn quick() -> EtcdLockOptions {
    EtcdLockOptions::default()
        .with_connect_timeout(Duration::from_secs(1))
        .with_request_timeout(REQUEST_TIMEOUT)
}

async fn lock(server: &EtcdServer, name: &str) -> EtcdLock {
    within(EtcdLock::connect_with(&[server.endpoint()], name, quick()))
        .await
        .expect("connect")
}

async fn within<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(PROMPTLY, future)
        .await
        .expect("finished within 20 s")
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
async fn hints_carry_records_and_survive_compaction_and_a_restart() {
    let mut server = EtcdServer::start();
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

    // Killed and restarted on the same data: the watch comes back and says "read".
    server.kill();
    server.restart();
    assert_eq!(next_hint(&mut hints).await, Hint::Changed, "watching again");
    let current = get_eventually(&writer).await.expect("the record survived");
    assert_eq!(current.version, v3);
    let v4 = writer.update(&record("c", 1), &v3).await.unwrap();
    assert!(v3.is_older_than(&v4));
    assert_eq!(next_record(&mut hints).await, (record("c", 1), v4));
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

    // A restart in between is the same: the writes made before the watch is back are
    // replayed, from the last revision it saw.
    let mut hints = lock.watch().unwrap();
    assert_eq!(next_hint(&mut hints).await, Hint::Changed, "watching");
    server.kill();
    server.restart();
    let current = get_eventually(&lock).await.unwrap();
    assert_eq!(current.version, v4);
    let v5 = lock.update(&record("a", 4), &v4).await.unwrap();
    let v6 = lock.update(&record("a", 5), &v5).await.unwrap();
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
    let lock = EtcdLock::connect_with(&[&endpoint], "tls", options.clone())
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
        let err = EtcdLock::connect_with(&[&endpoint], "tls", options)
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
    let err = EtcdLock::connect_with(&[&endpoint], "tls", untrusting)
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
    let lock = EtcdLock::connect_with(&endpoints, "acl", options.clone())
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

    // A restart forgets every login token: the lock logs in again by itself.
    server.kill();
    server.restart();
    assert_eq!(get_eventually(&lock).await.unwrap().version, v2);
    let v3 = lock.update(&record("a", 2), &v2).await.unwrap();
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
    let err = EtcdLock::connect_with(&endpoints, "acl", options.with_key_prefix("other/"))
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

    let err = EtcdLock::connect_with(&endpoints, "auth", quick().with_user("elector", "hunter2"))
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

    let err = EtcdLock::connect_with(&endpoints, "auth", quick().with_user("nobody", "x"))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("authentication failed for user nobody"),
        "{err}"
    );

    // No user at all: the server refuses the first request.
    let err = EtcdLock::connect_with(&endpoints, "auth", quick())
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
    let err = EtcdLock::connect_with(&[server.endpoint()], "down", quick())
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

    // Once it answers again the lock works; the update may or may not have landed.
    let current = get_eventually(&lock).await.unwrap();
    lock.update(&record("a", 2), &current.version)
        .await
        .unwrap();
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
