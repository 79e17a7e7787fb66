//! A watcher follows renews without reading the file, and reads for every other write (its own
//! test binary: it counts this process' reads of lock files).

use std::time::Duration;

use chrono::{TimeZone, Utc};
use futures::StreamExt;
use lock_core::backend::{Hint, HintStream, Version, Versioned};
use lock_core::{LeaderElectionRecord, Lock};
use lock_file::{file_operations, FileLock};

fn record(holder: &str, renewed_at: i64) -> LeaderElectionRecord {
    let acquired = Utc.timestamp_opt(1_700_000_000, 0).single();
    LeaderElectionRecord {
        holder_identity: holder.into(),
        lease_duration_seconds: 15,
        acquire_time: acquired,
        // Microseconds, as the elector writes them.
        renew_time: Utc
            .timestamp_micros(renewed_at * 1_000_000 + 654_321)
            .single(),
        leader_transitions: 4,
        ..Default::default()
    }
}

/// The next hint that carries a record at `version` (earlier ones are skipped; a `Changed` is a
/// failure: every write here is one the watcher can see).
async fn record_at(hints: &mut HintStream, version: &Version) -> Versioned {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match hints.next().await.expect("the stream stays open") {
                Hint::Record(seen) if seen.version == *version => return seen,
                Hint::Record(_) => continue,
                Hint::Changed => panic!("a change the watcher had to be told to read"),
            }
        }
    })
    .await
    .expect("a hint within 5 s")
}

fn reads() -> u64 {
    file_operations().reads
}

#[tokio::test]
async fn renews_reach_a_watcher_without_reads_and_other_writes_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("renewed.json");
    let watcher = FileLock::new(&path);
    let writer = FileLock::new(&path);
    let mut hints = watcher.watch().expect("inotify or polling");

    let mut version = writer.create(&record("a", 1_700_000_000)).await.unwrap();
    record_at(&mut hints, &version).await;

    // Twenty renews: the only reads are the writer's own version checks, one per renew.
    let before = reads();
    for second in 1..=20 {
        let renewed = record("a", 1_700_000_000 + second);
        version = writer.update(&renewed, &version).await.unwrap();
        let seen = record_at(&mut hints, &version).await;
        assert_eq!(seen.record, renewed);
        assert_eq!(
            Some(seen),
            watcher.get().await.unwrap(),
            "the hint is what a read gives"
        );
    }
    // Twenty writes and twenty checking reads of ours (the `get`s above are counted too).
    assert_eq!(reads() - before, 20 + 20, "the watcher read for a renew");

    // A takeover is read.
    let before = reads();
    let taken = record("b", 1_700_000_100);
    version = writer.update(&taken, &version).await.unwrap();
    assert_eq!(record_at(&mut hints, &version).await.record, taken);
    assert_eq!(
        reads() - before,
        2,
        "the writer's check and the watcher's read"
    );

    // A file named as a renew of the current record, whose content is something else (a hand
    // edit, a forger): the hash does not match, the watcher reads the real content.
    let current: u64 = version.as_str().parse().unwrap();
    let forged = format!(
        "{{\"version\":{},\"record\":{{\"holderIdentity\":\"c\",\"leaseDurationSeconds\":15,\"leaderTransitions\":9}}}}\n",
        current + 1
    );
    let temp = dir
        .path()
        .join(".renewed.json.tmp-1-1.renew-1700000101000000-0123456789abcdef");
    std::fs::write(&temp, &forged).unwrap();
    let before = reads();
    std::fs::rename(&temp, &path).unwrap();
    let seen = record_at(&mut hints, &Version::from(current + 1)).await;
    assert_eq!(seen.record.holder_identity, "c");
    assert_eq!(reads() - before, 1, "the watcher read the forged file");

    // A renew after a change the watcher knows is followed again from the new content.
    version = Version::from(current + 1);
    let mut renewed = seen.record.clone();
    renewed.renew_time = Utc.timestamp_micros(1_700_000_102_000_001).single();
    let before = reads();
    version = writer.update(&renewed, &version).await.unwrap();
    assert_eq!(record_at(&mut hints, &version).await.record, renewed);
    assert_eq!(reads() - before, 1, "only the writer's check");
}
