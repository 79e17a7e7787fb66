//! Readiness-gated candidacy: a candidate competes only while its application says it is
//! ready (warmed up, its dependencies reachable), as controller-runtime's warm-up does.

use tokio::sync::watch;

/// What a leader does when its readiness turns false.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UnreadyLeader {
    /// End the term and release the lock, so that a ready standby takes over at once (the
    /// default): an unready leader is rarely one that can do the leader's work.
    #[default]
    HandOver,
    /// Keep leading until the term ends for another reason; readiness only gates taking the
    /// lock.
    KeepLeading,
}

/// The readiness an elector follows: always ready without a channel.
#[derive(Clone, Debug, Default)]
pub(super) struct Readiness {
    ready: Option<watch::Receiver<bool>>,
    unready_leader: UnreadyLeader,
}

impl Readiness {
    pub(super) fn new(ready: watch::Receiver<bool>, unready_leader: UnreadyLeader) -> Self {
        Self {
            ready: Some(ready),
            unready_leader,
        }
    }

    /// True when this candidate may take the lock now.
    pub(super) fn is_ready(&self) -> bool {
        self.ready.as_ref().is_none_or(|ready| *ready.borrow())
    }

    /// Resolves at the next change of readiness; never without a channel, or once its sender
    /// is gone (the last value then stays in force).
    pub(super) async fn changed(&mut self) {
        match self.ready.as_mut() {
            Some(ready) => {
                if ready.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending::<()>().await,
        }
    }

    /// Resolves once this candidate is unready and its policy is to hand over; never
    /// otherwise.
    pub(super) async fn hand_over_due(&mut self) {
        if self.unready_leader == UnreadyLeader::KeepLeading {
            return std::future::pending::<()>().await;
        }
        while self.is_ready() {
            self.changed().await;
        }
    }
}
