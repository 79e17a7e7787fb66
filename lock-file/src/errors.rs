//! The one mapping of I/O errors to lock errors, shared by every module that touches the file.

use std::io;

use lock_core::LockError;

/// Maps an I/O error: permissions become `Forbidden`, a path through something that is not a
/// directory `Misconfigured` (retrying will not change it), anything else `Unavailable`.
pub(crate) fn io_error(lock: &str, action: &str, err: io::Error) -> LockError {
    if err.kind() == io::ErrorKind::PermissionDenied {
        LockError::Forbidden {
            lock: lock.to_owned(),
            reason: format!("cannot {action} the lock file: {err}"),
        }
    } else if err.kind() == io::ErrorKind::NotADirectory {
        LockError::Misconfigured {
            lock: lock.to_owned(),
            reason: format!("cannot {action} the lock file: {err}"),
        }
    } else {
        let reason = format!("cannot {action} the lock file: {err}");
        LockError::unavailable_because(lock, reason, err)
    }
}
