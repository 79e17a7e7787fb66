//! Issue 11, hole 11 (file side): a valid record edited by hand without a version bump is
//! noticed (the next update is a conflict, so the elector reads it) instead of being
//! overwritten silently, and a value that is not a record is reported corrupt and never
//! overwritten. Also: acquireTime keeps its microseconds (the elector's nonce).

mod support;

use chrono::{TimeZone, Utc};
use lock_core::backend::Version;
use lock_core::{Lock, LockError};
use lock_file::FileLock;
use support::record;

#[tokio::test]
async fn hole11_a_record_edited_by_hand_without_a_version_bump_is_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("election.json");
    let lock = FileLock::new(&path);
    let version = lock.create(&record("a", 1)).await.unwrap();
    let edited = std::fs::read_to_string(&path).unwrap().replace(
        "\"holderIdentity\":\"a\"",
        "\"holderIdentity\":\"operator\"",
    );
    std::fs::write(&path, &edited).unwrap();
    match lock.update(&record("a", 1), &version).await {
        Err(LockError::Conflict { .. }) => {}
        other => panic!("a renew at version {version} overwrote a hand edit: {other:?}"),
    }
    assert_eq!(std::fs::read_to_string(&path).unwrap(), edited);
    // Once read, the edit is known, and the reader may replace it.
    let seen = lock.get().await.unwrap().unwrap();
    assert_eq!(seen.version, version);
    assert_eq!(seen.record.holder_identity, "operator");
    lock.update(&record("a", 2), &seen.version).await.unwrap();
}

#[tokio::test]
async fn hole11_values_that_are_not_records_are_corrupt_and_never_overwritten() {
    let record_json = record("a", 1).to_json();
    let hostile = [
        "[]".to_owned(),
        "[5]".to_owned(),
        format!("[5,{record_json}]"),
        "{\"version\":5,\"record\":[]}".to_owned(),
        "{\"version\":5,\"record\":{\"holderIdentity\":\"a\",\"renewTime\":\"yesterday\"}}"
            .to_owned(),
        "{\"version\":5,\"record\":{\"holderIdentity\":\"a\",\"acquireTime\":\"yesterday\"}}"
            .to_owned(),
        "{\"version\":5,\"record\":{\"holderIdentity\":\"a\",\"leaseDurationSeconds\":1.5}}"
            .to_owned(),
        "{\"version\":5,\"record\":{\"holderIdentity\":\"a\",\"leaderTransitions\":2.0}}"
            .to_owned(),
        format!("{{\"version\":5.0,\"record\":{record_json}}}"),
        format!("{{\"version\":\"5\",\"record\":{record_json}}}"),
        format!("{{\"version\":-5,\"record\":{record_json}}}"),
        format!("{{\"version\":1e3,\"record\":{record_json}}}"),
        format!("{{\"version\":18446744073709551616,\"record\":{record_json}}}"),
        format!("{{\"version\":5,\"record\":{record_json},\"note\":\"mine\"}}"),
        format!("{{\"version\":5,\"record\":{record_json}"),
        "{\"version\":5,\"rec".to_owned(),
        "null".to_owned(),
        "5".to_owned(),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (index, value) in hostile.iter().enumerate() {
        let path = dir.path().join(format!("hostile-{index}.json"));
        std::fs::write(&path, value).unwrap();
        let lock = FileLock::new(&path);
        match lock.get().await {
            Err(LockError::Corrupt { .. }) => {}
            other => panic!("{value}: read as {other:?}"),
        }
        for expected in ["5", "0", "1000"] {
            match lock.update(&record("b", 2), &Version::new(expected)).await {
                Err(LockError::Corrupt { .. }) => {}
                other => panic!("{value}: update from {expected} gave {other:?}"),
            }
        }
        match lock.create(&record("b", 2)).await {
            Err(LockError::AlreadyExists { .. }) => {}
            other => panic!("{value}: create gave {other:?}"),
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), *value);
    }
}

#[tokio::test]
async fn acquire_time_keeps_its_microseconds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("election.json");
    let lock = FileLock::new(&path);
    let acquired = Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap()
        + chrono::Duration::microseconds(123_456);
    let mut written = record("a", 1);
    written.acquire_time = Some(acquired);
    written.renew_time = Some(acquired + chrono::Duration::microseconds(1));
    let version = lock.create(&written).await.unwrap();
    let read = lock.get().await.unwrap().unwrap();
    assert_eq!(read.record, written);
    assert!(std::fs::read_to_string(&path)
        .unwrap()
        .contains("\"acquireTime\":\"2026-03-04T05:06:07.123456Z\""));
    written.holder_identity = "b".into();
    lock.update(&written, &version).await.unwrap();
    assert_eq!(lock.get().await.unwrap().unwrap().record, written);
}
