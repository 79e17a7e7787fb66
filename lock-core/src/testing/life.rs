//! [`MemoryLifeLock`]: a [`LifeLock`] in memory, the test double of the for-life mode.

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{LifeHold, LifeLock, LifeRelease, LockResult};

/// A [`LifeLock`] within one process, for tests of code that runs a
/// [`LifeElector`](crate::LifeElector). The "platform" is the test: [`end_hold`](Self::end_hold)
/// ends the current hold as an expired etcd session would (its `lost` is cancelled), and
/// [`process_gone`](Self::process_gone) frees the lock as the death of the holder's process
/// would. Clones share the lock.
#[derive(Clone, Debug)]
pub struct MemoryLifeLock {
    name: Arc<str>,
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
}

#[derive(Debug, Default)]
struct State {
    holder: Option<Held>,
    last_token: u64,
    acquisitions: u64,
}

#[derive(Debug)]
struct Held {
    identity: String,
    token: u64,
    lost: CancellationToken,
}

impl MemoryLifeLock {
    /// A free lock named `memory-life://NAME`.
    pub fn new(name: &str) -> Self {
        Self {
            name: format!("memory-life://{name}").into(),
            state: Arc::default(),
            changed: Arc::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Ends the current hold as the platform would while its process lives: its `lost` is
    /// cancelled and the lock is free. True when there was a hold.
    pub fn end_hold(&self) -> bool {
        let held = self.state().holder.take();
        let ended = held.map(|held| held.lost.cancel()).is_some();
        self.changed.notify_waiters();
        ended
    }

    /// Frees the lock if `identity` holds it, as the end of the holder's process would (its
    /// `lost` is not cancelled: nobody is left to tell). True when it held the lock.
    pub fn process_gone(&self, identity: &str) -> bool {
        let mut state = self.state();
        if state
            .holder
            .as_ref()
            .is_some_and(|held| held.identity == identity)
        {
            state.holder = None;
            drop(state);
            self.changed.notify_waiters();
            return true;
        }
        false
    }

    /// How many holds were granted so far.
    pub fn acquisitions(&self) -> u64 {
        self.state().acquisitions
    }

    /// Takes the lock for `identity` if it is free.
    fn try_take(&self, identity: &str) -> Option<LifeHold> {
        let mut state = self.state();
        if state.holder.is_some() {
            return None;
        }
        state.last_token += 1;
        state.acquisitions += 1;
        let token = state.last_token;
        let lost = CancellationToken::new();
        state.holder = Some(Held {
            identity: identity.to_owned(),
            token,
            lost: lost.clone(),
        });
        Some(LifeHold {
            fencing_token: token,
            lost,
            release: Box::new(MemoryRelease {
                lock: self.clone(),
                token,
            }),
            deadline: None,
        })
    }
}

#[async_trait::async_trait]
impl LifeLock for MemoryLifeLock {
    async fn acquire(
        &self,
        identity: &str,
        cancel: &CancellationToken,
    ) -> LockResult<Option<LifeHold>> {
        loop {
            // Registered before the check, so a release between the two is not missed.
            let changed = self.changed.notified();
            if let Some(hold) = self.try_take(identity) {
                return Ok(Some(hold));
            }
            tokio::select! {
                () = cancel.cancelled() => return Ok(None),
                () = changed => {}
            }
        }
    }

    async fn holder(&self) -> LockResult<Option<(String, u64)>> {
        Ok(self
            .state()
            .holder
            .as_ref()
            .map(|held| (held.identity.clone(), held.token)))
    }

    fn describe(&self) -> String {
        self.name.to_string()
    }
}

/// Gives up the hold of one term.
struct MemoryRelease {
    lock: MemoryLifeLock,
    token: u64,
}

#[async_trait::async_trait]
impl LifeRelease for MemoryRelease {
    async fn release(self: Box<Self>) -> LockResult<()> {
        let mut state = self.lock.state();
        if state
            .holder
            .as_ref()
            .is_some_and(|held| held.token == self.token)
        {
            state.holder = None;
            drop(state);
            self.lock.changed.notify_waiters();
        }
        Ok(())
    }
}
