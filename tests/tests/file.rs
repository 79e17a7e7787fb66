//! The conformance suite against the file lock: once with every candidate on the file's path,
//! once with every other candidate reaching it through a symlinked directory (issue 11, hole 4:
//! one file under two names must still be one lock).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use lock_core::testing::conformance::Backend;
use lock_core::Lock;
use lock_file::FileLock;
use tempfile::TempDir;

/// Elections as files in a temporary directory: `<dir>/<name>.json`, removed with the backend.
struct FileBackend {
    dir: TempDir,
}

impl FileBackend {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("create a temporary directory for the lock files");
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.json"))
    }
}

#[async_trait::async_trait]
impl Backend for FileBackend {
    async fn lock(&self, name: &str) -> Arc<dyn Lock> {
        let lock = FileLock::new(self.path(name));
        assert_eq!(lock.path(), self.path(name));
        Arc::new(lock)
    }

    async fn write_raw(&self, name: &str, bytes: &[u8]) {
        let path = self.path(name);
        std::fs::write(&path, bytes)
            .unwrap_or_else(|err| panic!("write {}: {err}", path.display()));
    }

    async fn read_raw(&self, name: &str) -> Option<Vec<u8>> {
        let path = self.path(name);
        match std::fs::read(&path) {
            Ok(bytes) => Some(bytes),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
            Err(err) => panic!("read {}: {err}", path.display()),
        }
    }
}

lock_core::conformance_suite!(async { FileBackend::new() });

/// Like [`FileBackend`], but every other lock handed out reaches the file through a symlink to
/// its directory.
struct AliasedBackend {
    files: FileBackend,
    handed_out: AtomicUsize,
}

impl AliasedBackend {
    fn new() -> Self {
        let files = FileBackend::new();
        let link = files.dir.path().join("alias");
        std::os::unix::fs::symlink(files.dir.path(), &link)
            .unwrap_or_else(|err| panic!("symlink {}: {err}", link.display()));
        Self {
            files,
            handed_out: AtomicUsize::new(0),
        }
    }
}

#[async_trait::async_trait]
impl Backend for AliasedBackend {
    async fn lock(&self, name: &str) -> Arc<dyn Lock> {
        if self
            .handed_out
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(2)
        {
            return self.files.lock(name).await;
        }
        let path = self.files.dir.path().join(format!("alias/{name}.json"));
        Arc::new(FileLock::new(path))
    }

    async fn write_raw(&self, name: &str, bytes: &[u8]) {
        self.files.write_raw(name, bytes).await;
    }

    async fn read_raw(&self, name: &str) -> Option<Vec<u8>> {
        self.files.read_raw(name).await
    }
}

mod through_a_symlinked_directory {
    use super::AliasedBackend;

    lock_core::conformance_suite!(async { AliasedBackend::new() });
}
