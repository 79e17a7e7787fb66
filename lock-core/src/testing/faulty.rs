//! A wrapper that implements [`Lock`] around any lock and injects faults.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;

use crate::{
    Hint, HintStream, LeaderElectionRecord, Lock, LockError, LockResult, Version, Versioned,
};

/// Wraps a lock and, as told through its [`FaultControl`], delays calls, fails them as
/// unavailable, answers updates with conflicts, loses replies to writes that did land, lets
/// writes land after the read that follows them, and drops or repeats change hints. It also counts the calls that reach the inner lock.
///
/// ```
/// use lock_core::Lock;
/// use lock_core::testing::{FaultyLock, MemoryLock};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let lock = FaultyLock::new(MemoryLock::new("test"));
/// lock.faults().set_unavailable(true);
/// assert!(lock.get().await.unwrap_err().is_retryable());
/// lock.faults().set_unavailable(false);
/// assert!(lock.get().await.unwrap().is_none());
/// # }
/// ```
#[derive(Debug)]
pub struct FaultyLock<L> {
    inner: L,
    control: FaultControl,
    /// Writes still on their way (see [`FaultControl::delay_next_writes`]).
    delayed: Mutex<Vec<DelayedWrite>>,
}

/// A write answered as timed out that lands after the next read.
#[derive(Debug)]
enum DelayedWrite {
    Create(LeaderElectionRecord),
    Update(LeaderElectionRecord, Version),
}

/// The switches and counters of a [`FaultyLock`]; clones control the same lock.
#[derive(Clone, Debug)]
pub struct FaultControl {
    state: Arc<Mutex<Faults>>,
    counts: Arc<CallCounts>,
    forged: tokio::sync::broadcast::Sender<Hint>,
    /// The record of the last update asked of the wrapper, whether or not it went through.
    last_update: Arc<Mutex<Option<LeaderElectionRecord>>>,
}

impl Default for FaultControl {
    fn default() -> Self {
        Self {
            state: Arc::default(),
            counts: Arc::default(),
            last_update: Arc::default(),
            forged: tokio::sync::broadcast::channel(64).0,
        }
    }
}

#[derive(Debug, Default)]
struct Faults {
    latency: Duration,
    unavailable: bool,
    fail_next: u32,
    conflict_next: u32,
    lose_replies_next: u32,
    unreplicate_next: u32,
    delay_next: u32,
    drop_hints: bool,
    repeat_hints: bool,
}

/// How many calls of each kind reached the inner lock.
#[derive(Debug, Default)]
pub struct CallCounts {
    gets: AtomicU64,
    creates: AtomicU64,
    updates: AtomicU64,
    token_floors: AtomicU64,
}

impl CallCounts {
    /// Calls of `get`.
    pub fn gets(&self) -> u64 {
        self.gets.load(Ordering::Relaxed)
    }
    /// Calls of `create`.
    pub fn creates(&self) -> u64 {
        self.creates.load(Ordering::Relaxed)
    }
    /// Calls of `update`.
    pub fn updates(&self) -> u64 {
        self.updates.load(Ordering::Relaxed)
    }
    /// Calls of `token_floor`.
    pub fn token_floors(&self) -> u64 {
        self.token_floors.load(Ordering::Relaxed)
    }
}

impl FaultControl {
    fn faults(&self) -> MutexGuard<'_, Faults> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Delays every call by `latency` before it reaches the inner lock.
    pub fn set_latency(&self, latency: Duration) {
        self.faults().latency = latency;
    }

    /// While `true`, every call fails with `Unavailable` without reaching the inner lock.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.faults().unavailable = unavailable;
    }

    /// The next `n` calls fail with `Unavailable` without reaching the inner lock.
    pub fn fail_next(&self, n: u32) {
        self.faults().fail_next = n;
    }

    /// The next `n` updates fail with `Conflict` without reaching the inner lock.
    pub fn conflict_next(&self, n: u32) {
        self.faults().conflict_next = n;
    }

    /// The next `n` writes reach the inner lock and land, but their caller gets `Unavailable`
    /// (a reply lost on the way back).
    pub fn lose_replies_next(&self, n: u32) {
        self.faults().lose_replies_next = n;
    }

    /// The next `n` writes reach the inner lock and land, but their caller gets
    /// [`NotReplicated`](LockError::NotReplicated) (as from a Redis whose replicas did not
    /// acknowledge the write in time).
    pub fn unreplicate_next(&self, n: u32) {
        self.faults().unreplicate_next = n;
    }

    /// The next `n` writes are answered as timed out at once, and land (if they still can)
    /// just after the next read through this lock is answered, which shows the store as it was
    /// before them: a write and a read on separate streams of a loaded server.
    pub fn delay_next_writes(&self, n: u32) {
        self.faults().delay_next = n;
    }

    /// While `true`, change hints are swallowed.
    pub fn set_drop_hints(&self, drop: bool) {
        self.faults().drop_hints = drop;
    }

    /// While `true`, every change hint is delivered twice (as inotify does for one rename).
    pub fn set_repeat_hints(&self, repeat: bool) {
        self.faults().repeat_hints = repeat;
    }

    /// Delivers `hint` on every open watch stream of this wrapper, as someone who may publish on
    /// a backend's change channel could forge one.
    pub fn forge_hint(&self, hint: Hint) {
        let _ = self.forged.send(hint);
    }

    /// The record of the last update the caller sent, whether it reached the inner lock, failed
    /// or is held back: what a write held up in the network and landing later would carry.
    pub fn last_update_sent(&self) -> Option<LeaderElectionRecord> {
        self.last_update
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Counts of the calls that reached the inner lock.
    pub fn counts(&self) -> &CallCounts {
        &self.counts
    }

    /// Applies latency and availability faults; `Err` means the call must not go through.
    async fn before_call(&self, lock: &str) -> LockResult<()> {
        let latency = self.faults().latency;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let mut faults = self.faults();
        if faults.unavailable || faults.fail_next > 0 {
            faults.fail_next = faults.fail_next.saturating_sub(1);
            return Err(injected(lock, "injected fault: backend unavailable"));
        }
        Ok(())
    }

    fn take_conflict(&self) -> bool {
        let mut faults = self.faults();
        let hit = faults.conflict_next > 0;
        faults.conflict_next = faults.conflict_next.saturating_sub(1);
        hit
    }

    fn take_lost_reply(&self) -> bool {
        let mut faults = self.faults();
        let hit = faults.lose_replies_next > 0;
        faults.lose_replies_next = faults.lose_replies_next.saturating_sub(1);
        hit
    }

    fn take_delayed(&self) -> bool {
        let mut faults = self.faults();
        let hit = faults.delay_next > 0;
        faults.delay_next = faults.delay_next.saturating_sub(1);
        hit
    }

    fn take_unreplicated(&self) -> bool {
        let mut faults = self.faults();
        let hit = faults.unreplicate_next > 0;
        faults.unreplicate_next = faults.unreplicate_next.saturating_sub(1);
        hit
    }
}

