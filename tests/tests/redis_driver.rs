//! The Redis lock against a real `redis-server` (started by the test helpers on a free
//! loopback port): the lock contract, values written by hand, change hints across a server
//! restart, TLS, ACL users, authentication and a dead or wedged server, and many elections on
//! one `RedisClient`'s two connections. The create and update races are the conformance
//! suite's (`tests/redis.rs`).

use std::future::Future;
use std::time::{Duration, Instant};

use lock_core::backend::{Hint, Version};
use lock_core::{LeaderElectionRecord, Lock, LockError, RunOutcome};
use lock_redis::{acl_rules, RedisClient, RedisLock, RedisLockOptions};
use lock_tests::driver::{
    ended, get_eventually, lead_every_election, next_hint, next_record, record, served_watch,
};
use lock_tests::hint_end::hints_end;
use lock_tests::redis_clients::{connections_until, field, ClientInfo};
use lock_tests::servers::redis::RedisServer;
use redis::AsyncCommands;
use tokio_util::sync::CancellationToken;

/// Longest wait for anything that should happen promptly.
const PROMPTLY: Duration = Duration::from_secs(10);

/// Short timeouts, so that failures show quickly.
fn quick() -> RedisLockOptions {
    RedisLockOptions::default()
        .with_connect_timeout(Duration::from_millis(500))
        .with_response_timeout(Duration::from_millis(500))
}

async fn lock(server: &RedisServer, name: &str) -> RedisLock {
    within(RedisLock::connect(&server.url(), name, Default::default()))
        .await
        .expect("connect")
}

