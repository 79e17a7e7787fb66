//! The conformance suite against the file lock.

use std::path::PathBuf;
use std::sync::Arc;

use lock_core::Lock;
use lock_file::FileLock;
use lock_tests::conformance::Backend;
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

lock_tests::conformance_suite!(async { FileBackend::new() });
