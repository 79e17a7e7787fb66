//! Work scoped to a term: `run_leading` starts the leader's work with every term and stops it
//! when the term ends, so that users need no event loop of their own.
//!
//! The elector runs on a task of its own and the work on the caller's. On a multi-thread
//! runtime, work that hogs its thread for a while then delays nothing but itself: the elector
//! keeps renewing (or stepping down by the clock) meanwhile. On a current-thread runtime they
//! share the one thread, and blocking work delays renewals (the term then ends by the clock,
//! safely, but needlessly).
//!
//! The order of a shutdown is the point of this module: when `cancel` fires, the work is
//! dropped first, on the caller's task, and only then is the elector told to end the term and
//! release the lock, so a standby woken by the release never overlaps the work future (tasks
//! the work spawned stop with the term's cancellation token, which is cancelled just before the
//! release is written).

use std::future::Future;
use std::time::Duration;

use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use super::LeaderElector;
use crate::{ElectionEvent, Leadership, RunOutcome};

/// The shortest time between two starts of the work within one term under
/// [`WorkReturned::Restart`]: work that fails at once does not spin.
pub const RESTART_BACKOFF: Duration = Duration::from_secs(1);

/// What [`LeaderElector::run_leading_with`] does when the leader's work returns while its
/// term still runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WorkReturned {
    /// End the term, release the lock (with
    /// [`release_on_cancel`](crate::ElectionConfig::release_on_cancel)) and return
    /// [`RunOutcome::WorkReturned`]: work that is finished has no reason to keep others out.
    #[default]
    Release,
    /// Start the work again, at most once per [`RESTART_BACKOFF`], while the term lasts:
    /// for work that is meant to run as long as this instance leads.
    Restart,
}

impl LeaderElector {
    /// Takes part in the election until `cancel` is cancelled and runs `work` for every term
    /// this candidate wins, with the term as its argument; the work is stopped (its future
    /// dropped, never polled again) as soon as the term ends, by the elector's word or by the
    /// clock deadline, whichever comes first ([`Leadership::ended`]). Work that returns while
    /// its term runs ends the election: see [`run_leading_with`](Self::run_leading_with) to
    /// restart it instead.
    ///
    /// This is client-go's `OnStartedLeading(ctx)`. Two rules still hold inside the work:
    /// check [`Leadership::is_leader`] right before an action that must not happen twice (a
    /// future is only dropped at an `.await`), and hand
    /// [`Leadership::cancellation_token`] to any task the work spawns, which dropping the work
    /// does not stop. Where the protected resource can check it, send
    /// [`Leadership::fencing_token`] along with every write.
    ///
    /// Dropping the returned future cancels the election as `cancel` would.
    ///
    /// ```
    /// use lock_core::testing::MemoryLock;
    /// use lock_core::{ElectionConfig, LeaderElector, RunOutcome};
    /// use tokio_util::sync::CancellationToken;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let config = ElectionConfig::new("worker-a").with_release_on_cancel(true);
    /// let elector = LeaderElector::new(MemoryLock::new("orders"), config).unwrap();
    /// let outcome = elector
    ///     .run_leading(CancellationToken::new(), |term| async move {
    ///         println!("leading with fencing token {}", term.fencing_token());
    ///         // The leader's work; returning hands the lock over.
    ///     })
    ///     .await;
    /// assert_eq!(outcome, RunOutcome::WorkReturned { released: true });
    /// # }
    /// ```
    pub async fn run_leading<W, F>(self, cancel: CancellationToken, work: W) -> RunOutcome
    where
        W: FnMut(Leadership) -> F,
        F: Future<Output = ()>,
    {
        self.run_leading_with(cancel, WorkReturned::Release, work)
            .await
    }

    /// [`run_leading`](Self::run_leading) with a choice of what happens when the work
    /// returns while its term still runs.
    pub async fn run_leading_with<W, F>(
        self,
        cancel: CancellationToken,
        when_returned: WorkReturned,
        mut work: W,
    ) -> RunOutcome
    where
        W: FnMut(Leadership) -> F,
        F: Future<Output = ()>,
    {
        // Not a child of `cancel`: the elector hears of a shutdown only after the work is gone.
        let stop = CancellationToken::new();
        // Subscribed before the elector starts, so no term is missed.
        let mut events = self.subscribe();
        let running = tokio::spawn(self.run(stop.clone()));
        // Dropping this future stops the elector's task too (after the work, dropped first
        // as a local declared later).
        let _stop_on_drop = stop.clone().drop_guard();
        let mut returned = false;
        // The stream ends when the elector's run returns (or its task panics).
        loop {
            let event = tokio::select! {
                biased;
                () = cancel.cancelled(), if !stop.is_cancelled() => {
                    stop.cancel();
                    continue;
                }
                event = events.recv() => event,
            };
            let Some(event) = event else { break };
            let ElectionEvent::StartedLeading(term) = event else {
                continue;
            };
            if stop.is_cancelled() {
                continue;
            }
            match lead(&term, &mut work, when_returned, &cancel).await {
                TermEnd::Over => {}
                TermEnd::WorkReturned => {
                    returned = true;
                    stop.cancel();
                }
                // The work is dropped already: now the elector may end the term and release.
                TermEnd::Cancelled => stop.cancel(),
            }
        }
        let outcome = match running.await {
            Ok(outcome) => outcome,
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            Err(err) => panic!("the elector's task was cancelled: {err}"),
        };
        match outcome {
            RunOutcome::Cancelled { released } if returned => RunOutcome::WorkReturned { released },
            outcome => outcome,
        }
    }
}

/// How one term's work ended.
enum TermEnd {
    /// The term ended (the elector's word or the clock): the work was dropped.
    Over,
    /// The work returned while the term ran, and the policy says to release.
    WorkReturned,
    /// `cancel` fired: the work was dropped.
    Cancelled,
}

/// Runs the work for one term until the term ends, the work returns (under
/// [`WorkReturned::Release`]) or `cancel` fires.
async fn lead<W, F>(
    term: &Leadership,
    work: &mut W,
    when_returned: WorkReturned,
    cancel: &CancellationToken,
) -> TermEnd
where
    W: FnMut(Leadership) -> F,
    F: Future<Output = ()>,
{
    loop {
        // The event may come late (a busy caller, a restart's back-off): never start the work
        // for a term that is over.
        if !term.is_leader() {
            return TermEnd::Over;
        }
        let started = Instant::now();
        tokio::select! {
            // Checked first on every poll: once a poll finds the term over or a shutdown begun,
            // the work is not polled again. The closure itself is called on the first poll,
            // after both checks.
            biased;
            () = term.ended() => return TermEnd::Over,
            () = cancel.cancelled() => return TermEnd::Cancelled,
            () = async { work(term.clone()).await } => {}
        }
        if !term.is_leader() {
            return TermEnd::Over;
        }
        match when_returned {
            WorkReturned::Release => return TermEnd::WorkReturned,
            WorkReturned::Restart => {
                tracing::warn!(
                    fencing_token = term.fencing_token(),
                    "the leader's work returned while the term runs: starting it again"
                );
                tokio::select! {
                    biased;
                    () = term.ended() => return TermEnd::Over,
                    () = cancel.cancelled() => return TermEnd::Cancelled,
                    () = sleep_until(started + RESTART_BACKOFF) => {}
                }
            }
        }
    }
}