async fn within<F: Future>(future: F) -> F::Output {
    lock_tests::driver::within(PROMPTLY, future).await
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
async fn hints_carry_records_and_a_new_watch_is_served_after_a_server_restart() {
    let mut server = RedisServer::start();
    let watcher = RedisLock::connect(&server.url(), "hints", quick())
        .await
        .unwrap();
    let writer = RedisLock::connect(&server.url(), "hints", quick())
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
    // The watch cannot be served any more: it ends, so that the elector polls.
    hints_end(&mut hints, "after the server was killed").await;
    server.restart();
    // Watched again: subscribed again, and told to read (changes may have been missed).
    let mut hints = served_watch(&watcher).await;
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
    let lock = RedisLock::connect(&url, "tls", options.clone())
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
    let err = RedisLock::connect(&url, "tls", quick()).await.unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");

    // A CA file for a plain URL is a configuration error.
    let plain = url.replacen("rediss://", "redis://", 1);
    let err = RedisLock::new(&plain, "tls", options).unwrap_err();
    assert!(matches!(err, LockError::InvalidConfig(_)), "{err:?}");
}

#[tokio::test]
async fn an_acl_user_with_the_documented_rules_can_do_everything() {
    let prefix = "leader-election:";
    let server = server_with_elector("admin-secret", prefix);
    let url = server.url_as("elector", "elector-secret");
    let lock = RedisLock::connect(&url, "acl", quick()).await.unwrap();
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
    let expiring = RedisLock::connect(
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
    let outside = RedisLock::connect(&url, "acl", quick().with_key_prefix("other:"))
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
    let server = server_with_elector("right", "leader-election:");

    let err = RedisLock::connect(&server.url_as("default", "hunter2"), "auth", quick())
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

    let err = RedisLock::connect(&server.url_as("elector", "nope"), "auth", quick())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("authentication failed for user elector"),
        "{err}"
    );

    // No password at all: the server answers NOAUTH to the first command.
    let anonymous = format!("redis://127.0.0.1:{}", server.port());
    let lock = RedisLock::connect(&anonymous, "auth", quick())
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
    let lock = RedisLock::connect(&server.url(), "down", quick())
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
    let lock = RedisLock::connect(&server.url(), "wedged", quick())
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
    let lock = RedisLock::connect(&server.url(), "abandoned", options)
        .await
        .unwrap();
    // No lease, so that 300 ms of TTL is at least twice it.
    let leaseless = |holder: &str, transitions: i32| LeaderElectionRecord {
        lease_duration_seconds: 0,
        ..record(holder, transitions)
    };
    let v1 = lock.create(&leaseless("a", 0)).await.unwrap();
    let v2 = lock.update(&leaseless("a", 1), &v1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(lock.get().await.unwrap().is_none(), "the key expired");
    let err = lock.update(&leaseless("a", 2), &v2).await.unwrap_err();
    assert!(matches!(err, LockError::Conflict { .. }), "{err:?}");

    let v3 = lock.create(&leaseless("b", 0)).await.unwrap();
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

/// One line of `CLIENT LIST`: `id=7 addr=… flags=P … sub=3 …` as a map.
/// The number of subscribers of `channel`, by `PUBSUB NUMSUB`.
async fn subscribers(admin: &mut redis::aio::MultiplexedConnection, channel: &str) -> i64 {
    let (_, count): (String, i64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query_async(admin)
        .await
        .expect("PUBSUB NUMSUB");
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_elections_on_one_client_use_two_connections() {
    const ELECTIONS: usize = 1000;
    let server = RedisServer::start();
    let client = within(RedisClient::connect(
        &server.url(),
        RedisLockOptions::default(),
    ))
    .await
    .expect("connect");
    let cancel = CancellationToken::new();
    let locks: Vec<RedisLock> = (0..ELECTIONS)
        .map(|i| client.lock(&format!("many-{i}")).expect("a valid name"))
        .collect();
    let started = Instant::now();
    let runs = lead_every_election(locks.clone(), "a", &cancel, Duration::from_secs(60)).await;
    println!("{ELECTIONS} elections led after {:?}", started.elapsed());
    for lock in locks.iter().step_by(97) {
        let current = lock.get().await.unwrap().expect("a record");
        assert_eq!(current.record.holder_identity, "a", "{}", lock.describe());
    }

    // Exactly two connections besides the admin's: one multiplexed command connection, and
    // one pub/sub connection subscribed to every election's channel.
    let mut admin = raw(&server).await;
    let subscribed = |info: &ClientInfo| field(info, "sub") == ELECTIONS.to_string();
    let connections = connections_until(&mut admin, Duration::from_secs(30), |connections| {
        connections.len() == 2 && connections.iter().any(subscribed)
    })
    .await;
    assert_eq!(connections.len(), 2, "CLIENT LIST: {connections:#?}");
    let (pubsub, command): (Vec<_>, Vec<_>) = connections.iter().partition(|c| subscribed(c));
    assert_eq!(pubsub.len(), 1, "one pub/sub connection: {connections:#?}");
    assert!(field(pubsub[0], "flags").contains('P'), "{:?}", pubsub[0]);
    assert_eq!(field(command[0], "sub"), "0", "{:?}", command[0]);
    for lock in locks.iter().step_by(97) {
        assert_eq!(subscribers(&mut admin, lock.channel()).await, 1);
    }

    // With the client, its locks and their watches gone, both connections close.
    cancel.cancel();
    for outcome in ended(runs, PROMPTLY).await {
        assert!(
            matches!(outcome, RunOutcome::Cancelled { .. }),
            "{outcome:?}"
        );
    }
    drop(locks);
    drop(client);
    let connections = connections_until(&mut admin, PROMPTLY, <[ClientInfo]>::is_empty).await;
    assert!(connections.is_empty(), "left open: {connections:#?}");
}

#[tokio::test]
async fn watches_of_two_elections_on_one_client_get_only_their_own_records() {
    let server = RedisServer::start();
    let client = within(RedisClient::connect(&server.url(), quick()))
        .await
        .unwrap();
    let (orders, billing) = (
        client.lock("orders").unwrap(),
        client.lock("billing").unwrap(),
    );
    let mut orders_hints = orders.watch().unwrap();
    let mut billing_hints = billing.watch().unwrap();
    assert_eq!(
        next_hint(&mut orders_hints).await,
        Hint::Changed,
        "subscribed"
    );
    assert_eq!(
        next_hint(&mut billing_hints).await,
        Hint::Changed,
        "subscribed"
    );
    // A second watch of a subscribed election is told at once that it is subscribed.
    let mut orders_again = orders.watch().unwrap();
    assert_eq!(
        next_hint(&mut orders_again).await,
        Hint::Changed,
        "late watch"
    );

    // Written through other connections, interleaved.
    let orders_writer = lock(&server, "orders").await;
    let billing_writer = lock(&server, "billing").await;
    let o1 = orders_writer.create(&record("o", 0)).await.unwrap();
    let b1 = billing_writer.create(&record("b", 0)).await.unwrap();
    let o2 = orders_writer.update(&record("o", 1), &o1).await.unwrap();
    let b2 = billing_writer.update(&record("b", 1), &b1).await.unwrap();

    let as_hint = |record: LeaderElectionRecord, version: &Version| {
        Hint::Record(lock_core::backend::Versioned {
            record,
            version: version.clone(),
        })
    };
    for hints in [&mut orders_hints, &mut orders_again] {
        assert_eq!(next_hint(hints).await, as_hint(record("o", 0), &o1));
        assert_eq!(next_hint(hints).await, as_hint(record("o", 1), &o2));
    }
    assert_eq!(
        next_hint(&mut billing_hints).await,
        as_hint(record("b", 0), &b1)
    );
    assert_eq!(
        next_hint(&mut billing_hints).await,
        as_hint(record("b", 1), &b2)
    );
    // Nothing else is waiting: no record of the other election came in between.
    for hints in [&mut orders_hints, &mut orders_again, &mut billing_hints] {
        assert!(futures::FutureExt::now_or_never(futures::StreamExt::next(hints)).is_none());
    }
}

#[tokio::test]
async fn the_last_watch_of_an_election_unsubscribes_and_the_last_watch_closes_the_connection() {
    // An ACL user with the documented rules: UNSUBSCRIBE is among them.
    let server = server_with_elector("admin-secret", "leader-election:");
    let url = server.url_as("elector", "elector-secret");
    let client = within(RedisClient::connect(&url, quick())).await.unwrap();
    let (orders, billing) = (
        client.lock("orders").unwrap(),
        client.lock("billing").unwrap(),
    );
    let mut admin = raw(&server).await;

    let mut orders_first = orders.watch().unwrap();
    let mut orders_second = orders.watch().unwrap();
    let mut billing_hints = billing.watch().unwrap();
    for hints in [&mut orders_first, &mut orders_second, &mut billing_hints] {
        assert_eq!(next_hint(hints).await, Hint::Changed);
    }
    assert_eq!(
        subscribers(&mut admin, orders.channel()).await,
        1,
        "one SUBSCRIBE per channel"
    );
    assert_eq!(subscribers(&mut admin, billing.channel()).await, 1);

    drop(orders_first);
    let v1 = orders.create(&record("a", 0)).await.unwrap();
    assert_eq!(next_record(&mut orders_second).await, (record("a", 0), v1));
    assert_eq!(
        subscribers(&mut admin, orders.channel()).await,
        1,
        "still watched"
    );

    drop(orders_second);
    within(async {
        while subscribers(&mut admin, orders.channel()).await != 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(subscribers(&mut admin, billing.channel()).await, 1);
    let v1 = billing.create(&record("b", 0)).await.unwrap();
    assert_eq!(next_record(&mut billing_hints).await, (record("b", 0), v1));

    // Watched again: subscribed again, and told so.
    let mut orders_third = orders.watch().unwrap();
    assert_eq!(next_hint(&mut orders_third).await, Hint::Changed);
    assert_eq!(subscribers(&mut admin, orders.channel()).await, 1);

    // Nothing watched: the pub/sub connection closes, the command connection stays.
    drop(orders_third);
    drop(billing_hints);
    let connections =
        connections_until(&mut admin, PROMPTLY, |connections| connections.len() == 1).await;
    assert_eq!(connections.len(), 1, "CLIENT LIST: {connections:#?}");
    assert_eq!(field(&connections[0], "sub"), "0", "{:?}", connections[0]);
    assert_eq!(field(&connections[0], "user"), "elector");

    let refusals: Vec<redis::Value> = redis::cmd("ACL")
        .arg("LOG")
        .query_async(&mut admin)
        .await
        .unwrap();
    assert!(refusals.is_empty(), "ACL LOG: {refusals:?}");
}

#[tokio::test]
async fn after_a_restart_every_watch_of_a_client_ends_and_new_watches_get_records() {
    let mut server = RedisServer::start();
    let client = within(RedisClient::connect(&server.url(), quick()))
        .await
        .unwrap();
    let locks: Vec<RedisLock> = (0..20)
        .map(|i| client.lock(&format!("restart-{i}")).unwrap())
        .collect();
    let mut watches: Vec<_> = locks.iter().map(|lock| lock.watch().unwrap()).collect();
    for (lock, hints) in locks.iter().zip(&mut watches) {
        assert_eq!(next_hint(hints).await, Hint::Changed, "{}", lock.describe());
        let v1 = lock.create(&record("a", 0)).await.unwrap();
        assert_eq!(next_record(hints).await, (record("a", 0), v1));
    }

    server.restart();
    for (lock, hints) in locks.iter().zip(&mut watches) {
        hints_end(hints, &lock.describe()).await;
    }
    let mut watches = Vec::new();
    for lock in &locks {
        watches.push(served_watch(lock).await);
    }
    for (lock, hints) in locks.iter().zip(&mut watches) {
        assert!(
            get_eventually(lock).await.is_none(),
            "a restarted server is empty"
        );
        let v1 = lock.create(&record("b", 0)).await.unwrap();
        assert_eq!(next_record(hints).await, (record("b", 0), v1));
    }
    let mut admin = raw(&server).await;
    let connections =
        connections_until(&mut admin, PROMPTLY, |connections| connections.len() == 2).await;
    assert_eq!(connections.len(), 2, "CLIENT LIST: {connections:#?}");
}

/// A server whose default user has `admin_password` and whose user `elector` (password
/// `elector-secret`) has only the documented ACL rules for `prefix`.
fn server_with_elector(admin_password: &str, prefix: &str) -> RedisServer {
    RedisServer::builder()
        .password(admin_password)
        .acl_user("elector", "elector-secret", acl_rules(prefix))
        .start()
}

/// A write the client library sends again after a lost connection (the Redis Cluster client
/// does) finds its first run in place: the same bytes at a newer version. That is this
/// write, landed, not a lost race; anything else there is still a conflict.
#[tokio::test]
async fn a_write_sent_again_after_it_landed_is_answered_with_its_version() {
    let server = RedisServer::start();
    let lock = lock(&server, "sent-twice").await;
    let first = record("a", 0);
    let v1 = within(lock.create(&first)).await.unwrap();
    assert_eq!(within(lock.create(&first)).await.unwrap(), v1);

    let renewed = LeaderElectionRecord {
        renew_time: Some(chrono::Utc::now()),
        ..record("a", 0)
    };
    let v2 = within(lock.update(&renewed, &v1)).await.unwrap();
    assert_eq!(within(lock.update(&renewed, &v1)).await.unwrap(), v2);

    let other = record("b", 1);
    let err = within(lock.update(&other, &v1)).await.unwrap_err();
    assert!(matches!(err, LockError::Conflict { .. }), "{err:?}");
    let other_create = within(lock.create(&other)).await.unwrap_err();
    assert!(
        matches!(other_create, LockError::AlreadyExists { .. }),
        "{other_create:?}"
    );
}
