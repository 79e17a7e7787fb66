//! The OS file lock that makes read-compare-write atomic across processes.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// An exclusive `flock` on `<lock file>.lock`, held while alive.
///
/// The guard file is separate from the lock file because the lock file is replaced by rename on
/// every write (which would leave a lock on the old inode). It is never deleted: deleting lock
/// files reintroduces the race they prevent.
pub(crate) struct Guard {
    file: File,
}

impl Guard {
    pub(crate) fn acquire(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(guard_path(path))?;
        file.lock()?;
        Ok(Self { file })
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
