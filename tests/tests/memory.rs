//! The conformance suite against the in-memory lock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use lock_core::testing::conformance::Backend;
use lock_core::testing::MemoryLock;
use lock_core::Lock;

/// Elections in memory: handles on the same name are clones of one [`MemoryLock`], which share
/// its record and its change hints.
#[derive(Default)]
struct MemoryBackend {
    elections: Mutex<HashMap<String, MemoryLock>>,
}

impl MemoryBackend {
    fn election(&self, name: &str) -> MemoryLock {
        let mut elections = self
            .elections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        elections
            .entry(name.to_owned())
            .or_insert_with(|| MemoryLock::new(name))
            .clone()
    }
}

#[async_trait::async_trait]
impl Backend for MemoryBackend {
    async fn lock(&self, name: &str) -> Arc<dyn Lock> {
        Arc::new(self.election(name))
    }

    async fn write_raw(&self, name: &str, bytes: &[u8]) {
        self.election(name).set_raw(bytes);
    }

    async fn read_raw(&self, name: &str) -> Option<Vec<u8>> {
        self.election(name).raw()
    }
}

lock_core::conformance_suite!(async { MemoryBackend::default() });
