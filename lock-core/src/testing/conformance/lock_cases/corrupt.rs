//! A stored value that is not a record: reported, never overwritten.

use std::sync::Arc;

use crate::backend::Version;
use crate::LockError;

use super::full_record;
use crate::testing::conformance::Backend;

/// Case 6: A stored value that is not a record is reported as `Corrupt`, naming the lock, and no
/// write replaces it.
pub async fn corrupt_value_is_reported_and_left_untouched(backend: Arc<dyn Backend>, name: &str) {
    const GARBAGE: &[u8] = b"this is not a record";
    let lock = backend.lock(name).await;
    backend.write_raw(name, GARBAGE).await;

    match lock.get().await {
        Err(err @ LockError::Corrupt { .. }) => {
            let message = err.to_string();
            assert!(
                message.contains(&lock.describe()),
                "the Corrupt message {message:?} names the lock {:?}",
                lock.describe()
            );
        }
        other => panic!("get of a value that is not a record must be Corrupt, got {other:?}"),
    }

    // Whatever version a writer passes (the backend's current one among them), nothing is
    // overwritten.
    for token in ["0", "1", "2", "3", "4", "5"] {
        let result = lock.update(&full_record(1), &Version::new(token)).await;
        assert!(
            matches!(
                result,
                Err(LockError::Corrupt { .. } | LockError::Conflict { .. })
            ),
            "update over a corrupt value (version {token}) must fail with Corrupt or Conflict, \
             got {result:?}"
        );
    }
    let created = lock.create(&full_record(1)).await;
    assert!(
        matches!(
            created,
            Err(LockError::Corrupt { .. } | LockError::AlreadyExists { .. })
        ),
        "create over a corrupt value must fail, got {created:?}"
    );
    assert_eq!(
        backend.read_raw(name).await.as_deref(),
        Some(GARBAGE),
        "the corrupt value must be left exactly as it was"
    );
    assert!(
        matches!(lock.get().await, Err(LockError::Corrupt { .. })),
        "the value still reads as Corrupt"
    );
}
