//! The Redis lock against a real `redis-server` (started by the test helpers on a free
//! loopback port): the lock contract, values written by hand, change hints across a server
//! restart, TLS, ACL users, authentication and a dead or wedged server. The create and update
//! races are the conformance suite's (`tests/redis.rs`).

use std::future::Future;
use std::time::{Duration, Instant};

use lock_core::{Hint, LeaderElectionRecord, Lock, LockError, Version};
use lock_redis::{acl_rules, RedisLock, RedisLockOptions};
use lock_tests::driver::{get_eventually, next_hint, next_record};
use lock_tests::servers::redis::RedisServer;
use redis::AsyncCommands;

/// Longest wait for anything that should happen promptly.
const PROMPTLY: Duration = Duration::from_secs(10);

fn record(holder: &str, transitions: i32) -> LeaderElectionRecord {
    LeaderElectionRecord {
        holder_identity: holder.to_owned(),
        lease_duration_seconds: 15,
        leader_transitions: transitions,
        ..LeaderElectionRecord::default()
    }
}

/// Short timeouts, so that failures show quickly.
fn quick() -> RedisLockOptions {
    RedisLockOptions::default()
        .with_connect_timeout(Duration::from_millis(500))
        .with_response_timeout(Duration::from_millis(500))
}

async fn lock(server: &RedisServer, name: &str) -> RedisLock {
    within(RedisLock::connect(&server.url(), name))
        .await
        .expect("connect")
}

async fn within<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(PROMPTLY, future)
        .await
        .expect("finished within 10 s")
}

async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    server
        .admin_client()
        .get_multiplexed_async_connection()
        .await
        .expect("admin connection")
}

#[tokio::test]
async fn contract_basics() {
    let server = RedisServer::start();
    let lock = lock(&server, "basics").await;
    assert_eq!(
        lock.describe(),
        format!(
            "redis://127.0.0.1:{}/leader-election:{{basics}}",
            server.port()
        )
    );
    assert_eq!(lock.key(), "leader-election:{basics}");

    assert!(lock.get().await.unwrap().is_none());
    let v1 = lock.create(&record("a", 0)).await.unwrap();
    let err = lock.create(&record("b", 0)).await.unwrap_err();
    assert!(
        matches!(err, LockError::AlreadyExists { .. }),
        "create over a record: {err:?}"
    );

    let read = lock.get().await.unwrap().expect("a record");
    assert_eq!(read.record, record("a", 0));
    assert_eq!(read.version, v1);

    let v2 = lock.update(&record("a", 1), &v1).await.unwrap();
    assert_ne!(v2, v1);
    let err = lock.update(&record("b", 2), &v1).await.unwrap_err();
    assert!(
        matches!(&err, LockError::Conflict { expected, .. } if *expected == v1.to_string()),
        "update at a stale version: {err:?}"
    );
    let err = lock
        .update(&record("b", 2), &Version::new("not-a-version"))
        .await
        .unwrap_err();
    assert!(matches!(err, LockError::Conflict { .. }), "{err:?}");

    let read = lock.get().await.unwrap().expect("a record");
    assert_eq!(read.record, record("a", 1));
    assert_eq!(read.version, v2);

    // The stored form: a hash with client-go's JSON, readable with redis-cli.
    let mut admin = raw(&server).await;
    let json: String = admin.hget(lock.key(), "record").await.unwrap();
    assert_eq!(
        json,
        r#"{"holderIdentity":"a","leaseDurationSeconds":15,"leaderTransitions":1}"#
    );
    let version: String = admin.hget(lock.key(), "version").await.unwrap();
    assert_eq!(version, v2.to_string());

    // The key vanished: an update is a conflict, not a resurrection.
    let _: () = admin.del(lock.key()).await.unwrap();
    let err = lock.update(&record("a", 2), &v2).await.unwrap_err();
    assert!(matches!(err, LockError::Conflict { .. }), "{err:?}");
    assert!(lock.get().await.unwrap().is_none());
}

