//! Giving up on faults that will not pass by themselves ([`LeaderElector::give_up_after`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::LeaderElector;
use crate::LockError;

/// Why [`LeaderElector::run`] ended with [`RunOutcome::GaveUp`](super::RunOutcome::GaveUp):
/// every lock call of a standby failed with a [permanent](LockError::is_permanent) error
/// (refused credentials or permissions, a setup that cannot work) for `after`.
#[derive(Clone, Debug)]
pub struct GaveUp {
    /// How long the calls failed: the duration given to
    /// [`give_up_after`](LeaderElector::give_up_after).
    pub after: Duration,
    /// The last error, which says what to fix.
    pub error: Arc<LockError>,
}

/// Two reports are equal when they gave up after the same time on errors with the same text
/// (a [`LockError`] holds sources that cannot be compared).
impl PartialEq for GaveUp {
    fn eq(&self, other: &Self) -> bool {
        self.after == other.after && self.error.to_string() == other.error.to_string()
    }
}

impl Eq for GaveUp {}

impl fmt::Display for GaveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gave up after {:?}: {}", self.after, self.error)
    }
}

/// A standby's run of permanent failures: since when every lock call failed with one, and the
/// last of them. Any success, lost race or passing fault ends the run.
#[derive(Default)]
pub(super) struct PermanentFailures {
    since: Option<Instant>,
    last: Option<LockError>,
}

impl PermanentFailures {
    /// Takes in a lock call that failed with `err`.
    pub(super) fn failed(&mut self, err: LockError) {
        if err.is_permanent() {
            self.since.get_or_insert_with(Instant::now);
            self.last = Some(err);
        } else {
            self.answered();
        }
    }

    /// Takes in a lock call that got an answer (or a passing fault): the run ends.
    pub(super) fn answered(&mut self) {
        self.since = None;
        self.last = None;
    }
}

impl LeaderElector {
    /// Makes [`run`](Self::run) end with [`RunOutcome::GaveUp`](super::RunOutcome::GaveUp)
    /// once every lock call of this candidate has failed with a
    /// [permanent](LockError::is_permanent) error for `after` without a break: wrong
    /// credentials, missing permissions, a namespace or directory that is not there. Any
    /// answer, and any passing fault (a server down, a timeout), starts the count again, so a
    /// server that is down is waited for without end. Without this (the default) an elector
    /// retries every fault for ever, so that an operator can fix the setup while it runs.
    ///
    /// Only a standby gives up: a leader whose renews fail ends its term at the renew deadline
    /// first (and, with [`rejoin`](crate::ElectionConfig::rejoin) on, stands by and counts
    /// from there), so a term never ends by giving up.
    ///
    /// ```
    /// use std::time::Duration;
    /// use lock_core::testing::MemoryLock;
    /// use lock_core::{ElectionConfig, LeaderElector};
    ///
    /// let elector = LeaderElector::new(MemoryLock::new("jobs"), ElectionConfig::new("a"))
    ///     .unwrap()
    ///     .give_up_after(Duration::from_secs(30));
    /// # drop(elector);
    /// ```
    pub fn give_up_after(mut self, after: Duration) -> Self {
        self.give_up_after = Some(after);
        self
    }

    /// When this candidate gives up on `failures`, if it does.
    pub(super) fn gives_up_at(&self, failures: &PermanentFailures) -> Option<Instant> {
        Some(failures.since? + self.give_up_after?)
    }

