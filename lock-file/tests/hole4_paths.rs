//! Issue 11, hole 4: one lock file reached under two paths must still be one lock. A symlink
//! leads to the same lock (and stays a symlink), a hard-linked lock file is refused (writes by
//! rename would split the names into two files), a dangling symlink is never created over, and
//! a FIFO, socket or device at the lock path is refused without hanging.

mod support;

use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, Instant};

use lock_core::backend::Version;
use lock_core::{ElectionConfig, ElectorHandle, LeaderElector, Lock, LockError};
use lock_file::FileLock;
use support::record;
use tokio_util::sync::CancellationToken;

fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path)
        .map(|meta| meta.file_type().is_symlink())
        .unwrap_or(false)
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole4_a_symlink_and_its_target_are_one_lock() {
    let dir = tempfile::tempdir().unwrap();
    let real_dir = dir.path().join("real");
    let links_dir = dir.path().join("links");
    std::fs::create_dir_all(&real_dir).unwrap();
    std::fs::create_dir_all(&links_dir).unwrap();
    let real = real_dir.join("election.json");
    let link = links_dir.join("election.json");
    symlink("../real/election.json", &link).unwrap();
    let direct = FileLock::new(&real);
    let linked = FileLock::new(&link);

    let v1 = direct.create(&record("a", 1)).await.unwrap();
    assert_eq!(linked.get().await.unwrap().unwrap().version, v1);
    // Both have read v1; the write through the link lands first, so the direct one must lose.
    let v2 = linked.update(&record("b", 2), &v1).await.unwrap();
    match direct.update(&record("a", 1), &v1).await {
        Err(LockError::Conflict { .. }) => {}
        other => panic!("both paths accepted an update from version {v1}: {other:?}"),
    }
    assert!(
        is_symlink(&link),
        "the write through the link replaced the link with a file"
    );
    assert_eq!(direct.get().await.unwrap().unwrap().version, v2);
    assert_eq!(names_in(&links_dir), ["election.json"]);
    assert_eq!(names_in(&real_dir), ["election.json", "election.json.lock"]);

    // Both race from the same version, many times over: exactly one wins each round.
    let started = Instant::now();
    for round in 0..40 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "round {round} too slow"
        );
        let current = direct.get().await.unwrap().unwrap().version;
        let racers = [("a", direct.clone()), ("b", linked.clone())].map(|(who, lock)| {
            let current = current.clone();
            tokio::spawn(async move { lock.update(&record(who, round), &current).await })
        });
        let mut wins = 0;
        for racer in racers {
            match racer.await.unwrap() {
                Ok(_) => wins += 1,
                Err(LockError::Conflict { .. }) => {}
                Err(err) => panic!("round {round}: {err}"),
            }
        }
        assert_eq!(
            wins, 1,
            "round {round}: {wins} writers won from version {current}"
        );
    }
    assert!(is_symlink(&link));
}

fn quick_config(identity: &str) -> ElectionConfig {
    ElectionConfig::new(identity)
        .with_lease_duration(Duration::from_millis(2000))
        .with_renew_deadline(Duration::from_millis(1500))
        .with_retry_period(Duration::from_millis(200))
        .with_release_on_cancel(true)
}

fn start(lock: FileLock, identity: &str) -> (ElectorHandle, CancellationToken) {
    let elector = LeaderElector::new(lock, quick_config(identity)).unwrap();
    let handle = elector.handle();
    let cancel = CancellationToken::new();
    tokio::spawn(elector.run(cancel.clone()));
    (handle, cancel)
}

/// Samples both handles every 5 ms until `done` holds or `limit` passes; panics on a sample
/// where both lead. Returns whether `done` held.
async fn watch_overlap(
    a: &ElectorHandle,
    b: &ElectorHandle,
    limit: Duration,
    done: impl Fn() -> bool,
) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        assert!(
            !(a.is_leader() && b.is_leader()),
            "both electors lead: one through the path, one through the symlink"
        );
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole4_two_electors_through_a_path_and_a_symlink_never_lead_together() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("election.json");
    let link = dir.path().join("alias.json");
    symlink("election.json", &link).unwrap();
    // The candidate on the link starts first, while the link still dangles.
    let (b, stop_b) = start(FileLock::new(&link), "b");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (a, stop_a) = start(FileLock::new(&real), "a");
    let limit = Duration::from_secs(10);
    assert!(
        watch_overlap(&a, &b, limit, || a.is_leader() || b.is_leader()).await,
        "nobody led within {limit:?}"
    );
    watch_overlap(&a, &b, Duration::from_secs(1), || false).await;
    // Hand over: the leader stops and releases, the other one must take over.
    let (leader, standby, stop) = if a.is_leader() {
        (&a, &b, &stop_a)
    } else {
        (&b, &a, &stop_b)
    };
    stop.cancel();
    assert!(
        watch_overlap(&a, &b, limit, || standby.is_leader()).await,
        "{} did not take over from {} within {limit:?}",
        standby.identity(),
        leader.identity()
    );
    watch_overlap(&a, &b, Duration::from_millis(500), || false).await;
    stop_a.cancel();
    stop_b.cancel();
    assert!(is_symlink(&link), "the link was replaced by a file");
}

