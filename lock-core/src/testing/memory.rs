//! A lock that keeps its record in memory: for tests, examples and single-process use.

use std::sync::{Arc, Mutex, MutexGuard};

use futures::StreamExt;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

use crate::{
    Hint, HintStream, LeaderElectionRecord, Lock, LockError, LockResult, Version, Versioned,
};

/// A lock whose record lives in this process; clones share the record.
///
/// The record is stored as JSON bytes, exactly as a backend would store it, so that a value
/// that is not a record (see [`set_raw`](Self::set_raw)) is reported as `Corrupt` like anywhere
/// else. Every write is announced on the change-hint stream with the new record.
#[derive(Clone, Debug)]
pub struct MemoryLock {
    name: Arc<str>,
    inner: Arc<Mutex<Stored>>,
    hints: broadcast::Sender<Hint>,
}

#[derive(Debug, Default)]
struct Stored {
    value: Option<Vec<u8>>,
    version: u64,
}

impl MemoryLock {
    /// An empty lock; `name` only appears in [`describe`](Lock::describe).
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        let (hints, _) = broadcast::channel(256);
        Self {
            name: name.into(),
            inner: Arc::default(),
            hints,
        }
    }

    /// Stores raw bytes, bypassing all checks (as a person with a command-line client could),
    /// and bumps the version.
    pub fn set_raw(&self, bytes: impl Into<Vec<u8>>) {
        let mut stored = self.stored();
        stored.value = Some(bytes.into());
        stored.version += 1;
        let _ = self.hints.send(Hint::Changed);
    }

    /// Deletes the record, as a person with a command-line client could, and sends a
    /// [`Hint::Changed`] (as a watching backend would; wrap the lock in a
    /// [`FaultyLock`](crate::testing::FaultyLock) that drops hints for one that would not, such as a
    /// Redis `DEL`). The version counter goes on, so versions never repeat.
    pub fn delete(&self) {
        let mut stored = self.stored();
        stored.value = None;
        stored.version += 1;
        let _ = self.hints.send(Hint::Changed);
    }

    /// The raw bytes stored, if any.
    pub fn raw(&self) -> Option<Vec<u8>> {
        self.stored().value.clone()
    }

    fn stored(&self) -> MutexGuard<'_, Stored> {
        // No code path panics while holding the guard, so poisoning cannot carry a torn state.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn parse(&self, bytes: &[u8], version: u64) -> LockResult<Versioned> {
        let record = LeaderElectionRecord::from_json(bytes).map_err(|err| LockError::Corrupt {
            lock: self.describe(),
            reason: err.to_string(),
        })?;
        Ok(Versioned {
            record,
            version: version.into(),
        })
    }

    fn write(&self, stored: &mut Stored, record: &LeaderElectionRecord) -> Version {
        stored.value = Some(record.to_json().into_bytes());
        stored.version += 1;
        let version = Version::from(stored.version);
        let _ = self.hints.send(Hint::Record(Versioned {
            record: record.clone(),
            version: version.clone(),
        }));
        version
    }
}

#[async_trait::async_trait]
impl Lock for MemoryLock {
    async fn get(&self) -> LockResult<Option<Versioned>> {
        let stored = self.stored();
        match &stored.value {
            None => Ok(None),
            Some(bytes) => self.parse(bytes, stored.version).map(Some),
        }
    }

    async fn create(&self, record: &LeaderElectionRecord) -> LockResult<Version> {
        let mut stored = self.stored();
        if stored.value.is_some() {
            return Err(LockError::AlreadyExists {
                lock: self.describe(),
            });
        }
        Ok(self.write(&mut stored, record))
    }

    async fn update(
        &self,
        record: &LeaderElectionRecord,
        expected: &Version,
    ) -> LockResult<Version> {
        let mut stored = self.stored();
        let current = stored.value.as_ref().map(|_| Version::from(stored.version));
        if current.as_ref() != Some(expected) {
            return Err(LockError::conflict(self.describe(), expected));
        }
        if let Some(bytes) = &stored.value {
            // Never overwrite a value that is not a record, even at the right version.
            self.parse(bytes, stored.version)?;
        }
        Ok(self.write(&mut stored, record))
    }

    fn describe(&self) -> String {
        format!("memory://{}", self.name)
    }

    /// The version counter, which never goes back (a deletion bumps it too), as etcd's
    /// revision: every record the elector writes has `leaderTransitions` at most the version
    /// it lands at, so the current counter is above every token the lock ever held.
    async fn token_floor(&self) -> LockResult<u64> {
        Ok(self.stored().version)
    }

    fn watch(&self) -> Option<HintStream> {
        let stream = BroadcastStream::new(self.hints.subscribe()).map(|hint| {
            // A lagging receiver missed hints: tell it to read.
            hint.unwrap_or(Hint::Changed)
        });
        Some(stream.boxed())
    }
}
