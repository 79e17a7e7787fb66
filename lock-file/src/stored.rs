//! The file's content: a version counter and the record, as one JSON object.

use std::io;
use std::path::Path;

use lock_core::{LeaderElectionRecord, LockError, Version, Versioned};
use serde::{Deserialize, Serialize};

/// What the lock file holds: `{"version": 3, "record": {...client-go record...}}`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Stored {
    pub(crate) version: u64,
    pub(crate) record: LeaderElectionRecord,
}

impl Stored {
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec(self).expect("a Stored value always serializes");
        bytes.push(b'\n');
        bytes
    }

    pub(crate) fn versioned(self) -> Versioned {
        Versioned {
            record: self.record,
            version: Version::from(self.version),
        }
    }
}

/// Reads the file: `Ok(None)` when it does not exist, `Corrupt` when it is not a lock file.
pub(crate) fn read(path: &Path, lock: &str) -> Result<Option<Stored>, LockError> {
    crate::operations::count_read();
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(io_error(lock, "read", err)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|err| LockError::Corrupt {
            lock: lock.to_owned(),
            reason: format!("expected {{\"version\": N, \"record\": {{...}}}}: {err}"),
        })
}

/// Maps an I/O error: permissions become `Forbidden`, anything else `Unavailable`.
pub(crate) fn io_error(lock: &str, action: &str, err: io::Error) -> LockError {
    if err.kind() == io::ErrorKind::PermissionDenied {
        LockError::Forbidden {
            lock: lock.to_owned(),
            reason: format!("cannot {action} the lock file: {err}"),
        }
    } else {
        LockError::Unavailable {
            lock: lock.to_owned(),
            reason: format!("cannot {action} the lock file: {err}"),
            source: Some(Box::new(err)),
        }
    }
}
