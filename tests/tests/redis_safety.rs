//! Issue 11's Redis holes against a real `redis-server`, one test per hole, each named after
//! it: an expiry the settings no longer ask for (6), hint streams that never end (8), versions
//! that wedge or overflow (10), values that are not records being overwritten (11) and
//! versions that go back after a deletion (14).

use std::future::Future;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use lock_core::backend::{Hint, HintStream, Version};
use lock_core::{LeaderElectionRecord, Lock, LockError};
use lock_redis::{acl_rules, RedisClient, RedisLock, RedisLockOptions, DEFAULT_KEY_PREFIX};
use lock_tests::driver::{get_eventually, next_hint, next_record, record, served_watch};
use lock_tests::hint_end::hints_end;
use lock_tests::servers::redis::RedisServer;
use redis::AsyncCommands;

/// Longest wait for anything that should happen promptly.
const PROMPTLY: Duration = Duration::from_secs(10);

/// Short timeouts, so that failures show quickly.
fn quick() -> RedisLockOptions {
    RedisLockOptions::default()
        .with_connect_timeout(Duration::from_millis(500))
        .with_response_timeout(Duration::from_millis(500))
}

async fn within<F: Future>(future: F) -> F::Output {
    lock_tests::driver::within(PROMPTLY, future).await
}

async fn lock_with(server: &RedisServer, name: &str, options: RedisLockOptions) -> RedisLock {
    within(RedisLock::connect(&server.url(), name, options))
        .await
        .expect("connect")
}

async fn admin(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    server
        .admin_client()
        .get_multiplexed_async_connection()
        .await
        .expect("admin connection")
}

/// The stored fields `record` and `version`, exactly.
async fn stored(admin: &mut redis::aio::MultiplexedConnection, key: &str) -> (String, String) {
    redis::cmd("HMGET")
        .arg(key)
        .arg("record")
        .arg("version")
        .query_async(admin)
        .await
        .expect("HMGET")
}

fn assert_corrupt(result: Result<impl std::fmt::Debug, LockError>, what: &str) -> String {
    match result {
        Err(err @ LockError::Corrupt { .. }) => err.to_string(),
        other => panic!("{what}: expected Corrupt, got {other:?}"),
    }
}

// Hole 6: an expiry the settings no longer ask for.

#[tokio::test]
async fn hole6_a_renew_without_a_ttl_removes_the_expiry() {
    let server = RedisServer::start();
    let expiring = lock_with(
        &server,
        "ttl-off",
        quick().with_abandoned_ttl(Duration::from_secs(3600)),
    )
    .await;
    let v1 = expiring.create(&record("a", 0)).await.unwrap();
    let mut admin = admin(&server).await;
    let ttl: i64 = admin.pttl(expiring.key()).await.unwrap();
    assert!(ttl > 0, "the first writer asked for an expiry: PTTL {ttl}");

    // A rolling change turns abandoned_ttl off: the next renew keeps the key for good.
    let plain = lock_with(&server, "ttl-off", quick()).await;
    let read = plain.get().await.unwrap().expect("a record");
    assert_eq!(read.version, v1);
    plain.update(&record("a", 0), &v1).await.unwrap();
    let ttl: i64 = admin.pttl(plain.key()).await.unwrap();
    assert_eq!(ttl, -1, "no TTL asked, so the key has none");
}

