//! Where a lock path really leads, and whether the file there can be a lock file.
//!
//! The OS lock lives in `<file>.lock` next to the record file and writes rename a temporary file
//! over the record file, so both must be derived from the one file every name of the lock leads
//! to: a symlink is followed to its target (and stays a symlink, since the rename goes into the
//! target's directory), and a file with more than one hard link is refused, because the first
//! write by rename would split the names into two files, two locks that nothing ties together.

use std::fs::{self, Metadata};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use lock_core::{LockError, LockResult};

use crate::errors::io_error;

/// The record file `path` leads to: its canonical path when it exists; when it does not, the
/// canonical directory joined with its name (or `path` itself while the directory is missing
/// too). Refuses a dangling symlink and a file that cannot be a lock file.
///
/// The answer can go stale if someone moves links around between this call and the use of
/// its result; the checks are repeated on the opened file where it matters (see
/// [`check_file`]).
pub(crate) fn resolve(path: &Path, lock: &str) -> LockResult<PathBuf> {
    match fs::canonicalize(path) {
        Ok(real) => {
            match fs::metadata(&real) {
                Ok(meta) => check_file(&meta, &real, lock)?,
                // Deleted since: it will be made where it was.
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(io_error(lock, "inspect", &real, err)),
            }
            Ok(real)
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => missing(path, lock),
        Err(err) => Err(io_error(lock, "resolve the path", path, err)),
    }
}

/// `path` does not lead to a file: either nothing is there, or a symlink whose target is
/// missing. A record is never created through a dangling link: the rename would replace the
/// link with a file, or the record would be made where the link's other users do not look.
fn missing(path: &Path, lock: &str) -> LockResult<PathBuf> {
    if let Ok(meta) = fs::symlink_metadata(path) {
        if meta.file_type().is_symlink() {
            let target = fs::read_link(path)
                .map(|target| target.display().to_string())
                .unwrap_or_else(|err| format!("an unreadable target ({err})"));
            return Err(LockError::InvalidConfig(format!(
                "{lock}: {} is a symbolic link to {target}, which does not exist; the lock \
                 is never created through a dangling link: create the target or fix the link",
                path.display()
            )));
        }
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(path.to_path_buf());
    };
    match fs::canonicalize(dir) {
        Ok(dir) => Ok(dir.join(name)),
        // The directory is made on the first write, and resolved again after that.
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(path.to_path_buf()),
        Err(err) => Err(io_error(lock, "resolve the directory", dir, err)),
    }
}

/// Refuses what cannot be a lock file: anything but a regular file (a FIFO would block every
/// reader, a device would be read without end), and a regular file with more than one hard link.
pub(crate) fn check_file(meta: &Metadata, path: &Path, lock: &str) -> LockResult<()> {
    let kind = meta.file_type();
    let not_a_file = if kind.is_file() {
        None
    } else if kind.is_fifo() {
        Some("a FIFO")
    } else if kind.is_socket() {
        Some("a socket")
    } else if kind.is_char_device() || kind.is_block_device() {
        Some("a device")
    } else if kind.is_dir() {
        Some("a directory")
    } else {
        Some("not a regular file")
    };
    if let Some(what) = not_a_file {
        return Err(LockError::InvalidConfig(format!(
            "{lock}: {} is {what}; a lock file must be a regular file (or a symlink to one)",
            path.display()
        )));
    }
    let links = meta.nlink();
    if links > 1 {
        return Err(LockError::InvalidConfig(format!(
            "{lock}: {} has {links} hard links; every write replaces the file by rename, which \
             would split the names into separate locks: keep one name (a symbolic link is fine) \
             and remove the other links",
            path.display()
        )));
    }
    Ok(())
}
