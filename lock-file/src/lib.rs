//! The embedded default backend: a leader election record in a local file.
//!
//! [`FileLock`] implements [`lock_core::Lock`] for processes on one machine (or sharing a
//! file system with working `flock`, which excludes most network file systems). No server is
//! needed:
//! - the file holds `{"version": N, "record": {...}}`, the record in client-go's JSON form, so
//!   `cat` shows who leads; a new record's version starts at the clock in microseconds (or
//!   above every version written before, when that is higher) and grows by one per write;
//! - compare-and-swap is real across processes: an exclusive OS lock on `<file>.lock` is held
//!   around read-compare-write;
//! - writes are crash-safe: a temporary file is written and fsynced, then renamed over the lock
//!   file;
//! - change hints come from inotify on the file's directory (polling where inotify fails), so
//!   a standby takes a released lock at once. Every write in that directory wakes every watch
//!   on it, so many busy elections are best kept in directories of their own; a watching
//!   standby reads the file once per write of its own lock, except for renews, which it
//!   follows without reading (the renew's temporary file is named after it, see below);
//! - [`file_operations`] counts this process' reads and writes of lock files.
//!
//! [`FileLifeLock`] is the leader-for-life form: an OS lock on `<file>.life` held for the life
//! of the leader's process, the record written for who leads (see
//! [`LifeElector`](lock_core::LifeElector)).
//!
//! # How it stays safe
//!
//! - **One file, one lock, whatever the name.** The path is resolved at every call before the
//!   OS lock file and the rename target are derived from it: a symlink (to the file or to a
//!   directory on the way) leads to the same `<target>.lock`, and writes rename into the
//!   target's directory, so the link stays a link. A file with more than one hard link is
//!   refused ([`LockError::InvalidConfig`], for reads too): a write by rename would split the
//!   names into two files, two locks nothing ties together. (A hard link made between the check
//!   and a write is split by that write; the refusal covers links made before.) A record is
//!   never created through a dangling symlink (the error names the link and its target), and a
//!   FIFO, socket, device or directory at the lock path or at `<file>.lock` is refused without
//!   blocking: files are opened with `O_NONBLOCK` and checked on the opened file.
//! - **What survives what.** The `<file>.lock` file is never deleted by this crate, and it
//!   keeps, written under the OS lock before the record write that needs them, a version
//!   ceiling (every version written is below it) and the highest `leaderTransitions` written.
//!   So deleting the record file makes neither versions nor fencing tokens go back, even with
//!   the clock stepped back: a record made again starts above the ceiling, and
//!   [`Lock::token_floor`] is the highest token written plus one. Deleting the `.lock` file too
//!   forgets both: versions then start at the clock again and the floor is 0, leaving only the
//!   candidates' memory of the tokens they saw. Records written by hand are not remembered
//!   until a write through this crate goes over them.
//! - **Hand edits are noticed, not lost.** Each handle remembers the exact bytes it last read
//!   or wrote at each recent version; an update from a version whose bytes changed since (a
//!   record edited by hand without bumping the version) is a [`LockError::Conflict`], so the
//!   elector reads the edit and acts on it (an edit naming another holder is a forced
//!   handover). A version passed in from elsewhere cannot be checked this way.
//! - **Bad values are never overwritten.** The file must be one JSON object with exactly
//!   `version` (an integer from 0 to 2^64 - 1) and `record` (a client-go record with
//!   RFC 3339 times and integer counts); anything else (an array, floats, "yesterday" for a
//!   time, an unknown field, a truncated or larger than 1 MiB file) is
//!   [`LockError::Corrupt`] and left as it is. `acquireTime` and `renewTime` are kept exactly,
//!   microseconds included.
//! - **Hints never hold a standby back.** A lower version after a deletion, or the same
//!   version with other bytes, is sent as [`Hint::Changed`](lock_core::backend::Hint::Changed) rather
//!   than dropped as a repeat. The stream ends (the elector then polls and subscribes again
//!   later) when it can no longer see every change: the symlink the lock was opened through
//!   changed (it is resolved again), a watched directory was removed or moved, or the watcher
//!   failed; a kernel queue overflow is sent as `Changed`.
//!
//! ```
//! use lock_core::{ElectionConfig, LeaderElector, Lock};
//! use lock_file::FileLock;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let dir = tempfile::tempdir().unwrap();
//! let lock = FileLock::new(dir.path().join("orders.json"));
//! assert!(lock.get().await.unwrap().is_none());
//! let elector = LeaderElector::new(lock, ElectionConfig::new("worker-a")).unwrap();
//! # let _ = elector;
//! # }
//! ```

