//! Work scoped to a term: `run_leading` starts the leader's work with every term and stops it
//! when the term ends, so that users need no event loop of their own.
//!
//! The elector runs on a task of its own and the work on the caller's: work that hogs its
//! thread for a while then delays nothing but itself, and the elector keeps renewing (or
//! stepping down by the clock) meanwhile.

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
        let stop = cancel.child_token();
        // Subscribed before the elector starts, so no term is missed.
        let mut events = self.subscribe();
        let running = tokio::spawn(self.run(stop.clone()));
        // Dropping this future stops the elector's task too.
        let _stop_on_drop = stop.clone().drop_guard();
        let mut returned = false;
        // The stream ends when the elector's run returns.
        while let Some(event) = events.recv().await {
            let ElectionEvent::StartedLeading(term) = event else {
                continue;
            };
            if lead(&term, &mut work, when_returned).await {
                returned = true;
                stop.cancel();
            }
        }
        let outcome = match running.await {
            Ok(outcome) => outcome,
            Err(err) => std::panic::resume_unwind(err.into_panic()),
        };
        match outcome {
            RunOutcome::Cancelled { released } if returned => RunOutcome::WorkReturned { released },
            outcome => outcome,
        }
    }
}

/// Runs the work for one term until the term ends; true when the work returned while the term
/// ran and `when_returned` says to release.
async fn lead<W, F>(term: &Leadership, work: &mut W, when_returned: WorkReturned) -> bool
where
    W: FnMut(Leadership) -> F,
    F: Future<Output = ()>,
{
    loop {
        let started = Instant::now();
        tokio::select! {
            // Checked first on every poll: once the term is over, the work is not polled again.
            biased;
            () = term.ended() => return false,
            () = work(term.clone()) => {}
        }
        if !term.is_leader() {
            return false;
        }
        match when_returned {
            WorkReturned::Release => return true,
            WorkReturned::Restart => {
                tracing::warn!(
                    fencing_token = term.fencing_token(),
                    "the leader's work returned while the term runs: starting it again"
                );
                tokio::select! {
                    biased;
                    () = term.ended() => return false,
                    () = sleep_until(started + RESTART_BACKOFF) => {}
                }
            }
        }
    }
}
