//! The embedded default backend: a leader election record in a local file.
//!
//! [`FileLock`] implements [`lock_core::Lock`] for processes on one machine (or sharing a
//! file system with working `flock`, which excludes most network file systems). No server is
//! needed:
//! - the file holds `{"version": N, "record": {...}}`, the record in client-go's JSON form, so
//!   `cat` shows who leads; the version starts at the clock in microseconds and grows by one
//!   per write, so it never repeats even when the file is deleted and made again;
//! - compare-and-swap is real across processes: an exclusive OS lock on `<file>.lock` is held
//!   around read-compare-write;
//! - writes are crash-safe: a temporary file is written and fsynced, then renamed over the lock
//!   file;
//! - change hints come from inotify on the file's directory (polling where inotify fails), so
//!   a standby takes a released lock at once. Every write in that directory wakes every watch
//!   on it, so many busy elections are best kept in directories of their own; a watching
//!   standby reads the file once per write of its own lock;
//! - [`file_operations`] counts this process' reads and writes of lock files.
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

/// The README's library example, compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeExample;

mod guard;
mod operations;
mod stored;
mod watch;
mod write;

pub use operations::{file_operations, FileOperations};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use lock_core::{
    HintStream, LeaderElectionRecord, Lock, LockError, LockResult, Version, Versioned,
};

use guard::Guard;
use stored::{io_error, Stored};

/// A lock whose record lives in a local file. Clones, and `FileLock`s on the same path in any
/// process, share the record.
#[derive(Clone, Debug)]
pub struct FileLock {
    path: Arc<Path>,
    name: Arc<str>,
}

impl FileLock {
    /// A lock on the file at `path`; nothing is read or written until the lock is used. The
    /// directory is created on the first write if it is missing.
    ///
    /// A relative path is made absolute against the current directory now (the change hints
    /// report absolute paths, and the lock must not move if the directory changes later).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path: PathBuf = path.into();
        let path = std::path::absolute(&path).unwrap_or(path);
        let name = format!("file://{}", path.display());
        Self {
            path: path.into(),
            name: name.into(),
        }
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs blocking file work off the async runtime.
    async fn blocking<T, F>(&self, work: F) -> LockResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Path, &str) -> LockResult<T> + Send + 'static,
    {
        let lock = self.clone();
        tokio::task::spawn_blocking(move || work(&lock.path, &lock.name))
            .await
            .map_err(|err| LockError::unavailable(self.name.to_string(), err))?
    }
}

/// Takes the OS lock, creating the directory first if needed.
fn guard(path: &Path, lock: &str) -> LockResult<Guard> {
    let dir = write::parent(path);
    if !dir.exists() {
        std::fs::create_dir_all(dir)
            .map_err(|err| io_error(lock, "create the directory of", err))?;
    }
    Guard::acquire(path).map_err(|err| io_error(lock, "lock", err))
}

/// The version of a new record: the clock in microseconds. Versions then grow by one per
/// write, so a record deleted by hand and made again never repeats a version an elector has
/// seen (that would let a stale compare-and-swap through), and versions stay ordered.
fn first_version() -> u64 {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.as_micros())
        .unwrap_or(0);
    u64::try_from(micros).unwrap_or(u64::MAX / 2).max(1)
}

fn store(path: &Path, lock: &str, stored: &Stored) -> LockResult<Version> {
    write::replace(path, &stored.to_bytes()).map_err(|err| io_error(lock, "write", err))?;
    Ok(Version::from(stored.version))
}

#[async_trait::async_trait]
impl Lock for FileLock {
    async fn get(&self) -> LockResult<Option<Versioned>> {
        self.blocking(|path, lock| Ok(stored::read(path, lock)?.map(Stored::versioned)))
            .await
    }

    async fn create(&self, record: &LeaderElectionRecord) -> LockResult<Version> {
        let record = record.clone();
        self.blocking(move |path, lock| {
            let _guard = guard(path, lock)?;
            if path.exists() {
                return Err(LockError::AlreadyExists {
                    lock: lock.to_owned(),
                });
            }
            store(
                path,
                lock,
                &Stored {
                    version: first_version(),
                    record,
                },
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
        self.blocking(move |path, lock| {
            let _guard = guard(path, lock)?;
            let conflict = || LockError::Conflict {
                lock: lock.to_owned(),
                expected: expected.to_string(),
            };
            let current = stored::read(path, lock)?.ok_or_else(conflict)?;
            if Version::from(current.version) != expected {
                return Err(conflict());
            }
            let version = current
                .version
                .checked_add(1)
                .ok_or_else(|| LockError::Corrupt {
                    lock: lock.to_owned(),
                    reason: "the version counter is at its maximum".to_owned(),
                })?;
            store(path, lock, &Stored { version, record })
        })
        .await
    }

    fn describe(&self) -> String {
        self.name.to_string()
    }

    fn watch(&self) -> Option<HintStream> {
        watch::watch(&self.path, self.name.to_string())
    }
}
