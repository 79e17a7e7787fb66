//! `demo observe` follows 20 handovers between `demo` processes without a single write, on
//! every backend: it prints every new leader and term in the order the instances printed
//! `leading`. Where the backend has credentials, the observer gets read-only ones (a Redis ACL
//! user without any write command, an etcd role that may only read, a Kubernetes user whose
//! RBAC allows only get, list and watch on Leases); each test first shows that those
//! credentials cannot write. Also: a leader killed outright is given up when the lease the
//! observer saw runs out, and the lock flags work before and after `observe`.

use std::time::Duration;

use lock_core::testing::conformance::unique_name;
use lock_core::{LeaderElectionRecord, Lock};
use lock_etcd::{EtcdLock, EtcdLockOptions};
use lock_k8s::{KubeLockOptions, LockKind};
use lock_redis::{acl_rules, RedisLock, DEFAULT_KEY_PREFIX as REDIS_PREFIX};
use lock_tests::demo::run_demo;
use lock_tests::observing::{
    demo_observe_follows_handovers, demo_observe_follows_handovers_as, HANDOVERS,
};
use lock_tests::servers::etcd::EtcdServer;
use lock_tests::servers::kube::KubeApiServer;
use lock_tests::servers::redis::RedisServer;

fn record(holder: &str) -> LeaderElectionRecord {
    LeaderElectionRecord {
        holder_identity: holder.to_owned(),
        lease_duration_seconds: 4,
        ..LeaderElectionRecord::default()
    }
}

/// Asserts that `lock` (opened with the observer's credentials) can read but not write.
async fn assert_read_only(lock: &dyn Lock) {
    lock.get()
        .await
        .expect("the observer's credentials may read");
    let refused = lock
        .create(&record("intruder"))
        .await
        .expect_err("the observer's credentials must not write");
    assert!(
        matches!(refused, lock_core::LockError::Forbidden { .. }),
        "{refused}"
    );
}

/// The user the file observer runs as: it may read the lock's directory, not write it.
const NOBODY: u32 = 65534;

/// The instances run as this user (root in CI), the observer as `nobody`, for whom the lock's
/// directory and files are read-only: it follows the handovers without being able to write
/// anything there (a lock file has no credentials of its own to make read-only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_as_a_user_who_may_not_write() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("a readable directory");
    let lock = dir.path().join("election.json");
    let lock = lock.to_str().expect("a UTF-8 temporary path");
    let flags = ["--lock-file", lock];
    let observer = nix::unistd::Uid::from_raw(NOBODY);
    assert_ne!(
        nix::unistd::Uid::current(),
        observer,
        "the test runs as another user than the observer"
    );
    demo_observe_follows_handovers_as(&flags, &flags, HANDOVERS, Some(NOBODY)).await;
}

