//! The one mapping of I/O errors to lock errors, shared by every module that touches the file.
//! Each message names the file or directory concerned and, for a refused permission, the user
//! this process runs as, since "permission denied" alone does not say whose permission.

use std::io;
use std::path::Path;

use lock_core::LockError;

/// Maps an I/O error of `action` (a verb: "open", "create", "write", "read"…) on `path`:
/// - a refused permission (or a read-only file system) is `Forbidden`, naming the path and the
///   user (`cannot create /x/a.json.lock as user nobody (uid 65534)`) and what to change;
/// - a missing directory, or a path through something that is not a directory, is
///   `Misconfigured`: retrying will not create it;
/// - anything else is `Unavailable`.
pub(crate) fn io_error(lock: &str, action: &str, path: &Path, err: io::Error) -> LockError {
    let shown = path.display();
    let read_only_fs = err.raw_os_error() == Some(libc::EROFS);
    if err.kind() == io::ErrorKind::PermissionDenied || read_only_fs {
        // `Forbidden` already says "permission denied": say for whom.
        let denied = if read_only_fs {
            format!("as user {}: the file system is read-only", current_user())
        } else {
            format!("as user {}", current_user())
        };
        let remedy = if is_read(action) {
            format!("make {shown} readable for this user")
        } else {
            format!(
                "make the directory {} writable for this user",
                crate::write::parent(path).display()
            )
        };
        return LockError::Forbidden {
            lock: lock.to_owned(),
            reason: format!(
                "cannot {action} {shown} {denied}: {remedy}, or choose another lock file \
                 (--lock-file)"
            ),
        };
    }
    if err.kind() == io::ErrorKind::NotFound || err.kind() == io::ErrorKind::NotADirectory {
        return LockError::Misconfigured {
            lock: lock.to_owned(),
            reason: missing_directory(action, path, &err),
        };
    }
    let reason = format!("cannot {action} {shown}: {err}");
    LockError::unavailable_because(lock, reason, err)
}

/// True for the actions that only read (whose fix is read access, not a writable directory).
fn is_read(action: &str) -> bool {
    ["read", "inspect", "resolve"]
        .iter()
        .any(|verb| action.starts_with(verb))
}

/// The message for a path whose directory is missing or runs through a file: names the first
/// ancestor that is not a directory when there is one.
fn missing_directory(action: &str, path: &Path, err: &io::Error) -> String {
    let shown = path.display();
    let blocker = path
        .ancestors()
        .skip(1)
        .find(|dir| dir.exists() && !dir.is_dir());
    match blocker {
        Some(file) => format!(
            "cannot {action} {shown}: {} is not a directory: choose another lock file \
             (--lock-file)",
            file.display()
        ),
        None => {
            let dir = crate::write::parent(path);
            let missing = if dir.is_dir() { path } else { dir };
            format!(
                "cannot {action} {shown} ({err}): directory {} does not exist: create it or \
                 choose another lock file (--lock-file)",
                missing.display()
            )
        }
    }
}

/// The user this process runs as: `nobody (uid 65534)`, or `uid 65534` when the name cannot
/// be found.
pub(crate) fn current_user() -> String {
    let uid = nix::unistd::geteuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => format!("{} (uid {uid})", user.name),
        _ => format!("uid {uid}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_permission_names_the_path_the_user_and_the_directory() {
        let err = io_error(
            "file:///srv/x/leader.json",
            "create",
            Path::new("/srv/x/leader.json.lock"),
            io::Error::from(io::ErrorKind::PermissionDenied),
        );
        let LockError::Forbidden { reason, .. } = &err else {
            panic!("not forbidden: {err:?}");
        };
        let user = current_user();
        assert_eq!(
            reason,
            &format!(
                "cannot create /srv/x/leader.json.lock as user {user}: make the directory /srv/x \
                 writable for this user, or choose another lock file (--lock-file)"
            )
        );
        assert!(err.is_permanent());
    }

    #[test]
    fn a_path_through_a_file_is_misconfigured_and_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain");
        std::fs::write(&file, b"x").unwrap();
        let path = file.join("sub").join("leader.json");
        let err = std::fs::create_dir_all(path.parent().unwrap()).unwrap_err();
        let mapped = io_error("l", "create the directory of", &path, err);
        let LockError::Misconfigured { reason, .. } = &mapped else {
            panic!("not misconfigured: {mapped:?}");
        };
        assert!(
            reason.contains(&format!("{} is not a directory", file.display())),
            "{reason}"
        );
    }

    #[test]
    fn a_missing_directory_is_misconfigured() {
        let mapped = io_error(
            "l",
            "open",
            Path::new("/nonexistent-dir-of-a-test/leader.json.lock"),
            io::Error::from(io::ErrorKind::NotFound),
        );
        assert!(
            matches!(mapped, LockError::Misconfigured { .. }),
            "{mapped:?}"
        );
        assert!(
            mapped.to_string().contains(
                "directory /nonexistent-dir-of-a-test does not exist: create it or choose \
                 another lock file (--lock-file)"
            ),
            "{mapped}"
        );
    }
}
