//! Compare-and-swap on versions: a stale or unknown version changes nothing.

use std::sync::Arc;

use crate::backend::Version;
use crate::LockError;

use super::full_record;
use crate::testing::conformance::Backend;

/// Case 5: An update with a version that is no longer current fails and changes nothing; so does an
/// update of a record that does not exist.
pub async fn stale_version_is_rejected(backend: Arc<dyn Backend>, name: &str) {
    let lock = backend.lock(name).await;
    let old = lock.create(&full_record(1)).await.expect("create");
    // Another writer read the record at the same version, and is overtaken.
    let overtaken = backend.lock(name).await;
    let read = overtaken.get().await.expect("get").expect("a record");
    assert_eq!(read.version, old);
    let current = lock
        .update(&full_record(2), &old)
        .await
        .expect("update with the current version");
    let stale = overtaken.update(&full_record(3), &read.version).await;
    assert!(
        matches!(stale, Err(LockError::Conflict { .. })),
        "an update with the old version must be a Conflict, got {stale:?}"
    );
    let stale = lock.update(&full_record(3), &old).await;
    assert!(
        matches!(stale, Err(LockError::Conflict { .. })),
        "an update with the version this handle wrote over must be a Conflict, got {stale:?}"
    );
    let stored = overtaken.get().await.expect("get").expect("a record");
    assert_eq!(
        stored.record,
        full_record(2),
        "the newer record is still stored"
    );
    assert_eq!(stored.version, current);

    let absent = format!("{name}-absent");
    let nothing = backend.lock(&absent).await;
    for version in [old, current, Version::new("1")] {
        let result = nothing.update(&full_record(4), &version).await;
        assert!(
            matches!(result, Err(LockError::Conflict { .. })),
            "an update of a missing record (version {version}) must be a Conflict, got {result:?}"
        );
    }
    assert_eq!(
        nothing.get().await.expect("get"),
        None,
        "a failed update creates nothing"
    );
}
