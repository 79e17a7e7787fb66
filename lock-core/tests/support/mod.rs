//! Helpers for the elector tests: start candidates, collect their events.

use std::time::Duration;

use lock_core::backend::{Hint, HintStream, Version, Versioned};
use lock_core::{
    ElectionConfig, ElectionEvent, ElectorHandle, LeaderElectionRecord, LeaderElector, Leadership,
    Lock, LockResult, RunOutcome,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const LEASE: Duration = Duration::from_secs(15);
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
pub const RETRY: Duration = Duration::from_secs(2);

/// A running candidate.
pub struct Candidate {
    pub handle: ElectorHandle,
    pub events: mpsc::UnboundedReceiver<ElectionEvent>,
    pub cancel: CancellationToken,
    pub task: JoinHandle<RunOutcome>,
}

pub fn config(identity: &str) -> ElectionConfig {
    ElectionConfig::new(identity)
}

pub fn start(lock: impl Lock + 'static, config: ElectionConfig) -> Candidate {
    let elector = LeaderElector::new(lock, config).expect("valid config");
    let handle = elector.handle();
    let events = elector.subscribe();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(elector.run(cancel.clone()));
    Candidate {
        handle,
        events,
        cancel,
        task,
    }
}

impl Candidate {
    /// Waits (on the paused clock, bounded) for this candidate's next term.
    pub async fn next_term(&mut self, within: Duration) -> Leadership {
        tokio::time::timeout(within, async {
            loop {
                match self.events.recv().await {
                    Some(ElectionEvent::StartedLeading(term)) => return term,
                    Some(_) => {}
                    None => panic!("{} stopped before leading", self.handle.identity()),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{} did not lead within {within:?}", self.handle.identity()))
    }

    pub async fn stop(self) -> RunOutcome {
        self.cancel.cancel();
        self.task.await.expect("elector task panicked")
    }
}

/// A lock whose change hints the test sends by hand (the inner lock's own hints are not used).
#[derive(Debug)]
pub struct ScriptedHints<L> {
    inner: L,
    hints: std::sync::Mutex<Option<mpsc::UnboundedReceiver<Hint>>>,
}

impl<L> ScriptedHints<L> {
    pub fn new(inner: L, hints: mpsc::UnboundedReceiver<Hint>) -> Self {
        Self {
            inner,
            hints: std::sync::Mutex::new(Some(hints)),
        }
    }
}

#[async_trait::async_trait]
impl<L: Lock> Lock for ScriptedHints<L> {
    async fn get(&self) -> LockResult<Option<Versioned>> {
        self.inner.get().await
    }
    async fn create(&self, record: &LeaderElectionRecord) -> LockResult<Version> {
        self.inner.create(record).await
    }
    async fn update(
        &self,
        record: &LeaderElectionRecord,
        expected: &Version,
    ) -> LockResult<Version> {
        self.inner.update(record, expected).await
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn watch(&self) -> Option<HintStream> {
        let hints = self.hints.lock().unwrap().take()?;
        Some(Box::pin(
            tokio_stream::wrappers::UnboundedReceiverStream::new(hints),
        ))
    }
}

/// A record held by `holder` with `token`, for the default lease (15 s).
#[allow(dead_code)] // not every test file writes records by hand
pub fn held_by(holder: &str, token: i32) -> LeaderElectionRecord {
    LeaderElectionRecord {
        holder_identity: holder.into(),
        lease_duration_seconds: 15,
        leader_transitions: token,
        ..Default::default()
    }
}

/// Three terms of a candidate d that came and went on `lock` (each created on the absence
/// with a token at the floor it read, as an elector would, above z's token 3, then deleted):
/// what a create racing them cannot see. Returns d's last token.
#[allow(dead_code)] // only the tests of held-back creates race it
pub fn three_terms_came_and_went(lock: &lock_core::testing::MemoryLock) -> i32 {
    let mut token = 3;
    for _ in 0..3 {
        let floor = futures::executor::block_on(lock.token_floor()).unwrap() as i32;
        token = (token + 1).max(floor);
        futures::executor::block_on(lock.create(&held_by("d", token))).unwrap();
        lock.delete();
    }
    token
}

/// How [`RefusingUpdates`] refuses.
#[allow(dead_code)] // only the tests of refused writes use it
#[derive(Clone, Copy, Debug)]
pub enum Refusal {
    /// `Unavailable`: a store that takes no writes for now (a Redis primary without its
    /// replicas and `min_replicas` set).
    Unavailable,
    /// `Forbidden`: a permission taken away (RBAC that lost `update` while `get` still works).
    Forbidden,
}

/// Lets the first `let_through` updates pass, then refuses every update until `open` is set;
/// reads and creates pass.
#[allow(dead_code)] // only the tests of refused writes use it
#[derive(Debug)]
pub struct RefusingUpdates<L> {
    pub inner: L,
    pub let_through: std::sync::Mutex<u32>,
    pub open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub refusal: Refusal,
}

#[allow(dead_code)] // only the tests of refused writes use it
impl<L> RefusingUpdates<L> {
    /// Passes `let_through` updates, then refuses with `refusal` until the returned flag is set.
    pub fn new(
        inner: L,
        let_through: u32,
        refusal: Refusal,
    ) -> (Self, std::sync::Arc<std::sync::atomic::AtomicBool>) {
        let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let lock = Self {
            inner,
            let_through: std::sync::Mutex::new(let_through),
            open: open.clone(),
            refusal,
        };
        (lock, open)
    }
}

#[async_trait::async_trait]
impl<L: Lock> Lock for RefusingUpdates<L> {
    async fn get(&self) -> LockResult<Option<Versioned>> {
        self.inner.get().await
    }
    async fn create(&self, record: &LeaderElectionRecord) -> LockResult<Version> {
        self.inner.create(record).await
    }
    async fn update(
        &self,
        record: &LeaderElectionRecord,
        expected: &Version,
    ) -> LockResult<Version> {
        let passes = {
            let mut left = self.let_through.lock().unwrap();
            let passes = *left > 0;
            *left = left.saturating_sub(1);
            passes || self.open.load(std::sync::atomic::Ordering::SeqCst)
        };
        if passes {
            return self.inner.update(record, expected).await;
        }
        let lock = self.inner.describe();
        Err(match self.refusal {
            Refusal::Unavailable => lock_core::LockError::Unavailable {
                lock,
                reason: "injected: the store takes no writes".to_owned(),
                source: None,
            },
            Refusal::Forbidden => lock_core::LockError::Forbidden {
                lock,
                reason: "injected: update forbidden".to_owned(),
            },
        })
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn watch(&self) -> Option<HintStream> {
        self.inner.watch()
    }
}
