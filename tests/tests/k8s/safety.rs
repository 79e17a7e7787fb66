//! Issue 11 on a real kube-apiserver: a Lease emptied by hand is no record (and `create` writes
//! onto the object), a watch whose connection is lost ends its hint stream, and acquireTime's
//! microseconds survive every kind of lock.

use std::time::Duration;

use lock_core::backend::Hint;
use lock_core::testing::conformance::{unique_name, Backend};
use lock_core::{LeaderElectionRecord, Lock, LockError};
use lock_k8s::{kube_config, KubeLockOptions, LeaseLock, LockKind};
use lock_tests::driver::{next_hint, next_record, record};
use lock_tests::hint_end::stream_ends_within;
use lock_tests::proxy::Proxy;
use lock_tests::servers::kube::ADMIN_USER;

use super::backend::{KubeBackend, NAMESPACE};

/// Longest wait for what should happen promptly (two cores shared with builds and servers).
const PROMPTLY: Duration = Duration::from_secs(30);

/// Hole 1 (issue 11), Kubernetes: a Lease whose spec was emptied (or lost its holder) under a
/// leader read as a free record, which a standby took at once while the leader still led. It
/// is no record now: `get` says `None` (the elector waits a lease), the leader's renew is a
/// conflict, hints say "changed" and never carry a free record, and `create` writes the record
/// onto the existing object by compare-and-swap; AlreadyExists only when a record is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole1_an_emptied_lease_is_no_record_and_create_writes_onto_it() {
    let backend = KubeBackend::start(LockKind::Lease).await;
    let name = unique_name("lease-emptied");
    let leader = backend.lock(&name).await;
    let v1 = leader.create(&record("a", 3)).await.expect("create");

    for (what, spec) in [
        ("an empty spec", "{}"),
        (
            "a spec without a holder",
            r#"{"leaseDurationSeconds":15,"leaseTransitions":3}"#,
        ),
    ] {
        backend.write_raw(&name, spec.as_bytes()).await;
        let standby = backend.lock(&name).await;
        let got = standby.get().await.expect("get");
        assert!(got.is_none(), "{what} reads as no record, not {got:?}");

        // A watch that starts now reports no record either.
        let mut hints = standby.watch().expect("hints");
        for _ in 0..2 {
            let hint = next_hint(&mut hints).await;
            assert_eq!(hint, Hint::Changed, "{what}: a hint, not a free record");
        }
    }

    // The leader's renew at its version is a conflict, and then it reads no record.
    let err = leader.update(&record("a", 3), &v1).await.unwrap_err();
    assert!(matches!(err, LockError::Conflict { .. }), "{err:?}");
    assert!(leader.get().await.expect("get").is_none());

    // Create writes onto the existing object (read first, or not), once.
    let v2 = leader
        .create(&record("b", 4))
        .await
        .expect("create onto it");
    let got = leader.get().await.expect("get").expect("a record");
    assert_eq!(
        (got.record, got.version.clone()),
        (record("b", 4), v2.clone())
    );
    let err = leader.create(&record("c", 5)).await.unwrap_err();
    assert!(matches!(err, LockError::AlreadyExists { .. }), "{err:?}");

    backend.write_raw(&name, b"{}").await;
    let fresh = backend.lock(&name).await;
    fresh
        .create(&record("c", 5))
        .await
        .expect("create onto it, unread");
    let got = fresh.get().await.expect("get").expect("a record");
    assert_eq!(got.record, record("c", 5));
    let err = fresh.create(&record("d", 6)).await.unwrap_err();
    assert!(matches!(err, LockError::AlreadyExists { .. }), "{err:?}");
}

