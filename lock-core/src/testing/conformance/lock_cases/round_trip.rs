//! Reading what was written: nothing on a fresh name, every field after create and update.

use std::sync::Arc;

use super::full_record;
use crate::testing::conformance::Backend;
use crate::LeaderElectionRecord;

/// Case 1: A name nobody wrote has no record.
pub async fn get_on_fresh_name_is_none(backend: Arc<dyn Backend>, name: &str) {
    let lock = backend.lock(name).await;
    let got = lock.get().await.expect("get on a fresh name");
    assert_eq!(got, None, "{} holds a record nobody wrote", lock.describe());
    assert_eq!(
        backend.read_raw(name).await,
        None,
        "a get must not store anything"
    );
}

/// Case 2: Every field survives create and update; every write makes a new version.
pub async fn every_record_field_round_trips(backend: Arc<dyn Backend>, name: &str) {
    let lock = backend.lock(name).await;
    let first = full_record(1);
    let created = lock.create(&first).await.expect("create on a fresh name");
    let got = lock
        .get()
        .await
        .expect("get after create")
        .expect("a record after create");
    assert_eq!(got.record, first, "the created record reads back equal");
    assert_eq!(
        got.version, created,
        "get returns the version create returned"
    );

    let second = full_record(2);
    assert!(
        [
            first.holder_identity != second.holder_identity,
            first.lease_duration_seconds != second.lease_duration_seconds,
            first.acquire_time != second.acquire_time,
            first.renew_time != second.renew_time,
            first.leader_transitions != second.leader_transitions,
            first.strategy != second.strategy,
            first.preferred_holder != second.preferred_holder,
        ]
        .iter()
        .all(|changed| *changed),
        "the update changes every field"
    );
    let updated = lock
        .update(&second, &created)
        .await
        .expect("update with the current version");
    assert_ne!(updated, created, "an update makes a new version");
    // Another handle sees the same record, as another process would.
    let other = backend.lock(name).await;
    let got = other
        .get()
        .await
        .expect("get after update")
        .expect("a record after update");
    assert_eq!(got.record, second, "the updated record reads back equal");
    assert_eq!(
        got.version, updated,
        "get returns the version update returned"
    );

    let third = LeaderElectionRecord {
        holder_identity: String::new(),
        strategy: None,
        preferred_holder: None,
        acquire_time: None,
        ..full_record(3)
    };
    let again = other.update(&third, &updated).await.expect("second update");
    assert_ne!(again, updated, "every update makes a new version");
    assert_ne!(again, created, "versions are not reused");
    let got = lock
        .get()
        .await
        .expect("get after clearing fields")
        .expect("a record");
    assert_eq!(got.record, third, "empty optional fields read back empty");
    assert!(got.record.is_free());
    assert_eq!(got.version, again);
}
