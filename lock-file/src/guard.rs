//! The OS file lock that makes read-compare-write atomic across processes.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lock_core::LockResult;

use crate::errors::io_error;
use crate::marks::Marks;

/// An exclusive `flock` on `<lock file>.lock`, held while alive.
///
/// The guard file is separate from the lock file because the lock file is replaced by rename on
/// every write (which would leave a lock on the old inode). It is never deleted: deleting lock
/// files reintroduces the race they prevent. It also keeps the [`Marks`] that must survive a
/// deletion of the record file.
pub(crate) struct Guard {
    file: File,
    path: PathBuf,
}

/// How long a call waits for another process to let go of the OS lock.
pub(crate) const LOCK_WAIT: Duration = Duration::from_secs(2);
/// How often it tries meanwhile.
const LOCK_POLL: Duration = Duration::from_millis(2);

impl Guard {
    /// Takes the lock for the record file `real` (already resolved), waiting at most
    /// [`LOCK_WAIT`] (a blocking `flock` could hold a thread for as long as another process
    /// keeps the lock, long after the caller gave up).
    ///
    /// The file is opened without blocking (a FIFO put in its place would otherwise block the
    /// open until a reader comes) and refused unless it is a regular file.
    pub(crate) fn acquire(real: &Path, lock: &str) -> LockResult<Self> {
        let path = guard_path(real);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .map_err(|err| io_error(lock, "create", &path, err))?;
        let meta = file
            .metadata()
            .map_err(|err| io_error(lock, "inspect", &path, err))?;
        if !meta.is_file() {
            // Reuse the file checks for the message; a regular file's links do not matter here.
            crate::path::check_file(&meta, &path, lock)?;
        }
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Self { file, path }),
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(LOCK_POLL);
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(io_error(
                        lock,
                        "lock",
                        &path,
                        io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!(
                                "another process has held {} for longer than {LOCK_WAIT:?}",
                                path.display()
                            ),
                        ),
                    ))
                }
                Err(TryLockError::Error(err)) => return Err(io_error(lock, "lock", &path, err)),
            }
        }
    }

    /// The high-water marks kept in the OS lock file.
    pub(crate) fn marks(&self, lock: &str) -> LockResult<Marks> {
        Marks::read(&self.file, &self.path, lock)
    }

    /// Makes sure the marks cover a record about to be written with this version and token.
    pub(crate) fn cover(
        &self,
        marks: Marks,
        version: u64,
        leader_transitions: i32,
        lock: &str,
    ) -> LockResult<()> {
        match marks.raised_for(version, leader_transitions) {
            Some(raised) => raised
                .write(&self.file)
                .map_err(|err| io_error(lock, "write", &self.path, err)),
            None => Ok(()),
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