mod errors;
mod guard;
mod life;
mod marks;
mod operations;
mod path;
mod renewal;
mod seen;
mod stored;
mod watch;
mod write;

pub use life::{FileLifeLock, LIFE_POLL};
pub use operations::{file_operations, FileOperations};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use lock_core::backend::{HintStream, Version, Versioned};
use lock_core::{LeaderElectionRecord, Lock, LockError, LockResult};

use errors::io_error;
use guard::Guard;
use seen::Seen;
use stored::Stored;

/// A lock whose record lives in a local file. Clones, and `FileLock`s on the same path (or on
/// a symlink to it) in any process, share the record.
///
/// Each handle remembers the exact bytes it last read or wrote at a few versions, so that an
/// update over a hand edit that kept the version is a conflict; a clone starts with no memory
/// (it is a cache that only one caller's reads should fill).
#[derive(Debug)]
pub struct FileLock {
    path: Arc<Path>,
    name: Arc<str>,
    seen: Arc<Seen>,
}

impl Clone for FileLock {
    fn clone(&self) -> Self {
        Self {
            path: self.path.clone(),
            name: self.name.clone(),
            seen: Arc::default(),
        }
    }
}

impl FileLock {
    /// A lock on the file at `path`; nothing is read or written until the lock is used. The
    /// directory is created on the first write if it is missing.
    ///
    /// A relative path is made absolute against the current directory now (the change hints
    /// report absolute paths, and the lock must not move if the directory changes later).
    /// Symlinks are resolved at each call, so a link may be made or moved later.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path: PathBuf = path.into();
        let path = std::path::absolute(&path).unwrap_or(path);
        let name = format!("file://{}", path.display());
        Self {
            path: path.into(),
            name: name.into(),
            seen: Arc::default(),
        }
    }

    /// The lock file's path, as given (a symlink is not resolved here).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs blocking file work off the async runtime.
    async fn blocking<T, F>(&self, work: F) -> LockResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Path, &str, &Seen) -> LockResult<T> + Send + 'static,
    {
        let (path, name, seen) = (self.path.clone(), self.name.clone(), self.seen.clone());
        tokio::task::spawn_blocking(move || work(&path, &name, &seen))
            .await
            .map_err(|err| LockError::unavailable(self.name.to_string(), err))?
    }
}

/// Resolves the path and takes the OS lock, creating the directory first if needed. Returns
/// the record file's resolved path with the guard.
fn guard(path: &Path, lock: &str) -> LockResult<(PathBuf, Guard)> {
    let mut real = path::resolve(path, lock)?;
    let dir = write::parent(&real);
    if !dir.exists() {
        std::fs::create_dir_all(dir)
            .map_err(|err| io_error(lock, "create the directory", dir, err))?;
        real = path::resolve(path, lock)?;
    }
    let guard = Guard::acquire(&real, lock)?;
    Ok((real, guard))
}

/// The wall clock in microseconds: the least version a new record starts at (see
/// [`marks`] for what keeps versions growing when the clock goes back).
fn clock_micros() -> u64 {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.as_micros())
        .unwrap_or(0);
    u64::try_from(micros).unwrap_or(u64::MAX / 2).max(1)
}

