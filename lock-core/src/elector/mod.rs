//! The one elector: stands by, takes the lock, renews it, hands it over.

mod give_up;
mod handle;
mod held_create;
pub(crate) mod hints;
mod leading;
mod memory;
mod pending;
mod readiness;
mod scoped;
pub(crate) mod shared;
mod standby;
mod term_writes;

use std::future::Future;
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    ConfigError, ElectionConfig, ElectionEvent, LeaderElectionRecord, Lock, LockError, LockResult,
    RenewReport, StopReason, Versioned,
};
pub use give_up::GaveUp;
pub use handle::{ElectorHandle, Unhealthy};
use hints::Hints;
use memory::{Memory, TermMark};
use readiness::Readiness;
pub use readiness::UnreadyLeader;
pub use scoped::{WorkReturned, RESTART_BACKOFF};
use shared::Shared;
use standby::StandbyEnd;
pub(crate) use standby::CONFIRM_INTERVAL;
use term_writes::TermWrites;

/// Runs one candidate's side of an election over any [`Lock`].
///
/// The algorithm is client-go's, with its guarantees made explicit:
/// - a standby judges expiry on its own monotonic clock: a lease ends `leaseDurationSeconds`
///   (the holder's, from the record) after this candidate *observed* the record change; the
///   record's `renewTime` is never trusted;
/// - a leader is leader until the send time of its last successful renew plus the renew
///   deadline, which is shorter than the lease, so it always steps down before anyone else may
///   take over;
/// - the leader renews with the version it wrote last and reads only after a conflict;
/// - every new term bumps `leaderTransitions`, the term's fencing token;
/// - with a lock that offers change hints, a standby takes a released lock at once and otherwise
///   sleeps until the observed expiry; without hints it polls every retry period (jittered).
///
/// See the crate documentation for an example.
#[derive(Debug)]
pub struct LeaderElector {
    lock: Arc<dyn Lock>,
    config: ElectionConfig,
    shared: Arc<Shared>,
    /// Poll jitter and acquireTime marks; seeded from the config for simulations.
    rng: std::sync::Mutex<rand::rngs::StdRng>,
    /// Whether this candidate may compete now (always, unless [`with_readiness`]).
    ///
    /// [`with_readiness`]: LeaderElector::with_readiness
    readiness: Readiness,
    /// How long permanent failures last before `run` gives up ([`give_up_after`]); never by
    /// default.
    ///
    /// [`give_up_after`]: LeaderElector::give_up_after
    give_up_after: Option<std::time::Duration>,
}

/// How [`LeaderElector::run`] ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunOutcome {
    /// The cancellation token was cancelled. `released` tells whether the lock was handed over.
    Cancelled {
        /// True when the lock was released (holder "" and a 1 s lease).
        released: bool,
    },
    /// Leadership was lost and [`ElectionConfig::rejoin`] is off.
    LostLeadership(StopReason),
    /// The work of [`run_leading`](LeaderElector::run_leading) returned while its term ran,
    /// which ended the election. `released` tells whether the lock was handed over.
    WorkReturned {
        /// True when the lock was released.
        released: bool,
    },
    /// Every lock call failed with a [permanent](LockError::is_permanent) error for the time
    /// given to [`give_up_after`](LeaderElector::give_up_after) (never without it). No term
    /// was running: a leader's term ends at its renew deadline before this can happen.
    GaveUp(GaveUp),
}

impl LeaderElector {
    /// An elector for `lock` with a validated `config`.
    pub fn new(lock: impl Lock + 'static, config: ElectionConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let lock: Arc<dyn Lock> = Arc::new(lock);
        let shared = Arc::new(Shared::new(config.identity.clone(), lock.describe()));
        let rng = match config.random_seed {
            Some(seed) => rand::rngs::StdRng::seed_from_u64(seed),
            None => rand::rngs::StdRng::from_os_rng(),
        };
        Ok(Self {
            lock,
            config,
            shared,
            rng: std::sync::Mutex::new(rng),
            readiness: Readiness::default(),
            give_up_after: None,
        })
    }