#[tokio::test]
async fn hole6_an_abandoned_ttl_below_twice_the_lease_is_refused() {
    let server = RedisServer::start();
    // One second of TTL under a record with a 15 s lease would expire under a live leader.
    let lock = lock_with(
        &server,
        "ttl-short",
        quick().with_abandoned_ttl(Duration::from_secs(1)),
    )
    .await;
    match lock.create(&record("a", 0)).await {
        Err(LockError::InvalidConfig(message)) => {
            assert!(message.contains("abandoned_ttl"), "{message}")
        }
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
    let mut admin = admin(&server).await;
    let exists: bool = admin.exists(lock.key()).await.unwrap();
    assert!(!exists, "nothing written");
}

#[tokio::test]
async fn hole6_the_script_never_sets_an_expiry_below_twice_the_lease() {
    let server = RedisServer::start();
    let key = "leader-election:{ttl-script}";
    let mut admin = admin(&server).await;
    // A client that asks for 1 s under a record with a 15 s lease (an older or foreign one).
    let reply: redis::Value = redis::Script::new(lock_redis::SCRIPT_SOURCE)
        .key(key)
        .key(format!("{key}:versions"))
        .arg("create")
        .arg(record("a", 0).to_json())
        .arg("")
        .arg("1000")
        .arg("")
        .invoke_async(&mut admin)
        .await
        .unwrap();
    assert!(format!("{reply:?}").contains("ok"), "{reply:?}");
    let ttl: i64 = admin.pttl(key).await.unwrap();
    assert!(ttl > 29_000, "PTTL {ttl} ms is below twice the 15 s lease");
}

// Hole 8: hint streams that die must end, so that the elector polls.

#[tokio::test]
async fn hole8_a_refused_subscribe_ends_the_watch() {
    // The documented rules without the channel permission: SUBSCRIBE gets NOPERM.
    let rules = acl_rules(DEFAULT_KEY_PREFIX).replace(
        &format!("resetchannels &{DEFAULT_KEY_PREFIX}*"),
        "resetchannels",
    );
    let server = RedisServer::builder()
        .acl_user("elector", "elector-secret", rules)
        .start();
    let url = server.url_as("elector", "elector-secret");
    let lock = within(RedisLock::connect(&url, "no-channel", quick()))
        .await
        .unwrap();
    let mut hints = lock.watch().expect("the Redis lock gives hints");
    hints_end(&mut hints, "SUBSCRIBE refused with NOPERM").await;
    // The lock itself still works; a later watch is refused and ends the same way.
    assert!(lock.get().await.unwrap().is_none());
    let mut again = lock.watch().unwrap();
    hints_end(&mut again, "a second watch").await;
}

#[tokio::test]
async fn hole8_a_lost_pubsub_connection_ends_every_watch() {
    let server = RedisServer::start();
    let client = within(RedisClient::connect(&server.url(), quick()))
        .await
        .unwrap();
    let locks: Vec<RedisLock> = (0..3)
        .map(|i| client.lock(&format!("lost-{i}")).unwrap())
        .collect();
    let mut watches: Vec<HintStream> = locks.iter().map(|lock| lock.watch().unwrap()).collect();
    for hints in &mut watches {
        assert_eq!(next_hint(hints).await, Hint::Changed, "subscribed");
    }
    let mut admin = admin(&server).await;
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(killed, 1, "one pub/sub connection for the client");
    for (lock, hints) in locks.iter().zip(&mut watches) {
        hints_end(hints, &lock.describe()).await;
    }
    // A new watch (the elector asks again after a back-off) is served on a new connection.
    let mut again = served_watch(&locks[0]).await;
    let v1 = locks[0].create(&record("a", 0)).await.unwrap();
    assert_eq!(next_record(&mut again).await, (record("a", 0), v1));
}

#[tokio::test]
async fn hole8_a_killed_server_ends_every_watch_and_after_a_restart_new_watches_work() {
    let mut server = RedisServer::start();
    let client = within(RedisClient::connect(&server.url(), quick()))
        .await
        .unwrap();
    let locks: Vec<RedisLock> = (0..3)
        .map(|i| client.lock(&format!("killed-{i}")).unwrap())
        .collect();
    let mut watches: Vec<HintStream> = locks.iter().map(|lock| lock.watch().unwrap()).collect();
    for hints in &mut watches {
        assert_eq!(next_hint(hints).await, Hint::Changed, "subscribed");
    }
    server.kill();
    for (lock, hints) in locks.iter().zip(&mut watches) {
        hints_end(hints, &lock.describe()).await;
    }
    // While the server is down a watch ends too, instead of waiting for a connection.
    let mut meanwhile = locks[0].watch().unwrap();
    hints_end(&mut meanwhile, "a watch while the server is down").await;

    server.restart();
    assert!(get_eventually(&locks[0]).await.is_none());
    // The elector calls watch() again after a back-off: bounded attempts until one is served.
    let mut hints = served_watch(&locks[0]).await;
    let v1 = locks[0].create(&record("b", 0)).await.unwrap();
    assert_eq!(next_record(&mut hints).await, (record("b", 0), v1));
}

// Hole 10: versions are canonical decimal counters within what both sides handle.

#[tokio::test]
async fn hole10_a_version_with_a_leading_zero_is_corrupt_and_left_untouched() {
    let server = RedisServer::start();
    let lock = lock_with(&server, "zeros", quick()).await;
    let key = lock.key().to_owned();
    let mut admin = admin(&server).await;
    let json = record("a", 0).to_json();
    for version in ["007", "0123", "00", "+7", "7 "] {
        let _: () = admin
            .hset_multiple(&key, &[("record", json.as_str()), ("version", version)])
            .await
            .unwrap();
        let message = assert_corrupt(lock.get().await, &format!("get at {version:?}"));
        assert!(message.contains("version"), "{message}");
        assert_corrupt(
            lock.update(&record("b", 1), &Version::new(version)).await,
            &format!("update at {version:?}"),
        );
        assert_eq!(
            stored(&mut admin, &key).await,
            (json.clone(), version.to_owned()),
            "left untouched"
        );
    }
}

#[tokio::test]
async fn hole10_an_update_past_the_largest_version_is_refused_before_writing() {
    let server = RedisServer::start();
    let lock = lock_with(&server, "largest", quick()).await;
    let key = lock.key().to_owned();
    let mut admin = admin(&server).await;
    let json = record("a", 0).to_json();
    // 2^53 - 1: the largest counter both Lua's numbers and the client handle exactly.
    let largest = "9007199254740991";
    let _: () = admin
        .hset_multiple(&key, &[("record", json.as_str()), ("version", largest)])
        .await
        .unwrap();
    let read = lock
        .get()
        .await
        .unwrap()
        .expect("the largest version is valid");
    assert_eq!(read.version.as_str(), largest);
    let message = assert_corrupt(
        lock.update(&record("a", 1), &read.version).await,
        "update at the largest version",
    );
    assert!(message.contains("largest"), "{message}");
    assert_eq!(
        stored(&mut admin, &key).await,
        (json.clone(), largest.to_owned())
    );
    // One above it is not a version at all.
    let _: () = admin
        .hset(&key, "version", "9007199254740992")
        .await
        .unwrap();
    assert_corrupt(lock.get().await, "get above the largest version");
}

// Hole 11: values that are not records are never overwritten.

/// JSON that the script's old type checks let through but that is no record.
const HOSTILE: [&str; 9] = [
    "[]",
    r#"{"renewTime":"yesterday"}"#,
    r#"{"leaseDurationSeconds":15.0}"#,
    r#"{"leaderTransitions":1e1}"#,
    r#"{"leaseDurationSeconds":-0.0}"#,
    r#"{"holderIdentity":"a","acquireTime":"2026-02-30T00:00:00Z"}"#,
    r#"{"holderIdentity":"a","renewTime":"2026-01-01T00:00:00"}"#,
    r#"{"holderIdentity":"a","leaseDurationSeconds":15,"leaderTransitions":1.5}"#,
    r#"{"holderIdentity":"a","acquireTime":"2026-01-01T24:00:00Z"}"#,
];

#[tokio::test]
async fn hole11_values_that_are_not_records_are_never_overwritten() {
    let server = RedisServer::start();
    let lock = lock_with(&server, "hostile", quick()).await;
    let key = lock.key().to_owned();
    let mut admin = admin(&server).await;
    for value in HOSTILE {
        let _: () = admin
            .hset_multiple(&key, &[("record", value), ("version", "5")])
            .await
            .unwrap();
        assert_corrupt(lock.get().await, &format!("get of {value}"));
        assert_corrupt(
            lock.update(&record("a", 1), &Version::ordered(5)).await,
            &format!("update of {value} at its version"),
        );
        assert_eq!(
            stored(&mut admin, &key).await,
            (value.to_owned(), "5".to_owned()),
            "{value} left untouched"
        );
    }
}

#[tokio::test]
async fn hole11_a_value_put_under_our_version_is_never_overwritten_by_a_renew() {
    let server = RedisServer::start();
    let lock = lock_with(&server, "renew-over", quick()).await;
    let key = lock.key().to_owned();
    let mut admin = admin(&server).await;
    for value in HOSTILE {
        let _: () = admin.del(&key).await.unwrap();
        // The lock wrote this version itself, then the record changed under it by hand.
        let v1 = lock.create(&record("a", 0)).await.unwrap();
        let _: () = admin.hset(&key, "record", value).await.unwrap();
        assert_corrupt(
            lock.update(&record("a", 0), &v1).await,
            &format!("renew over {value}"),
        );
        assert_eq!(
            stored(&mut admin, &key).await,
            (value.to_owned(), v1.to_string()),
            "{value} left untouched"
        );
    }
}

#[tokio::test]
async fn hole11_a_record_edited_by_hand_without_a_version_bump_is_a_conflict() {
    let server = RedisServer::start();
    let lock = lock_with(&server, "edited", quick()).await;
    let key = lock.key().to_owned();
    let mut admin = admin(&server).await;
    let v1 = lock.create(&record("a", 0)).await.unwrap();
    let edited = record("mallory", 7).to_json();
    let _: () = admin.hset(&key, "record", &edited).await.unwrap();
    let err = lock.update(&record("a", 0), &v1).await.unwrap_err();
    assert!(matches!(err, LockError::Conflict { .. }), "{err:?}");
    assert_eq!(stored(&mut admin, &key).await, (edited, v1.to_string()));
    // Read again, the edit is what the lock sees, and an update over it goes through.
    let read = lock.get().await.unwrap().expect("a record");
    assert_eq!(read.record, record("mallory", 7));
    lock.update(&record("a", 8), &read.version).await.unwrap();
}

#[tokio::test]
async fn the_fractional_acquire_time_the_elector_writes_is_kept_exactly() {
    let server = RedisServer::start();
    let lock = lock_with(&server, "micros", quick()).await;
    let acquired = Utc
        .with_ymd_and_hms(2026, 12, 1, 5, 6, 7)
        .unwrap()
        .checked_add_signed(chrono::TimeDelta::microseconds(123_457))
        .unwrap();
    let mine = LeaderElectionRecord {
        acquire_time: Some(acquired),
        renew_time: Some(acquired),
        ..record("a", 3)
    };
    let v1 = lock.create(&mine).await.unwrap();
    let read = lock.get().await.unwrap().expect("a record");
    assert_eq!(read.record, mine);
    assert_eq!(read.record.acquire_time, Some(acquired));
    let v2 = lock.update(&mine, &v1).await.unwrap();
    let mut admin = admin(&server).await;
    let (json, _) = stored(&mut admin, lock.key()).await;
    assert!(
        json.contains("\"acquireTime\":\"2026-12-01T05:06:07.123457Z\""),
        "{json}"
    );
    assert_eq!(lock.get().await.unwrap().unwrap().version, v2);
}

// Hole 14: versions never go back, even after a deletion and a clock step back.

#[tokio::test]
async fn hole14_versions_never_go_back_after_a_deletion() {
    let server = RedisServer::start();
    let lock = lock_with(&server, "clock-back", quick()).await;
    let key = lock.key().to_owned();
    let mut admin = admin(&server).await;
    // A version far ahead of the server clock, as after the clock stepped back.
    let _: () = admin
        .hset_multiple(
            &key,
            &[
                ("record", record("a", 0).to_json().as_str()),
                ("version", "9000000000000000"),
            ],
        )
        .await
        .unwrap();
    let read = lock.get().await.unwrap().expect("a record");
    let v1 = lock.update(&record("a", 1), &read.version).await.unwrap();
    let _: () = admin.del(&key).await.unwrap();
    let v2 = lock.create(&record("b", 0)).await.unwrap();
    let number = |v: &Version| v.as_str().parse::<u64>().unwrap();
    assert!(
        number(&v2) > number(&v1),
        "the record made after the deletion has version {v2}, not above {v1}"
    );
    assert!(v1.is_older_than(&v2));
}

#[tokio::test]
async fn a_versions_key_that_is_not_a_counter_is_corrupt_and_left_untouched() {
    let server = RedisServer::start();
    let lock = lock_with(&server, "versions-garbage", quick()).await;
    let versions = format!("{}:versions", lock.key());
    let mut admin = admin(&server).await;
    for garbage in ["007", "soon", "9007199254740992"] {
        let _: () = admin.hset(&versions, "version", garbage).await.unwrap();
        let message = assert_corrupt(lock.create(&record("a", 0)).await, garbage);
        assert!(message.contains(&versions), "{message}");
        let kept: String = admin.hget(&versions, "version").await.unwrap();
        assert_eq!(kept, garbage);
        let exists: bool = admin.exists(lock.key()).await.unwrap();
        assert!(!exists, "no record written");
    }
    // A string in its place is refused the same way.
    let _: () = admin.del(&versions).await.unwrap();
    let _: () = admin.set(&versions, "x").await.unwrap();
    assert_corrupt(lock.create(&record("a", 0)).await, "a string");
    // Deleted by hand, the election starts again.
    let _: () = admin.del(&versions).await.unwrap();
    lock.create(&record("a", 0)).await.unwrap();
}