/// Writes `stored` over the record file at `real` (under `guard`), after raising the marks
/// that must cover it, and remembers the bytes written.
fn store(
    real: &Path,
    guard: &Guard,
    marks: marks::Marks,
    stored: &Stored,
    lock: &str,
    seen: &Seen,
    tag: Option<&str>,
) -> LockResult<Version> {
    guard.cover(
        marks,
        stored.version,
        stored.record.leader_transitions,
        lock,
    )?;
    let bytes = stored.to_bytes();
    write::replace(real, &bytes, tag).map_err(|err| io_error(lock, "write", real, err))?;
    seen.remember(stored.version, &bytes);
    Ok(Version::from(stored.version))
}

fn at_maximum(lock: &str) -> LockError {
    LockError::Corrupt {
        lock: lock.to_owned(),
        reason: "the version counter is at its maximum".to_owned(),
    }
}

#[async_trait::async_trait]
impl Lock for FileLock {
    async fn get(&self) -> LockResult<Option<Versioned>> {
        self.blocking(|path, lock, seen| {
            let real = path::resolve(path, lock)?;
            let Some(read) = stored::read(&real, lock)? else {
                return Ok(None);
            };
            seen.remember(read.stored.version, &read.bytes);
            Ok(Some(read.stored.versioned()))
        })
        .await
    }

    async fn create(&self, record: &LeaderElectionRecord) -> LockResult<Version> {
        let record = record.clone();
        self.blocking(move |path, lock, seen| {
            let (real, guard) = guard(path, lock)?;
            // Anything at all there (even a value that is not a record) is never replaced.
            if std::fs::symlink_metadata(&real).is_ok() {
                return Err(LockError::AlreadyExists {
                    lock: lock.to_owned(),
                });
            }
            let marks = guard.marks(lock)?;
            let version = marks
                .first_version(clock_micros())
                .ok_or_else(|| at_maximum(lock))?;
            store(
                &real,
                &guard,
                marks,
                &Stored { version, record },
                lock,
                seen,
                None,
            )
        })
        .await
    }

    async fn update(
        &self,
        record: &LeaderElectionRecord,
        expected: &Version,
    ) -> LockResult<Version> {
        let record = record.clone();
        let expected = expected.clone();
        self.blocking(move |path, lock, seen| {
            let (real, guard) = guard(path, lock)?;
            let conflict = || LockError::Conflict {
                lock: lock.to_owned(),
                expected: expected.to_string(),
            };
            let current = stored::read(&real, lock)?.ok_or_else(conflict)?;
            if Version::from(current.stored.version) != expected {
                return Err(conflict());
            }
            if seen.edited(current.stored.version, &current.bytes) {
                tracing::warn!(lock, version = %expected, "the record was changed without a version bump (edited by hand?); reading it before writing");
                return Err(conflict());
            }
            let version = current
                .stored
                .version
                .checked_add(1)
                .ok_or_else(|| at_maximum(lock))?;
            let marks = guard.marks(lock)?;
            let new = Stored { version, record };
            let tag = renewal::tag(&current.stored, &new);
            store(&real, &guard, marks, &new, lock, seen, tag.as_deref())
        })
        .await
    }

    fn describe(&self) -> String {
        self.name.to_string()
    }

    fn watch(&self) -> Option<HintStream> {
        // A path that cannot be resolved now (a dangling link) gets no hints: the elector polls
        // and asks again later.
        let real = path::resolve(&self.path, &self.name).ok()?;
        watch::watch(&self.path, &real, self.name.to_string())
    }

    /// Above every `leaderTransitions` written through this lock file's OS lock file, which
    /// survives a deletion of the record file (0 when nothing was written, or the `.lock` file
    /// was deleted too).
    async fn token_floor(&self) -> LockResult<u64> {
        self.blocking(|path, lock, _| {
            let real = path::resolve(path, lock)?;
            if !write::parent(&real).exists() {
                return Ok(0);
            }
            let guard = Guard::acquire(&real, lock)?;
            Ok(guard.marks(lock)?.token_floor())
        })
        .await
    }
}