    /// Competes only while `ready` holds `true`: a standby never takes the lock while it is
    /// `false` (it goes on reading the lock, so it knows who leads), and a leader whose
    /// readiness turns `false` acts as `unready_leader` says: by default it ends its term and
    /// releases the lock, so that a ready standby takes over at once
    /// ([`StopReason::Unready`]), and stands by again if [`rejoin`](ElectionConfig::rejoin) is
    /// on (with rejoin off, `run` then ends with that reason). Once the sender is dropped, the
    /// last value stays in force.
    ///
    /// ```
    /// use lock_core::testing::MemoryLock;
    /// use lock_core::{ElectionConfig, LeaderElector, UnreadyLeader};
    ///
    /// let (ready, readiness) = tokio::sync::watch::channel(false);
    /// let elector = LeaderElector::new(MemoryLock::new("jobs"), ElectionConfig::new("a"))
    ///     .unwrap()
    ///     .with_readiness(readiness, UnreadyLeader::HandOver);
    /// // ... once warmed up:
    /// ready.send_replace(true);
    /// # drop(elector);
    /// ```
    pub fn with_readiness(
        mut self,
        ready: tokio::sync::watch::Receiver<bool>,
        unready_leader: UnreadyLeader,
    ) -> Self {
        self.readiness = Readiness::new(ready, unready_leader);
        self
    }

    /// A handle for querying this elector while it runs (state, leadership, health).
    pub fn handle(&self) -> ElectorHandle {
        ElectorHandle::new(self.shared.clone(), self.config.lease_duration)
    }

    /// The elector in leader-for-life mode over `lock`: no lease, leadership ends when the
    /// holder's process is gone, as the platform tells. See [`LifeElector`](crate::LifeElector)
    /// for what that trades away (a hung leader is never replaced by the clock).
    pub fn for_life(
        lock: impl crate::LifeLock,
        config: ElectionConfig,
    ) -> Result<crate::LifeElector, ConfigError> {
        crate::LifeElector::new(lock, config)
    }