    /// The report of giving up, when `failures` have lasted long enough.
    pub(super) fn gave_up(&self, failures: &mut PermanentFailures) -> Option<GaveUp> {
        let at = self.gives_up_at(failures)?;
        if Instant::now() < at {
            return None;
        }
        let error = failures.last.take()?;
        failures.since = None;
        Some(GaveUp {
            after: self.give_up_after?,
            error: Arc::new(error),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::testing::MemoryLock;
    use crate::{
        ElectionConfig, LeaderElectionRecord, Lock, LockResult, RunOutcome, Version, Versioned,
    };

    /// A memory lock whose reads fail as forbidden, or as unavailable, while told to.
    #[derive(Debug)]
    struct Refusing {
        inner: MemoryLock,
        forbidden: Arc<AtomicBool>,
        unavailable: Arc<AtomicBool>,
        /// Writes (not reads) fail as misconfigured: a Kubernetes namespace that does not
        /// exist, where reading a Lease answers "none" and creating one fails.
        writes_refused: bool,
    }

    impl Refusing {
        fn refusal(&self) -> LockResult<()> {
            if self.forbidden.load(Ordering::SeqCst) {
                return Err(LockError::Forbidden {
                    lock: "memory".into(),
                    reason: "no such user".into(),
                });
            }
            if self.unavailable.load(Ordering::SeqCst) {
                return Err(LockError::unexpected("memory", "the server is down"));
            }
            Ok(())
        }
    }

    impl Refusing {
        fn write_refusal(&self) -> LockResult<()> {
            if self.writes_refused {
                return Err(LockError::Misconfigured {
                    lock: "memory".into(),
                    reason: "namespace \"x\" does not exist".into(),
                });
            }
            Ok(())
        }
    }

    #[async_trait::async_trait]
    impl Lock for Refusing {
        async fn get(&self) -> LockResult<Option<Versioned>> {
            self.refusal()?;
            self.inner.get().await
        }
        async fn create(&self, record: &LeaderElectionRecord) -> LockResult<Version> {
            self.refusal()?;
            self.write_refusal()?;
            self.inner.create(record).await
        }
        async fn update(
            &self,
            record: &LeaderElectionRecord,
            expected: &Version,
        ) -> LockResult<Version> {
            self.refusal()?;
            self.write_refusal()?;
            self.inner.update(record, expected).await
        }
        fn describe(&self) -> String {
            self.inner.describe()
        }
    }

    fn refusing(forbidden: bool, unavailable: bool) -> (Refusing, Arc<AtomicBool>) {
        let flag = Arc::new(AtomicBool::new(forbidden));
        let lock = Refusing {
            inner: MemoryLock::new("jobs"),
            forbidden: flag.clone(),
            unavailable: Arc::new(AtomicBool::new(unavailable)),
            writes_refused: false,
        };
        (lock, flag)
    }

    /// Reads that answer do not make a standby's refused writes a passing fault: a lock whose
    /// every read answers "no record" and every create fails as misconfigured is given up on
    /// (the CI of the demo found this: a namespace that does not exist).
    #[tokio::test(start_paused = true)]
    async fn answered_reads_between_refused_writes_still_give_up() {
        let (mut lock, _) = refusing(false, false);
        lock.writes_refused = true;
        let elector = LeaderElector::new(lock, ElectionConfig::new("a"))
            .unwrap()
            .give_up_after(Duration::from_secs(30));
        let started = Instant::now();
        let outcome = tokio::time::timeout(
            Duration::from_secs(120),
            elector.run(CancellationToken::new()),
        )
        .await
        .expect("gave up within 120 s");
        let RunOutcome::GaveUp(gave_up) = outcome else {
            panic!("did not give up: {outcome:?}");
        };
        assert!(
            gave_up.error.to_string().contains("does not exist"),
            "{gave_up}"
        );
        let took = started.elapsed();
        assert!(took >= Duration::from_secs(30), "{took:?}");
        assert!(took <= Duration::from_secs(33), "{took:?}");
    }

    /// A standby that only reads, because another candidate holds a valid lease, never gives
    /// up, even if its writes would be refused: it has nothing to write.
    #[tokio::test(start_paused = true)]
    async fn a_standby_behind_a_valid_leader_never_gives_up() {
        let (mut lock, _) = refusing(false, false);
        let held = lock.inner.clone();
        lock.writes_refused = true;
        // Another candidate leads on the same record, renewing.
        let leader = LeaderElector::new(held, ElectionConfig::new("b")).unwrap();
        let leader_cancel = CancellationToken::new();
        let leading = tokio::spawn(leader.run(leader_cancel.clone()));
        tokio::time::sleep(Duration::from_secs(1)).await;
        let elector = LeaderElector::new(lock, ElectionConfig::new("a"))
            .unwrap()
            .give_up_after(Duration::from_secs(5));
        let cancel = CancellationToken::new();
        let running = tokio::spawn(elector.run(cancel.clone()));
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert!(!running.is_finished(), "gave up behind a valid leader");
        cancel.cancel();
        assert_eq!(
            running.await.unwrap(),
            RunOutcome::Cancelled { released: false }
        );
        leader_cancel.cancel();
        let _ = leading.await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_standby_refused_for_the_whole_time_gives_up_with_the_error() {
        let (lock, _) = refusing(true, false);
        let elector = LeaderElector::new(lock, ElectionConfig::new("a"))
            .unwrap()
            .give_up_after(Duration::from_secs(30));
        let started = Instant::now();
        let outcome = elector.run(CancellationToken::new()).await;
        let RunOutcome::GaveUp(gave_up) = outcome else {
            panic!("did not give up: {outcome:?}");
        };
        assert_eq!(gave_up.after, Duration::from_secs(30));
        assert!(gave_up.error.is_permanent());
        assert!(
            gave_up.error.to_string().contains("no such user"),
            "{gave_up}"
        );
        // Within a retry period (with jitter) of the time given.
        let took = started.elapsed();
        assert!(took >= Duration::from_secs(30), "{took:?}");
        assert!(took <= Duration::from_secs(31), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn passing_faults_and_the_default_never_give_up() {
        for (elector, what) in [
            (
                LeaderElector::new(refusing(false, true).0, ElectionConfig::new("a"))
                    .unwrap()
                    .give_up_after(Duration::from_secs(5)),
                "server down",
            ),
            (
                LeaderElector::new(refusing(true, false).0, ElectionConfig::new("a")).unwrap(),
                "no give_up_after",
            ),
        ] {
            let cancel = CancellationToken::new();
            let running = tokio::spawn(elector.run(cancel.clone()));
            tokio::time::sleep(Duration::from_secs(120)).await;
            assert!(!running.is_finished(), "{what}: run ended");
            cancel.cancel();
            assert_eq!(
                running.await.unwrap(),
                RunOutcome::Cancelled { released: false },
                "{what}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_between_refusals_starts_the_count_again() {
        let (lock, forbidden) = refusing(true, false);
        let elector = LeaderElector::new(lock, ElectionConfig::new("a").with_rejoin(true))
            .unwrap()
            .give_up_after(Duration::from_secs(30));
        let handle = elector.handle();
        let running = tokio::spawn(elector.run(CancellationToken::new()));
        tokio::time::sleep(Duration::from_secs(20)).await;
        // Fixed for a moment: the candidate reads, and leads.
        forbidden.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(handle.is_leader());
        // Refused again: the leader's renews fail, its term ends by the renew deadline (10 s),
        // and the standby it becomes counts 30 s from its first refused call, not from the
        // first refusal 45 s ago.
        forbidden.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert!(!handle.is_leader());
        assert!(
            !running.is_finished(),
            "gave up counting from the first refusal"
        );
        let outcome = tokio::time::timeout(Duration::from_secs(60), running)
            .await
            .expect("gave up within 60 s")
            .unwrap();
        assert!(matches!(outcome, RunOutcome::GaveUp(_)), "{outcome:?}");
    }
}
