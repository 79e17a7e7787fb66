//! A lock of your own: the record in a store this crate does not know (here a map in this
//! process, standing for any key-value store with compare-and-swap), written against
//! `lock_core::backend`, elected on with the same `LeaderElector`, and held to the same
//! conformance suite as the bundled backends (`cargo test -p leader-election --example
//! custom_lock` runs it).
//!
//! ```sh
//! cargo run -p leader-election --example custom_lock
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use leader_election::lock_core::backend::{
    LeaderElectionRecord, Lock, LockError, LockResult, Version, Versioned,
};
use leader_election::{CancellationToken, ElectionConfig, LeaderElector};

/// Per election: the stored bytes and a counter bumped by every write (the version).
type Entries = HashMap<String, (Vec<u8>, u64)>;

/// The store, shared by every lock on it.
#[derive(Clone, Debug, Default)]
struct Store(Arc<Mutex<Entries>>);

/// The lock of one election in the store.
#[derive(Debug)]
struct MapLock {
    store: Store,
    name: String,
}

impl MapLock {
    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.store
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait::async_trait]
impl Lock for MapLock {
    async fn get(&self) -> LockResult<Option<Versioned>> {
        let Some((bytes, counter)) = self.entries().get(&self.name).cloned() else {
            return Ok(None);
        };
        // A value that is not a record is reported, never treated as free or overwritten.
        let record = LeaderElectionRecord::from_json(&bytes).map_err(|err| LockError::Corrupt {
            lock: self.describe(),
            reason: err.to_string(),
        })?;
        Ok(Some(Versioned {
            record,
            version: Version::ordered(counter),
        }))
    }

    async fn create(&self, record: &LeaderElectionRecord) -> LockResult<Version> {
        let mut entries = self.entries();
        if entries.contains_key(&self.name) {
            return Err(LockError::AlreadyExists {
                lock: self.describe(),
            });
        }
        entries.insert(self.name.clone(), (record.to_json().into_bytes(), 1));
        Ok(Version::ordered(1))
    }

    async fn update(
        &self,
        record: &LeaderElectionRecord,
        expected: &Version,
    ) -> LockResult<Version> {
        let mut entries = self.entries();
        let conflict = || LockError::conflict(self.describe(), expected);
        let Some((bytes, counter)) = entries.get_mut(&self.name) else {
            return Err(conflict());
        };
        if Version::ordered(*counter) != *expected {
            return Err(conflict());
        }
        // Compare-and-swap alone is not enough: a value that is not a record stays untouched.
        if LeaderElectionRecord::from_json(bytes).is_err() {
            return Err(LockError::Corrupt {
                lock: self.describe(),
                reason: "the stored value is not a record".to_owned(),
            });
        }
        *counter += 1;
        *bytes = record.to_json().into_bytes();
        Ok(Version::ordered(*counter))
    }

    fn describe(&self) -> String {
        format!("map://{}", self.name)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = Store::default();
    let lock = MapLock {
        store,
        name: "reports".into(),
    };
    let config = ElectionConfig::new("worker-a").with_release_on_cancel(true);
    let outcome = LeaderElector::new(lock, config)?
        .run_leading(CancellationToken::new(), |term| async move {
            println!(
                "leading on a lock of my own, fencing token {}",
                term.fencing_token()
            );
        })
        .await;
    println!("{outcome:?}");
    Ok(())
}

/// The conformance suite, run against this lock exactly as against the bundled ones.
#[cfg(test)]
mod conformance {
    use super::*;
    use leader_election::lock_core::testing::conformance::{Backend, Capabilities};

    #[async_trait::async_trait]
    impl Backend for Store {
        async fn lock(&self, name: &str) -> Arc<dyn Lock> {
            Arc::new(MapLock {
                store: self.clone(),
                name: name.to_owned(),
            })
        }
        async fn write_raw(&self, name: &str, bytes: &[u8]) {
            let mut entries = self.0.lock().unwrap();
            let counter = entries.get(name).map_or(0, |(_, counter)| *counter) + 1;
            entries.insert(name.to_owned(), (bytes.to_vec(), counter));
        }
        async fn read_raw(&self, name: &str) -> Option<Vec<u8>> {
            self.0
                .lock()
                .unwrap()
                .get(name)
                .map(|(bytes, _)| bytes.clone())
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities::without_hints()
        }
    }

    leader_election::lock_core::conformance_suite!(async { Store::default() });
}