    /// A stream of this elector's events, in order, from now on; it ends when [`run`](Self::run)
    /// returns.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<ElectionEvent> {
        self.shared.subscribe()
    }

    /// Calls `callback` with every event, in order, on the elector's own task, before the elector
    /// makes its next lock call. That makes callbacks the place for what must happen before
    /// anything else does: `StoppedLeading` reaches them before the release is written, so
    /// whatever they record about the end of a term precedes any other candidate's start.
    /// Keep them short and non-blocking (a log line, a flag, a metric); hand longer work to a
    /// task through [`subscribe`](Self::subscribe) instead.
    pub fn on_event(&self, callback: impl Fn(&ElectionEvent) + Send + Sync + 'static) {
        self.shared.add_callback(std::sync::Arc::new(callback));
    }

    /// Calls `callback` with a [`RenewReport`] after every renew attempt of a leader (its
    /// latency, and whether it renewed, on the fast or the slow path, was superseded or failed),
    /// inline on the elector's own task before it acts on the outcome. Meant for metrics: keep
    /// it short and non-blocking, as with [`on_event`](Self::on_event). A renew interrupted by
    /// cancellation is not reported.
    pub fn on_renew(&self, callback: impl Fn(&RenewReport) + Send + Sync + 'static) {
        self.shared
            .add_renew_callback(std::sync::Arc::new(callback));
    }

    /// The configuration in force.
    pub fn config(&self) -> &ElectionConfig {
        &self.config
    }

    /// Takes part in the election until `cancel` is cancelled (or, with `rejoin` off, until
    /// leadership is lost).
    ///
    /// On cancellation a leader first ends its term (its token is cancelled and
    /// [`ElectionEvent::StoppedLeading`] is sent), and then, with
    /// [`release_on_cancel`](ElectionConfig::release_on_cancel), hands the lock over.
    ///
    /// When it returns, every event stream from [`subscribe`](Self::subscribe) ends after its
    /// queued events (`recv` gives `None`), so a loop over one needs no `break` of its own.
    /// For leader's work scoped to each term, see [`run_leading`](Self::run_leading).
    pub fn run(self, cancel: CancellationToken) -> impl Future<Output = RunOutcome> + Send {
        let span = tracing::info_span!(
            "election",
            identity = %self.config.identity,
            lock = %self.shared.lock_name
        );
        // However `run` ends (it returns, its task panics, its future is dropped, even before
        // its first poll), the term it holds ends and every event stream ends with it.
        let closing = Closing(self.shared.clone());
        async move {
            let _closing = closing;
            self.run_until_done(cancel).instrument(span).await
        }
    }

    async fn run_until_done(&self, cancel: CancellationToken) -> RunOutcome {
        let mut hints = Hints::new(
            self.lock.clone(),
            self.config.use_hints,
            self.config.retry_period,
        );
        let mut memory = Memory::default();
        let mut readiness = self.readiness.clone();
        // The last term this candidate led, once it ended: its record may still stand (or a
        // renew of it land late), naming a leader that no longer leads.
        let mut ended = None;
        loop {
            let standby = self.stand_by(&mut hints, &mut memory, &mut readiness, ended, &cancel);
            let (term, written) = match standby.await {
                StandbyEnd::Won(term, written) => (term, written),
                StandbyEnd::Cancelled { released } => return RunOutcome::Cancelled { released },
                StandbyEnd::GaveUp(gave_up) => {
                    tracing::error!(error = %gave_up.error, after = ?gave_up.after, "giving up");
                    return RunOutcome::GaveUp(gave_up);
                }
            };
            let mut own = TermWrites::of(&written.record, self.config.lease_duration);
            let end = self
                .lead(term, written, &mut own, &mut hints, &mut readiness, &cancel)
                .await;
            ended = Some(own);
            match end {
                leading::Ended::Cancelled { released } => {
                    return RunOutcome::Cancelled { released }
                }
                leading::Ended::Lost(reason) if !self.config.rejoin => {
                    return RunOutcome::LostLeadership(reason)
                }
                leading::Ended::Lost(_) => {}
            }
        }
    }

    /// The record this candidate writes to start a term, keeping the previous record's
    /// coordination strategy; its preferred holder is dropped, since a new term settles the
    /// handover it asked for (or, if someone else took the lock, gave up on it). Its
    /// `acquireTime` carries random microseconds: the mark by which this process later
    /// recognises the record as its own write, which another process using the same identity
    /// (a twin) cannot reproduce but by a one-in-a-million chance.
    fn record_for_term(
        &self,
        previous: Option<&LeaderElectionRecord>,
        leader_transitions: i32,
    ) -> LeaderElectionRecord {
        let now = chrono::Utc::now();
        let micros = self.random().random_range(1..1_000_000i64);
        LeaderElectionRecord {
            holder_identity: self.config.identity.clone(),
            lease_duration_seconds: self.config.lease_duration_seconds(),
            acquire_time: Some(whole_seconds(now) + chrono::Duration::microseconds(micros)),
            renew_time: Some(to_micros(now)),
            leader_transitions,
            strategy: previous.and_then(|r| r.strategy.clone()),
            preferred_holder: None,
        }
    }

    /// True when `current` is still the record of the term marked `mark`: this identity, that
    /// token and the acquireTime this process wrote (not a twin's record with the same name).
    fn holds(&self, current: &Versioned, mark: &TermMark) -> bool {
        mark.marks(&current.record, &self.config.identity)
    }

    /// Runs a lock call, failing it as unavailable if it does not answer by `deadline`.
    async fn bounded<T>(
        &self,
        deadline: Instant,
        call: impl Future<Output = LockResult<T>>,
    ) -> LockResult<T> {
        let limit = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout_at(deadline, call).await {
            Ok(result) => result,
            Err(_) => Err(LockError::timed_out(self.shared.lock_name.clone(), limit)),
        }
    }

    /// When a poll after now should happen: one retry period plus jitter, as client-go does.
    fn next_poll(&self) -> Instant {
        let jitter = self.config.jitter_factor * self.random().random::<f64>();
        Instant::now() + self.config.retry_period + self.config.retry_period.mul_f64(jitter)
    }

    fn random(&self) -> std::sync::MutexGuard<'_, rand::rngs::StdRng> {
        self.rng
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn call_deadline(&self) -> Instant {
        Instant::now() + self.config.renew_deadline
    }
}

/// Ends the running term (if any) and the event streams when dropped: at the end of `run`,
/// normal or not.
pub(crate) struct Closing(pub(crate) Arc<Shared>);

impl Drop for Closing {
    fn drop(&mut self) {
        if let Some(term) = self.0.last_term() {
            // A term `run` did not end itself (its future was dropped, its task panicked)
            // ends here, announced like any other.
            if !term.cancellation_token().is_cancelled() {
                self.0.stopped(&term, StopReason::Cancelled);
            }
        }
        self.0.close();
    }
}

/// `time` without its fraction of a second (a released record's times, and the base of a new
/// term's `acquireTime` mark).
pub(crate) fn whole_seconds(time: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    time - chrono::Duration::nanoseconds(i64::from(time.timestamp_subsec_nanos()))
}

/// `time` to the microsecond, as a record stores it (`metav1.MicroTime`'s precision), so that
/// what the elector wrote and what it reads back are equal. A renew's `renewTime` keeps its
/// microseconds: every renew then changes the record, and a store that skips writes which
/// change nothing (the Kubernetes API server does) cannot turn renews within one second into
/// no-ops that standbys never see, which would shorten the margin between the leader's renew
/// deadline and the standbys' lease by up to a second.
pub(crate) fn to_micros(time: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    time - chrono::Duration::nanoseconds(i64::from(time.timestamp_subsec_nanos() % 1_000))
}
