//! How many times this process has read and written lock files: for benchmarks and
//! diagnostics (a file lock has no server that could count its load).

use std::sync::atomic::{AtomicU64, Ordering};

static READS: AtomicU64 = AtomicU64::new(0);
static WRITES: AtomicU64 = AtomicU64::new(0);

/// The reads and writes of lock files made by every [`FileLock`](crate::FileLock) of this
/// process so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileOperations {
    /// Reads of a record: by `get`, by a write checking the version, and by a change watch
    /// reading the file it was told had changed.
    pub reads: u64,
    /// Writes of a record: each a temporary file written, synced and renamed over the record.
    pub writes: u64,
}

/// The reads and writes of lock files this process has made so far.
///
/// ```
/// let before = lock_file::file_operations();
/// assert!(lock_file::file_operations().reads >= before.reads);
/// ```
pub fn file_operations() -> FileOperations {
    FileOperations {
        reads: READS.load(Ordering::Relaxed),
        writes: WRITES.load(Ordering::Relaxed),
    }
}

pub(crate) fn count_read() {
    READS.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn count_write() {
    WRITES.fetch_add(1, Ordering::Relaxed);
}