#[tokio::test]
async fn hole4_a_hard_linked_lock_file_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("election.json");
    let second = dir.path().join("hard.json");
    let one = FileLock::new(&first);
    let version = one.create(&record("a", 1)).await.unwrap();
    std::fs::hard_link(&first, &second).unwrap();
    let before = std::fs::read(&first).unwrap();
    let other = FileLock::new(&second);
    for lock in [&one, &other] {
        let err = match lock.update(&record("x", 2), &version).await {
            Err(err) => err,
            Ok(_) => panic!("{} wrote a hard-linked lock file", lock.describe()),
        };
        assert!(matches!(err, LockError::InvalidConfig(_)), "{err}");
        assert!(err.to_string().contains("hard link"), "{err}");
        let err = lock.get().await.unwrap_err();
        assert!(matches!(err, LockError::InvalidConfig(_)), "{err}");
    }
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&first).unwrap().nlink(), 2);
    assert_eq!(std::fs::read(&second).unwrap(), before);
}

#[tokio::test]
async fn hole4_a_dangling_symlink_is_never_created_over() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("election.json");
    let target = dir.path().join("nowhere/missing.json");
    symlink(&target, &link).unwrap();
    let lock = FileLock::new(&link);
    let err = lock.create(&record("a", 1)).await.unwrap_err();
    assert!(matches!(err, LockError::InvalidConfig(_)), "{err}");
    let message = err.to_string();
    assert!(message.contains(&link.display().to_string()), "{message}");
    assert!(message.contains(&target.display().to_string()), "{message}");
    let err = lock.get().await.unwrap_err();
    assert!(matches!(err, LockError::InvalidConfig(_)), "{err}");
    assert!(is_symlink(&link), "the dangling link was replaced");
    assert_eq!(std::fs::read_link(&link).unwrap(), target);
    assert!(!target.exists());
    assert!(!dir.path().join("nowhere").exists());
}

/// Runs every lock call on `path` with a time limit. A call stuck opening a FIFO is freed by
/// opening the FIFO's other end before the test fails, so that the runtime can shut down.
async fn assert_refused_in_time(path: &Path, kind: &str) {
    let lock = FileLock::new(path);
    let limit = Duration::from_secs(5);
    let calls: [(&str, futures::future::BoxFuture<'_, Result<(), LockError>>); 3] = [
        ("get", Box::pin(async { lock.get().await.map(drop) })),
        (
            "create",
            Box::pin(async { lock.create(&record("a", 1)).await.map(drop) }),
        ),
        (
            "update",
            Box::pin(async {
                lock.update(&record("a", 1), &Version::from(1u64))
                    .await
                    .map(drop)
            }),
        ),
    ];
    for (name, call) in calls {
        let Ok(result) = tokio::time::timeout(limit, call).await else {
            free_fifo(path);
            panic!("{name} on a {kind} at the lock path hung for {limit:?}");
        };
        let err = result.expect_err("a special file is not a lock file");
        assert!(matches!(err, LockError::InvalidConfig(_)), "{name}: {err}");
        assert!(err.to_string().contains(kind), "{name}: {err}");
    }
}

fn free_fifo(path: &Path) {
    for end in [
        path.to_path_buf(),
        format!("{}.lock", path.display()).into(),
    ] {
        let _ = std::fs::OpenOptions::new().read(true).write(true).open(end);
    }
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo (coreutils)");
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole4_a_fifo_socket_or_device_at_the_lock_path_is_refused_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.json");
    mkfifo(&fifo);
    assert_refused_in_time(&fifo, "FIFO").await;
    let socket = dir.path().join("socket.json");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    assert_refused_in_time(&socket, "socket").await;
    let device = dir.path().join("device.json");
    symlink("/dev/null", &device).unwrap();
    assert_refused_in_time(&device, "device").await;
    // A FIFO in place of the OS lock file next to a normal lock path is refused too.
    let guarded = dir.path().join("guarded.json");
    mkfifo(&dir.path().join("guarded.json.lock"));
    let lock = FileLock::new(&guarded);
    let Ok(result) =
        tokio::time::timeout(Duration::from_secs(5), lock.create(&record("a", 1))).await
    else {
        free_fifo(&guarded);
        panic!("create hung on a FIFO in place of the OS lock file");
    };
    let err = result.unwrap_err();
    assert!(err.to_string().contains("FIFO"), "{err}");
    assert!(!guarded.exists());
}

#[tokio::test]
async fn hole4_hints_through_a_symlink_follow_the_target_and_end_when_the_link_moves() {
    use futures::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let real_dir = dir.path().join("real");
    std::fs::create_dir_all(&real_dir).unwrap();
    let real = real_dir.join("election.json");
    let link = dir.path().join("election.json");
    symlink(&real, &link).unwrap();
    let direct = FileLock::new(&real);
    let version = direct.create(&record("a", 1)).await.unwrap();
    let mut hints = FileLock::new(&link).watch().expect("inotify or polling");
    let written = direct.update(&record("b", 2), &version).await.unwrap();
    let limit = Duration::from_secs(5);
    let hint = tokio::time::timeout(limit, hints.next()).await;
    match hint {
        Ok(Some(lock_core::backend::Hint::Record(seen))) => assert_eq!(seen.version, written),
        other => panic!("expected the record written through the target, got {other:?}"),
    }
    // Point the link elsewhere (atomically, as `ln -sfn` does with a rename).
    let elsewhere = dir.path().join("other.json");
    let temp_link = dir.path().join("election.json.new");
    symlink(&elsewhere, &temp_link).unwrap();
    std::fs::rename(&temp_link, &link).unwrap();
    let ended = tokio::time::timeout(limit, async {
        for _ in 0..100 {
            if hints.next().await.is_none() {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(ended, Ok(true), "the stream went on after the link moved");
}