/// The ACL rules of a user that may run the lock's read (its script, whose writes the ACL then
/// refuses) and subscribe to change hints, and nothing else.
fn redis_read_only_rules() -> String {
    let prefix = REDIS_PREFIX;
    format!(
        "resetkeys ~{prefix}* resetchannels &{prefix}* -@all +evalsha +script|load +type +hmget \
         +subscribe +unsubscribe +ping"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_with_a_read_only_acl_user() {
    let server = RedisServer::builder()
        .acl_user("elector", "s3cret", acl_rules(REDIS_PREFIX))
        .acl_user("watcher", "w4tch", redis_read_only_rules())
        .start();
    let name = unique_name("observe");
    let watcher = server.url_as("watcher", "w4tch");
    let refused = RedisLock::connect(&watcher, "control", Default::default())
        .await
        .expect("connect as watcher");
    assert_read_only(&refused).await;
    let mut admin = server
        .admin_client()
        .get_multiplexed_async_connection()
        .await
        .expect("admin");
    let _: () = redis::cmd("ACL")
        .arg("LOG")
        .arg("RESET")
        .query_async(&mut admin)
        .await
        .expect("ACL LOG RESET");

    let elector = server.url_as("elector", "s3cret");
    let lock_flags = [
        "--backend",
        "redis",
        "--redis-url",
        &elector,
        "--lock-name",
        &name,
    ];
    let observer_flags = [
        "--backend",
        "redis",
        "--redis-url",
        &watcher,
        "--lock-name",
        &name,
    ];
    demo_observe_follows_handovers(&lock_flags, &observer_flags, HANDOVERS).await;

    let denied: Vec<redis::Value> = redis::cmd("ACL")
        .arg("LOG")
        .query_async(&mut admin)
        .await
        .expect("ACL LOG");
    assert!(denied.is_empty(), "the ACL refused something: {denied:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_with_a_read_only_role() {
    let prefix = lock_etcd::DEFAULT_KEY_PREFIX;
    let server = EtcdServer::builder()
        .user("elector", "s3cret", prefix)
        .read_only_user("watcher", "w4tch", prefix)
        .start();
    let endpoint = server.endpoint();
    let options = EtcdLockOptions::default().with_user("watcher", "w4tch");
    let refused = EtcdLock::connect(&[&endpoint], "control", options)
        .await
        .expect("connect as watcher");
    assert_read_only(&refused).await;

    let name = unique_name("observe");
    let address = endpoint.trim_start_matches("http://");
    let elector = format!("etcd://elector:s3cret@{address}");
    let watcher = format!("etcd://watcher:w4tch@{address}");
    let lock_flags = ["--lock", &elector, "--lock-name", &name];
    let observer_flags = ["--lock", &watcher, "--lock-name", &name];
    demo_observe_follows_handovers(&lock_flags, &observer_flags, HANDOVERS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k8s_lease_with_rbac_allowing_only_get_list_watch() {
    let server = KubeApiServer::start();
    for args in [
        &[
            "create",
            "role",
            "lease-reader",
            "--verb=get,list,watch",
            "--resource=leases.coordination.k8s.io",
            "-n",
            "default",
        ][..],
        &[
            "create",
            "rolebinding",
            "lease-reader-bob",
            "--role=lease-reader",
            "--user=bob",
            "-n",
            "default",
        ][..],
    ] {
        let output = server
            .kubectl(lock_tests::servers::kube::ADMIN_USER)
            .args(args)
            .output()
            .expect("kubectl runs");
        assert!(
            output.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let bob = server.kubeconfig("bob");
    let options = KubeLockOptions::default()
        .with_namespace("default")
        .with_kubeconfig(&bob);
    let refused = lock_k8s::connect(LockKind::Lease, "control", options)
        .await
        .expect("a Lease lock as bob");
    assert_read_only(refused.as_ref()).await;

    let name = unique_name("observe");
    let admin = server.admin_kubeconfig();
    let admin = admin.to_str().expect("a UTF-8 path");
    let bob = bob.to_str().expect("a UTF-8 path");
    let lock = |kubeconfig| {
        vec![
            "--backend",
            "k8s",
            "--namespace",
            "default",
            "--lock-name",
            &name,
            "--kubeconfig",
            kubeconfig,
        ]
    };
    demo_observe_follows_handovers(&lock(admin), &lock(bob), HANDOVERS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lock_flags_work_before_and_after_the_action_and_election_flags_are_refused() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let lock = dir.path().join("election.json");
    let lock = lock.to_str().expect("a UTF-8 temporary path");
    let output = run_demo(&["--instance", "a", "observe", "--lock-file", lock], EXIT).await;
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let output = run_demo(&["observe", "--instance", "a"], EXIT).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--instance"), "{stderr}");
    let output = run_demo(&["observe", "--help"], EXIT).await;
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    for taught in ["never writes", "--lock-file", "--backend", "leader_changed"] {
        assert!(help.contains(taught), "`{taught}` in:\n{help}");
    }
    // Lock flags before the action's name count as after it.
    let mut before = lock_tests::demo::Demo::start_with(
        "before",
        &[
            "--lock-file",
            lock,
            "--json",
            "--retry-period",
            "100ms",
            "observe",
        ],
    );
    lock_tests::demo::wait_until("the first observer line", EXIT, || {
        !before.observed().is_empty()
    })
    .await;
    before.interrupt();
    assert!(
        before.wait_exit(EXIT).await.success(),
        "{}",
        before.report()
    );
    let first = &before.observed()[0];
    assert_eq!(first.reason.as_deref(), Some("the lock holds no record"));
    assert!(!std::path::Path::new(lock).exists(), "nothing was written");
}

const EXIT: Duration = Duration::from_secs(30);

/// A leader killed outright (no release) is reported gone when the lease the observer saw
/// runs out, not before the leader's own renew deadline and not after the standby took over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_reported_gone_when_its_observed_lease_runs_out() {
    use lock_tests::demo::{wait_until, Demo};
    use lock_tests::observing::TIMING_FLAGS;

    let dir = tempfile::tempdir().expect("a temporary directory");
    let lock = dir.path().join("election.json");
    let lock = lock.to_str().expect("a UTF-8 temporary path");
    let mut observer = Demo::start_with("observer", &["observe", "--json", "--lock-file", lock]);
    let mut flags = vec!["--lock-file", lock];
    flags.extend_from_slice(&TIMING_FLAGS);
    let mut a = Demo::start("a", &flags);
    a.wait_for("a leading", STARTUP, |event| event.event == "leading")
        .await;
    let mut b = Demo::start("b", &flags);
    b.wait_for("b following", STARTUP, |event| event.event == "following")
        .await;
    wait_until("the observer naming a", STARTUP, || {
        observer
            .observed()
            .iter()
            .any(|line| line.leader.as_deref() == Some("a"))
    })
    .await;
    a.signal(nix::sys::signal::Signal::SIGKILL);
    let killed = tokio::time::Instant::now();
    a.wait_exit(EXIT).await;
    let took_over = b
        .wait_for("b leading", Duration::from_secs(15), |event| {
            event.event == "leading"
        })
        .await;
    wait_until("the observer naming b", Duration::from_secs(5), || {
        observer
            .observed()
            .iter()
            .any(|line| line.leader.as_deref() == Some("b"))
    })
    .await;
    observer.interrupt();
    assert!(observer.wait_exit(EXIT).await.success());
    b.interrupt();
    assert!(b.wait_exit(EXIT).await.success(), "{}", b.report());

    // The line after the last one naming a ends a's term for the observer: "no leader" because
    // the lease it saw ran out, or b, if b's takeover was read first (b counted its own
    // observation of a's last renew, which may have come a moment earlier).
    let lines = observer.observed();
    let last_a = lines
        .iter()
        .rposition(|line| line.leader.as_deref() == Some("a"))
        .expect("a named");
    let next = lines
        .get(last_a + 1)
        .unwrap_or_else(|| panic!("a named to the end\n{}", observer.report()));
    match next.leader.as_deref() {
        None => assert!(
            next.reason
                .as_deref()
                .is_some_and(|why| why.contains("lease of a (term 0) ran out")),
            "{}",
            observer.report()
        ),
        Some(leader) => assert_eq!(leader, "b", "{}", observer.report()),
    }
    let named_b = lines
        .iter()
        .position(|line| line.leader.as_deref() == Some("b"))
        .expect("b named");
    assert_eq!(lines[named_b].term, took_over.term, "{}", observer.report());
    assert!(
        lines
            .iter()
            .skip(named_b)
            .all(|line| line.leader.as_deref() != Some("a")),
        "{}",
        observer.report()
    );
    // Not before a's own renew deadline (3 s after its last renew, at most 0.5 s before the
    // kill), and within the 4 s lease the observer saw (and a margin for a loaded machine).
    let given_up = next.arrived.duration_since(killed);
    assert!(
        (Duration::from_millis(2500)..=Duration::from_secs(6)).contains(&given_up),
        "a given up {given_up:?} after the kill\n{}",
        observer.report()
    );
}

const STARTUP: Duration = Duration::from_secs(60);
