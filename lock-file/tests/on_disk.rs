//! What the file backend leaves on disk, its change hints, and compare-and-swap between real
//! processes.

use std::process::{Command, Stdio};
use std::time::Duration;

use futures::StreamExt;
use lock_core::backend::{Hint, Version};
use lock_core::{LeaderElectionRecord, Lock, LockError};
use lock_file::FileLock;

fn record(holder: &str) -> LeaderElectionRecord {
    LeaderElectionRecord {
        holder_identity: holder.into(),
        lease_duration_seconds: 15,
        ..Default::default()
    }
}

#[tokio::test]
async fn the_file_holds_a_version_and_a_client_go_record_and_no_temporary_files_remain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/election.json");
    let lock = FileLock::new(&path);
    let v1 = lock.create(&record("a")).await.unwrap();
    let v2 = lock.update(&record("b"), &v1).await.unwrap();
    let first: u64 = v1.as_str().parse().unwrap();
    assert_eq!(v2, Version::from(first + 1));
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        text,
        format!(
            "{{\"version\":{},\"record\":{{\"holderIdentity\":\"b\",\"leaseDurationSeconds\":15,\"leaderTransitions\":0}}}}\n",
            first + 1
        )
    );
    let mut names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["election.json", "election.json.lock"]);
    assert_eq!(lock.describe(), format!("file://{}", path.display()));
}

#[tokio::test]
async fn an_empty_file_is_corrupt_and_stays_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.json");
    std::fs::write(&path, b"").unwrap();
    let lock = FileLock::new(&path);
    let err = lock.get().await.unwrap_err();
    assert!(matches!(err, LockError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("empty.json"), "{err}");
    let err = lock.create(&record("a")).await.unwrap_err();
    assert!(matches!(err, LockError::AlreadyExists { .. }), "{err}");
    let err = lock
        .update(&record("a"), &Version::from(0u64))
        .await
        .unwrap_err();
    assert!(matches!(err, LockError::Corrupt { .. }), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"");
}

#[tokio::test]
async fn a_write_by_another_handle_arrives_as_a_hint_with_the_new_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hinted.json");
    let watcher = FileLock::new(&path);
    let writer = FileLock::new(&path);
    let mut hints = watcher.watch().expect("inotify or polling");
    let version = writer.create(&record("a")).await.unwrap();
    let hint = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(Hint::Record(seen)) = hints.next().await {
                return seen;
            }
        }
    })
    .await
    .expect("a hint within 5 s");
    assert_eq!(hint.version, version);
    assert_eq!(hint.record.holder_identity, "a");
}

/// Child mode of the cross-process test: update once from the version named in the
/// environment, and exit 0 on success, 3 on conflict.
#[test]
fn cas_child() {
    let (Ok(path), Ok(version)) = (
        std::env::var("LOCK_FILE_CAS_PATH"),
        std::env::var("LOCK_FILE_CAS_VERSION"),
    ) else {
        return; // run as a normal test: nothing to do
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let code = runtime.block_on(async {
        let lock = FileLock::new(path);
        let me = format!("pid-{}", std::process::id());
        match lock.update(&record(&me), &Version::new(version)).await {
            Ok(_) => 0,
            Err(LockError::Conflict { .. }) => 3,
            Err(err) => panic!("unexpected error: {err}"),
        }
    });
    std::process::exit(code);
}

#[tokio::test]
async fn compare_and_swap_holds_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("processes.json");
    let lock = FileLock::new(&path);
    let version = lock.create(&record("seed")).await.unwrap();
    let first: u64 = version.as_str().parse().unwrap();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..8)
        .map(|_| {
            Command::new(&exe)
                .args(["--exact", "cas_child", "--nocapture", "--test-threads=1"])
                .env("LOCK_FILE_CAS_PATH", &path)
                .env("LOCK_FILE_CAS_VERSION", version.as_str())
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let codes: Vec<i32> = children
        .into_iter()
        .map(|mut child| child.wait().unwrap().code().unwrap_or(-1))
        .collect();
    assert_eq!(
        codes.iter().filter(|&&code| code == 0).count(),
        1,
        "{codes:?}"
    );
    assert_eq!(
        codes.iter().filter(|&&code| code == 3).count(),
        7,
        "{codes:?}"
    );
    let stored = lock.get().await.unwrap().unwrap();
    assert_eq!(stored.version, Version::from(first + 1));
    assert!(stored.record.holder_identity.starts_with("pid-"));
}

#[tokio::test]
async fn a_file_deleted_and_made_again_never_repeats_a_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reset.json");
    let lock = FileLock::new(&path);
    let mut version = lock.create(&record("a")).await.unwrap();
    for holder in ["b", "c", "d"] {
        version = lock.update(&record(holder), &version).await.unwrap();
    }
    std::fs::remove_file(&path).unwrap();
    let again = lock.create(&record("e")).await.unwrap();
    assert!(version.is_older_than(&again), "{version} then {again}");
    let err = lock.update(&record("x"), &version).await.unwrap_err();
    assert!(matches!(err, LockError::Conflict { .. }), "{err}");
}

#[tokio::test]
async fn a_relative_path_gets_hints_too() {
    let dir = tempfile::tempdir().unwrap();
    // Relative to the current directory, which tests share: name the file after the tempdir.
    let unique = dir
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let relative = std::path::PathBuf::from(format!("target-test-{unique}.json"));
    let watcher = FileLock::new(&relative);
    assert!(watcher.path().is_absolute());
    let mut hints = watcher.watch().expect("inotify or polling");
    let writer = FileLock::new(&relative);
    writer.create(&record("a")).await.unwrap();
    let hint = tokio::time::timeout(Duration::from_secs(5), hints.next()).await;
    let _ = std::fs::remove_file(watcher.path());
    let _ = std::fs::remove_file(format!("{}.lock", watcher.path().display()));
    assert!(matches!(hint, Ok(Some(Hint::Record(_)))), "{hint:?}");
}

#[tokio::test]
async fn an_os_lock_held_elsewhere_makes_calls_unavailable_not_stuck() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("held.json");
    let lock = FileLock::new(&path);
    let version = lock.create(&record("a")).await.unwrap();
    let guard = std::fs::File::create(dir.path().join("held.json.lock")).unwrap();
    guard.lock().unwrap();
    let started = std::time::Instant::now();
    let err = lock.update(&record("b"), &version).await.unwrap_err();
    assert!(matches!(err, LockError::Unavailable { .. }), "{err}");
    assert!(err.to_string().contains("held.json.lock"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    guard.unlock().unwrap();
    lock.update(&record("b"), &version).await.unwrap();
}
