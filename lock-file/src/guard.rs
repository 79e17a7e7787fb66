//! The OS file lock that makes read-compare-write atomic across processes.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// An exclusive `flock` on `<lock file>.lock`, held while alive.
///
/// The guard file is separate from the lock file because the lock file is replaced by rename on
/// every write (which would leave a lock on the old inode). It is never deleted: deleting lock
/// files reintroduces the race they prevent.
pub(crate) struct Guard {
    file: File,
}

/// How long a call waits for another process to let go of the OS lock.
pub(crate) const LOCK_WAIT: Duration = Duration::from_secs(2);
/// How often it tries meanwhile.
const LOCK_POLL: Duration = Duration::from_millis(2);

impl Guard {
    /// Takes the lock, waiting at most [`LOCK_WAIT`] (a blocking `flock` could hold a thread
    /// for as long as another process keeps the lock, long after the caller gave up).
    pub(crate) fn acquire(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(guard_path(path))?;
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Self { file }),
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(LOCK_POLL);
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "another process has held {} for longer than {LOCK_WAIT:?}",
                            guard_path(path).display()
                        ),
                    ))
                }
                Err(TryLockError::Error(err)) => return Err(err),
            }
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

pub(crate) fn guard_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}