#[tokio::test]
async fn values_written_by_hand_are_corrupt_and_left_untouched() {
    let server = RedisServer::start();
    let lock = lock(&server, "by-hand").await;
    let key = lock.key().to_owned();
    let mut admin = raw(&server).await;

    let assert_corrupt = |err: LockError, what: &str| {
        assert!(
            matches!(&err, LockError::Corrupt { .. }),
            "{what}: expected Corrupt, got {err:?}"
        );
        let message = err.to_string();
        assert!(message.contains(&key), "{what}: {message}");
        assert!(message.contains("left untouched"), "{what}: {message}");
    };

    // A string, as `SET key hello` from redis-cli leaves it.
    let _: () = admin.set(&key, "hello").await.unwrap();
    assert_corrupt(lock.get().await.unwrap_err(), "get of a string");
    assert_corrupt(
        lock.create(&record("a", 0)).await.unwrap_err(),
        "create over a string",
    );
    for guess in ["1", "0", ""] {
        let err = lock
            .update(&record("a", 0), &Version::new(guess))
            .await
            .unwrap_err();
        assert_corrupt(err, "update of a string");
    }
    let value: String = admin.get(&key).await.unwrap();
    assert_eq!(value, "hello");
    let message = lock.get().await.unwrap_err().to_string();
    assert!(message.contains("string"), "names what it found: {message}");

    // A key of another type.
    let _: () = admin.del(&key).await.unwrap();
    let _: () = admin.rpush(&key, "x").await.unwrap();
    assert_corrupt(lock.get().await.unwrap_err(), "get of a list");
    assert_corrupt(
        lock.update(&record("a", 0), &Version::new("1"))
            .await
            .unwrap_err(),
        "update of a list",
    );
    let items: Vec<String> = admin.lrange(&key, 0, -1).await.unwrap();
    assert_eq!(items, ["x"]);

    // A hash whose record is garbage, at a version the caller guesses right.
    let _: () = admin.del(&key).await.unwrap();
    let _: () = admin
        .hset_multiple(&key, &[("record", "garbage"), ("version", "5")])
        .await
        .unwrap();
    assert_corrupt(lock.get().await.unwrap_err(), "get of a garbage record");
    assert_corrupt(
        lock.update(&record("a", 0), &Version::new("5"))
            .await
            .unwrap_err(),
        "update of a garbage record",
    );
    let stored: String = admin.hget(&key, "record").await.unwrap();
    assert_eq!(stored, "garbage");

    // JSON that is not a record (a field of the wrong type), and a bad counter.
    let _: () = admin
        .hset_multiple(
            &key,
            &[
                ("record", r#"{"leaseDurationSeconds":"15"}"#),
                ("version", "5"),
            ],
        )
        .await
        .unwrap();
    assert_corrupt(
        lock.update(&record("a", 0), &Version::new("5"))
            .await
            .unwrap_err(),
        "update of a record with a string lease",
    );
    let _: () = admin
        .hset_multiple(&key, &[("record", "{}"), ("version", "five")])
        .await
        .unwrap();
    assert_corrupt(lock.get().await.unwrap_err(), "get with a bad counter");
    let stored: (String, String) = redis::cmd("HMGET")
        .arg(&key)
        .arg("record")
        .arg("version")
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(stored, ("{}".to_owned(), "five".to_owned()));

    // Deleted by hand: the lock works again.
    let _: () = admin.del(&key).await.unwrap();
    lock.create(&record("a", 0)).await.unwrap();
}

#[tokio::test]
async fn hints_carry_records_and_survive_a_server_restart() {
    let mut server = RedisServer::start();
    let watcher = RedisLock::connect_with(&server.url(), "hints", quick())
        .await
        .unwrap();
    let writer = RedisLock::connect_with(&server.url(), "hints", quick())
        .await
        .unwrap();
    let mut hints = watcher.watch().expect("the Redis lock gives hints");
    assert_eq!(next_hint(&mut hints).await, Hint::Changed, "subscribed");

    let v1 = writer.create(&record("a", 0)).await.unwrap();
    assert_eq!(next_record(&mut hints).await, (record("a", 0), v1.clone()));
    let v2 = writer.update(&record("b", 1), &v1).await.unwrap();
    assert_eq!(next_record(&mut hints).await, (record("b", 1), v2));

    // Another election's writes are not announced here.
    let other = lock(&server, "other").await;
    other.create(&record("x", 0)).await.unwrap();

    server.kill();
    server.restart();
    // Subscribed again: changes may have been missed, so the watch says "read".
    assert_eq!(next_hint(&mut hints).await, Hint::Changed, "resubscribed");
    assert!(
        get_eventually(&writer).await.is_none(),
        "a restarted server is empty"
    );
    let v3 = writer.create(&record("c", 0)).await.unwrap();
    assert_eq!(next_record(&mut hints).await, (record("c", 0), v3));
}

#[tokio::test]
async fn tls_with_a_generated_ca() {
    let server = RedisServer::start_tls();
    let url = server.url();
    assert!(url.starts_with("rediss://127.0.0.1:"), "{url}");
    let ca = server.ca_path().unwrap();
    let options = quick().with_tls_ca(ca);
    let lock = RedisLock::connect_with(&url, "tls", options.clone())
        .await
        .unwrap();
    assert!(lock.describe().starts_with("rediss://127.0.0.1:"));
    let mut hints = lock.watch().unwrap();
    assert_eq!(next_hint(&mut hints).await, Hint::Changed);
    let v1 = lock.create(&record("a", 0)).await.unwrap();
    assert_eq!(next_record(&mut hints).await, (record("a", 0), v1.clone()));
    let v2 = lock.update(&record("a", 1), &v1).await.unwrap();
    assert_eq!(lock.get().await.unwrap().unwrap().version, v2);

    // Without the CA the server is not trusted, and the message says so.
    let err = RedisLock::connect_with(&url, "tls", quick())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");

    // A CA file for a plain URL is a configuration error.
    let plain = url.replacen("rediss://", "redis://", 1);
    let err = RedisLock::new(&plain, "tls", options).unwrap_err();
    assert!(matches!(err, LockError::InvalidConfig(_)), "{err:?}");
}

#[tokio::test]
async fn an_acl_user_with_the_documented_rules_can_do_everything() {
    let prefix = "leader-election:";
    let server = RedisServer::builder()
        .password("admin-secret")
        .acl_user("elector", "elector-secret", acl_rules(prefix))
        .start();
    let url = server.url_as("elector", "elector-secret");
    let lock = RedisLock::connect_with(&url, "acl", quick()).await.unwrap();
    assert!(
        lock.describe().starts_with("redis://elector@127.0.0.1:"),
        "{}",
        lock.describe()
    );
    assert!(!lock.describe().contains("secret"));
    assert!(!format!("{lock:?}").contains("secret"));

    let mut hints = lock.watch().unwrap();
    assert_eq!(next_hint(&mut hints).await, Hint::Changed);
    assert!(lock.get().await.unwrap().is_none());
    let v1 = lock.create(&record("a", 0)).await.unwrap();
    assert_eq!(next_record(&mut hints).await, (record("a", 0), v1.clone()));
    let v2 = lock.update(&record("a", 1), &v1).await.unwrap();
    assert_eq!(lock.get().await.unwrap().unwrap().version, v2);

    // The script is loaded again after the server forgot it (NOSCRIPT).
    let mut admin = raw(&server).await;
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut admin)
        .await
        .unwrap();
    let v3 = lock.update(&record("a", 2), &v2).await.unwrap();
    assert_eq!(lock.get().await.unwrap().unwrap().version, v3);

    // The expiry for abandoned elections needs nothing more.
    let expiring = RedisLock::connect_with(
        &url,
        "acl-expiring",
        quick().with_abandoned_ttl(Duration::from_secs(60)),
    )
    .await
    .unwrap();
    expiring.create(&record("a", 0)).await.unwrap();
    let ttl: i64 = admin.pttl(expiring.key()).await.unwrap();
    assert!(ttl > 0 && ttl <= 60_000, "{ttl}");

    // Nothing the lock sent was refused: the rules hold everything it needs.
    let refusals: Vec<redis::Value> = redis::cmd("ACL")
        .arg("LOG")
        .query_async(&mut admin)
        .await
        .unwrap();
    assert!(refusals.is_empty(), "ACL LOG: {refusals:?}");

    // Outside its prefix the user is refused, and the message names what is missing.
    let outside = RedisLock::connect_with(&url, "acl", quick().with_key_prefix("other:"))
        .await
        .unwrap();
    let err = outside.get().await.unwrap_err();
    assert!(matches!(err, LockError::Forbidden { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("NOPERM"), "{message}");
    assert!(message.contains("keys"), "{message}");
    assert!(message.contains("ACL SETUSER elector"), "{message}");
}

#[tokio::test]
async fn wrong_credentials_are_forbidden() {
    let server = RedisServer::builder()
        .password("right")
        .acl_user("elector", "elector-secret", acl_rules("leader-election:"))
        .start();

    let err = RedisLock::connect_with(&server.url_as("default", "hunter2"), "auth", quick())
        .await
        .unwrap_err();
    assert!(matches!(err, LockError::Forbidden { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("authentication failed for user default"),
        "{message}"
    );
    assert!(
        !message.contains("hunter2"),
        "the password is never shown: {message}"
    );

    let err = RedisLock::connect_with(&server.url_as("elector", "nope"), "auth", quick())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("authentication failed for user elector"),
        "{err}"
    );

    // No password at all: the server answers NOAUTH to the first command.
    let anonymous = format!("redis://127.0.0.1:{}", server.port());
    let lock = RedisLock::connect_with(&anonymous, "auth", quick())
        .await
        .unwrap();
    let err = lock.get().await.unwrap_err();
    assert!(matches!(err, LockError::Forbidden { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("authentication failed for user default"),
        "{err}"
    );

    // The lazily connecting lock reports the same on its first call.
    let lazy = RedisLock::new(&server.url_as("default", "hunter2"), "auth", quick()).unwrap();
    let err = lazy.get().await.unwrap_err();
    assert!(matches!(err, LockError::Forbidden { .. }), "{err:?}");
}

#[tokio::test]
async fn a_killed_server_is_unavailable_and_then_back() {
    let mut server = RedisServer::start();
    let lock = RedisLock::connect_with(&server.url(), "down", quick())
        .await
        .unwrap();
    let v1 = lock.create(&record("a", 0)).await.unwrap();

    server.kill();
    for _ in 0..3 {
        let started = Instant::now();
        let err = lock.update(&record("a", 1), &v1).await.unwrap_err();
        assert!(err.is_retryable(), "{err:?}");
        assert!(matches!(err, LockError::Unavailable { .. }), "{err:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "took {:?}",
            started.elapsed()
        );
    }

    server.restart();
    assert!(get_eventually(&lock).await.is_none());
    lock.create(&record("b", 0)).await.unwrap();
}

#[tokio::test]
async fn a_wedged_server_times_out_instead_of_hanging() {
    let server = RedisServer::start();
    let lock = RedisLock::connect_with(&server.url(), "wedged", quick())
        .await
        .unwrap();
    let v1 = lock.create(&record("a", 0)).await.unwrap();

    server.process().pause();
    let started = Instant::now();
    let err = lock.update(&record("a", 1), &v1).await.unwrap_err();
    let took = started.elapsed();
    server.process().resume();
    assert!(matches!(err, LockError::Unavailable { .. }), "{err:?}");
    // Bounded by connect + response timeout (1 s here).
    assert!(took < Duration::from_millis(1500), "took {took:?}");

    // Once it answers again the lock works; the update may or may not have landed.
    let current = get_eventually(&lock).await.unwrap();
    lock.update(&record("a", 2), &current.version)
        .await
        .unwrap();
}

#[tokio::test]
async fn an_expired_election_starts_over_without_reusing_versions() {
    let server = RedisServer::start();
    let options = quick().with_abandoned_ttl(Duration::from_millis(300));
    let lock = RedisLock::connect_with(&server.url(), "abandoned", options)
        .await
        .unwrap();
    let v1 = lock.create(&record("a", 0)).await.unwrap();
    let v2 = lock.update(&record("a", 1), &v1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(lock.get().await.unwrap().is_none(), "the key expired");
    let err = lock.update(&record("a", 2), &v2).await.unwrap_err();
    assert!(matches!(err, LockError::Conflict { .. }), "{err:?}");

    let v3 = lock.create(&record("b", 0)).await.unwrap();
    let number = |v: &Version| v.as_str().parse::<u64>().unwrap();
    assert!(
        number(&v3) > number(&v2),
        "a new record's version {v3} is above every old one ({v2})"
    );
}

#[tokio::test]
async fn bad_configuration_is_invalid_config() {
    let invalid = |result: Result<RedisLock, LockError>| match result {
        Err(LockError::InvalidConfig(message)) => message,
        other => panic!("expected InvalidConfig, got {other:?}"),
    };
    let options = RedisLockOptions::default();
    invalid(RedisLock::new("http://x:1", "a", options.clone()));
    invalid(RedisLock::new("redis://127.0.0.1:1", "", options.clone()));
    invalid(RedisLock::new(
        "redis://127.0.0.1:1",
        "a{b}",
        options.clone(),
    ));
    let message = invalid(RedisLock::new(
        "rediss://127.0.0.1:1",
        "a",
        options.clone().with_tls_ca("/nonexistent/ca.pem"),
    ));
    assert!(message.contains("/nonexistent/ca.pem"), "{message}");
    let message = invalid(RedisLock::new("redis://u:hunter2@[::1", "a", options));
    assert!(!message.contains("hunter2"), "{message}");
}