fn injected(lock: &str, reason: &str) -> LockError {
    LockError::Unavailable {
        lock: lock.to_owned(),
        reason: reason.to_owned(),
        source: None,
    }
}

impl<L: Lock> FaultyLock<L> {
    /// Wraps `inner` with no faults switched on.
    pub fn new(inner: L) -> Self {
        Self {
            inner,
            control: FaultControl::default(),
            delayed: Mutex::default(),
        }
    }

    /// The switches of this wrapper (a clone controls the same wrapper).
    pub fn faults(&self) -> FaultControl {
        self.control.clone()
    }

    /// The wrapped lock.
    pub fn inner(&self) -> &L {
        &self.inner
    }

    /// Holds `write` back if a delay is armed, answering it as timed out.
    fn delay(&self, write: DelayedWrite) -> LockResult<()> {
        if !self.control.take_delayed() {
            return Ok(());
        }
        self.delayed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(write);
        Err(injected(
            &self.describe(),
            "injected fault: timed out (the write is still on its way)",
        ))
    }

    /// Lands the writes held back, in order; one the store refuses now is dropped, as the
    /// server would refuse it.
    async fn land_delayed(&self) {
        let delayed = std::mem::take(
            &mut *self
                .delayed
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        for write in delayed {
            let _ = match write {
                DelayedWrite::Create(record) => self.inner.create(&record).await,
                DelayedWrite::Update(record, version) => self.inner.update(&record, &version).await,
            };
        }
    }

    fn after_write(&self, result: LockResult<Version>) -> LockResult<Version> {
        match result {
            Ok(_) if self.control.take_lost_reply() => Err(injected(
                &self.describe(),
                "injected fault: the write landed but its reply was lost",
            )),
            Ok(_) if self.control.take_unreplicated() => Err(LockError::NotReplicated {
                lock: self.describe(),
                reason: "injected fault: 0 of 1 required replicas acknowledged it".to_owned(),
            }),
            other => other,
        }
    }
}

#[async_trait::async_trait]
impl<L: Lock> Lock for FaultyLock<L> {
    async fn get(&self) -> LockResult<Option<Versioned>> {
        self.control.before_call(&self.describe()).await?;
        self.control.counts.gets.fetch_add(1, Ordering::Relaxed);
        let read = self.inner.get().await;
        self.land_delayed().await;
        read
    }

    async fn create(&self, record: &LeaderElectionRecord) -> LockResult<Version> {
        self.control.before_call(&self.describe()).await?;
        self.control.counts.creates.fetch_add(1, Ordering::Relaxed);
        self.delay(DelayedWrite::Create(record.clone()))?;
        let result = self.inner.create(record).await;
        self.after_write(result)
    }

    async fn update(
        &self,
        record: &LeaderElectionRecord,
        expected: &Version,
    ) -> LockResult<Version> {
        *self
            .control
            .last_update
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(record.clone());
        self.control.before_call(&self.describe()).await?;
        if self.control.take_conflict() {
            return Err(LockError::Conflict {
                lock: self.describe(),
                expected: expected.to_string(),
            });
        }
        self.control.counts.updates.fetch_add(1, Ordering::Relaxed);
        self.delay(DelayedWrite::Update(record.clone(), expected.clone()))?;
        let result = self.inner.update(record, expected).await;
        self.after_write(result)
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn watch(&self) -> Option<HintStream> {
        let control = self.control.clone();
        let stream = self.inner.watch()?;
        let forged = tokio_stream::wrappers::BroadcastStream::new(self.control.forged.subscribe())
            .filter_map(|hint| futures::future::ready(hint.ok()));
        let faulty = stream.flat_map(move |hint| {
            let faults = control.faults();
            let copies = match (faults.drop_hints, faults.repeat_hints) {
                (true, _) => vec![],
                (false, false) => vec![hint],
                (false, true) => vec![hint.clone(), hint],
            };
            futures::stream::iter(copies)
        });
        // Ends when the inner stream ends, whatever the forged side does.
        Some(
            futures::stream::select(
                faulty
                    .map(Some)
                    .chain(futures::stream::once(async { None })),
                forged.map(Some),
            )
            .take_while(|hint| futures::future::ready(hint.is_some()))
            .filter_map(futures::future::ready)
            .boxed(),
        )
    }

    async fn token_floor(&self) -> LockResult<u64> {
        self.control.before_call(&self.describe()).await?;
        self.control
            .counts
            .token_floors
            .fetch_add(1, Ordering::Relaxed);
        self.inner.token_floor().await
    }
}
