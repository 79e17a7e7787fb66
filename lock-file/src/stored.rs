//! The file's content: a version counter and the record, as one JSON object.

use std::fs::OpenOptions;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use lock_core::backend::{Version, Versioned};
use lock_core::{LeaderElectionRecord, LockError};
use serde::{Deserialize, Serialize};

use crate::errors::io_error;

/// The most a lock file is read of: a record is well under a kilobyte, and reading a huge file
/// whole could take the process' memory.
const MAX_BYTES: u64 = 1 << 20;

/// What the lock file holds: `{"version": 3, "record": {...client-go record...}}`, nothing else
/// (an unknown field would be lost by the next write, so it makes the file corrupt).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Stored {
    pub(crate) version: u64,
    pub(crate) record: LeaderElectionRecord,
}

/// A lock file as read: its content and the exact bytes it was read from.
pub(crate) struct FileContent {
    pub(crate) stored: Stored,
    pub(crate) bytes: Vec<u8>,
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

    /// Parses the file's bytes. Only a JSON object is accepted: serde's derived form would also
    /// take an array of the fields in order (`[5, {...}]`), which is not what this crate writes.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, String> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|err| err.to_string())?;
        if !value.is_object() {
            return Err("not a JSON object".to_owned());
        }
        serde_json::from_value(value).map_err(|err| err.to_string())
    }
}

/// Reads the file at the resolved path `real`: `Ok(None)` when it does not exist, `Corrupt`
/// when it is not a lock file, `InvalidConfig` when it is not a regular file or has more than
/// one hard link (checked on the opened file, which was opened without blocking, so that a FIFO
/// put there cannot hang the caller).
pub(crate) fn read(real: &Path, lock: &str) -> Result<Option<FileContent>, LockError> {
    crate::operations::count_read();
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(real)
    {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(io_error(lock, "read", real, err)),
    };
    let meta = file
        .metadata()
        .map_err(|err| io_error(lock, "inspect", real, err))?;
    crate::path::check_file(&meta, real, lock)?;
    let mut bytes = Vec::new();
    file.take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|err| io_error(lock, "read", real, err))?;
    let parsed = if bytes.len() as u64 > MAX_BYTES {
        Err(format!("longer than {MAX_BYTES} bytes"))
    } else {
        Stored::parse(&bytes)
    };
    match parsed {
        Ok(stored) => Ok(Some(FileContent { stored, bytes })),
        Err(err) => Err(LockError::Corrupt {
            lock: lock.to_owned(),
            reason: format!("expected {{\"version\": N, \"record\": {{...}}}}: {err}"),
        }),
    }
}