/// Hole 8 (issue 11), Kubernetes: the kube watcher retried inside the hint stream forever
/// ("polling meanwhile" was logged, nothing polled). When the connection to the API server is
/// lost the stream ends; a new watch once it is back gives hints again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole8_a_watch_ends_when_the_connection_to_the_api_server_is_lost() {
    let backend = KubeBackend::start(LockKind::Lease).await;
    let server = backend.server;
    let relay = Proxy::start(std::net::SocketAddr::from(([127, 0, 0, 1], server.port()))).await;
    let kubeconfig = server
        .dir()
        .join(format!("kubeconfig-relay-{}.yaml", relay.address().port()));
    let text = std::fs::read_to_string(server.kubeconfig(ADMIN_USER)).expect("kubeconfig");
    let relayed = text.replace(
        &server.url(),
        &format!("https://127.0.0.1:{}", relay.address().port()),
    );
    assert_ne!(text, relayed, "the kubeconfig names the server's URL");
    std::fs::write(&kubeconfig, relayed).expect("write the kubeconfig");
    let config = kube_config(Some(&kubeconfig)).await.expect("a kubeconfig");
    let options = KubeLockOptions::default().with_namespace(NAMESPACE);
    let name = unique_name("watch-cut");
    let lock = LeaseLock::from_config(config, &name, options).expect("a lock");
    let writer = backend.lock(&name).await;

    let v1 = writer.create(&record("a", 0)).await.expect("create");
    let mut hints = lock.watch().expect("hints");
    assert_eq!(next_record(&mut hints).await, (record("a", 0), v1.clone()));

    relay.down();
    let (given, took) = stream_ends_within(&mut hints, PROMPTLY).await;
    assert!(
        given
            .iter()
            .all(|hint| *hint == Hint::Changed || matches!(hint, Hint::Record(_))),
        "{given:?}"
    );
    assert!(took < PROMPTLY, "ended after {took:?}");

    // While the connection is cut, a new watch ends too instead of retrying inside.
    let mut refused = lock.watch().expect("hints");
    let (given, _) = stream_ends_within(&mut refused, PROMPTLY).await;
    assert!(given.is_empty(), "no hints from a failed watch: {given:?}");

    relay.heal();
    let mut hints = lock.watch().expect("hints");
    assert_eq!(next_record(&mut hints).await, (record("a", 0), v1.clone()));
    let v2 = writer.update(&record("a", 1), &v1).await.expect("update");
    assert_eq!(next_record(&mut hints).await, (record("a", 1), v2));
}

/// Issue 11: the elector tells its own write from a twin's by acquireTime's microseconds, so
/// every kind of lock returns them exactly as written (a Lease's MicroTime, the annotation's
/// JSON), on create and on update.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquire_time_microseconds_are_kept_exactly_by_every_kind() {
    let acquired = chrono::DateTime::from_timestamp(1_700_000_000, 123_456_000).unwrap();
    let renewed = chrono::DateTime::from_timestamp(1_700_000_003, 654_321_000).unwrap();
    for kind in LockKind::ALL {
        let backend = KubeBackend::start(kind).await;
        let name = unique_name("micros");
        let lock = backend.lock(&name).await;
        let written = LeaderElectionRecord {
            acquire_time: Some(acquired),
            renew_time: Some(renewed),
            ..record("a", 3)
        };
        let v1 = lock.create(&written).await.expect("create");
        let read = lock.get().await.expect("get").expect("a record");
        assert_eq!(read.record, written, "{kind}");
        let raw = String::from_utf8(backend.read_raw(&name).await.expect("stored")).unwrap();
        assert!(
            raw.contains(r#""acquireTime":"2023-11-14T22:13:20.123456Z""#),
            "{kind}: {raw}"
        );
        let renewed_again = LeaderElectionRecord {
            renew_time: Some(chrono::DateTime::from_timestamp(1_700_000_005, 1_000).unwrap()),
            ..written
        };
        lock.update(&renewed_again, &v1).await.expect("update");
        let read = backend.lock(&name).await.get().await.expect("get");
        assert_eq!(read.expect("a record").record, renewed_again, "{kind}");
    }
}
