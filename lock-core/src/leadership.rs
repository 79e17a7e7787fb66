//! Leadership as a value: one term of one leader.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

/// How often [`Leadership::ended`] checks the clocks while it waits: the longest a suspend's end
/// of a term can go unnoticed by it.
const ENDED_CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// One term of leadership held by this process.
///
/// A term carries a fencing token that strictly increases with every new term on the lock (it is
/// the record's `leaderTransitions`), so a resource guarded by the election can refuse writes
/// that carry an older token. The term is valid until the send time of the last successful renew
/// plus the renew deadline; [`is_leader`](Self::is_leader) compares that deadline with the
/// monotonic clock, so it turns `false` on time even when no task of the elector has run since
/// (after a long pause of the process, for example). On Linux it also checks the boot clock,
/// which counts the time the machine was suspended (the monotonic clock does not): a leader
/// woken from a suspend longer than its renew deadline is not leader, although its monotonic
/// clock says little time passed. [`lost`](Self::lost) is cancelled the moment the elector sees
/// the term end.
///
/// Clones refer to the same term.
#[derive(Clone)]
pub struct Leadership {
    inner: Arc<Term>,
}

struct Term {
    identity: String,
    token: u64,
    /// `None` for a term held for life ([`Leadership::is_for_life`]): no renew ends it (its
    /// hold's deadline may: `hold_deadline`).
    renew_deadline: Option<Duration>,
    lost: CancellationToken,
    renewed_at: Mutex<Stamp>,
    /// For a term held for life whose hold ends by the clock unless kept (an etcd session).
    hold_deadline: Option<crate::HoldDeadline>,
}

/// The send time of a write on both clocks, read when the write is sent: a suspend while the
/// write is in flight then counts after the send, as it does for the standbys.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stamp {
    /// Tokio's monotonic clock (paused in tests).
    pub(crate) at: Instant,
    /// The boot clock, which also counts suspend; `None` where there is none.
    boot: Option<Duration>,
}

impl Stamp {
    /// Now, on both clocks.
    pub(crate) fn now() -> Self {
        Self {
            at: Instant::now(),
            boot: crate::boot_clock::now(),
        }
    }
}

impl Leadership {
    pub(crate) fn new(identity: String, token: u64, sent: Stamp, renew_deadline: Duration) -> Self {
        Self {
            inner: Arc::new(Term {
                identity,
                token,
                renew_deadline: Some(renew_deadline),
                lost: CancellationToken::new(),
                renewed_at: Mutex::new(sent),
                hold_deadline: None,
            }),
        }
    }

    /// A term held for life (see [`LifeElector`](crate::LifeElector)): no renew deadline; it is
    /// valid until the elector ends it (the platform ended the hold, or the election was
    /// cancelled), or, for a hold that ends by the clock unless kept, `hold_deadline` passes.
    pub(crate) fn for_life(
        identity: String,
        token: u64,
        hold_deadline: Option<crate::HoldDeadline>,
    ) -> Self {
        Self {
            inner: Arc::new(Term {
                identity,
                token,
                renew_deadline: None,
                lost: CancellationToken::new(),
                renewed_at: Mutex::new(Stamp::now()),
                hold_deadline,
            }),
        }
    }

    /// True for a term held for life: no renew deadline, [`is_leader`](Self::is_leader) stays
    /// true until the elector ends the term (or the hold's own [deadline](crate::HoldDeadline)
    /// passes, for a hold that ends by the clock unless kept: an etcd session), and
    /// [`valid_until`](Self::valid_until) is not a deadline (see [`deadline`](Self::deadline)).
    pub fn is_for_life(&self) -> bool {
        self.inner.renew_deadline.is_none()
    }

    /// When this term ends by the clock unless renewed; `None` for a term held for life.
    pub fn deadline(&self) -> Option<Instant> {
        self.inner
            .renew_deadline
            .map(|renew_deadline| self.renewed_at() + renew_deadline)
    }

    /// The fencing token of this term: strictly greater than that of every earlier term on the
    /// same lock (as long as the record is not deleted).
    pub fn fencing_token(&self) -> u64 {
        self.inner.token
    }

    /// The identity that holds this term.
    pub fn identity(&self) -> &str {
        &self.inner.identity
    }

    /// `true` while this term is still valid: not ended by the elector, the monotonic clock
    /// is before [`valid_until`](Self::valid_until), and (on Linux) less than the renew
    /// deadline has passed on the boot clock since the last renew was sent.
    pub fn is_leader(&self) -> bool {
        if self.inner.lost.is_cancelled() {
            return false;
        }
        // The clocks are read under the lock that renewals take, so an answer of `false` is
        // final: a renew that lands after it finds the term over and is refused.
        let stamp = self.stamp_guard();
        self.valid_at(&stamp)
    }

    /// True while `stamp` (the last renew) keeps the term valid now, on both clocks.
    fn valid_at(&self, stamp: &Stamp) -> bool {
        let Some(renew_deadline) = self.inner.renew_deadline else {
            // Held for life: the elector ends it, or the hold's own deadline where it has one.
            return self
                .inner
                .hold_deadline
                .as_ref()
                .is_none_or(|deadline| !deadline.has_passed());
        };
        let boot_valid = match (stamp.boot, crate::boot_clock::now()) {
            (Some(sent), Some(now)) => now.saturating_sub(sent) < renew_deadline,
            _ => true,
        };
        boot_valid && Instant::now() < stamp.at + renew_deadline
    }

    /// The send time of the last successful write (acquire or renew) of this term.
    pub fn renewed_at(&self) -> Instant {
        self.stamp().at
    }

    fn stamp(&self) -> Stamp {
        *self.stamp_guard()
    }

    fn stamp_guard(&self) -> std::sync::MutexGuard<'_, Stamp> {
        self.inner
            .renewed_at
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// When this term ends unless it is renewed: [`renewed_at`](Self::renewed_at) plus the
    /// renew deadline. A term held for life has no such deadline: this is then
    /// [`MAX_LEASE_DURATION`](crate::MAX_LEASE_DURATION) from now, always later than any
    /// sensible wait; use [`deadline`](Self::deadline) to tell.
    pub fn valid_until(&self) -> Instant {
        self.deadline()
            .unwrap_or_else(|| Instant::now() + crate::MAX_LEASE_DURATION)
    }

    /// A token cancelled the moment this term ends; hand it to the work that must stop then.
    pub fn cancellation_token(&self) -> CancellationToken {
        self.inner.lost.clone()
    }

    /// Completes when the elector ends this term (it saw the lock taken, could not renew by
    /// the deadline, or shut down). A term can also run out by the clock before any task of
    /// the elector runs (after a pause of the process, say): work that must stop then waits
    /// for [`ended`](Self::ended) instead.
    pub fn lost(&self) -> WaitForCancellationFuture<'_> {
        self.inner.lost.cancelled()
    }

    /// Completes when this term is over, whichever comes first: the elector's word
    /// ([`lost`](Self::lost)) or the clock's ([`valid_until`](Self::valid_until) passed without
    /// a renew, or, on Linux, the renew deadline passed on the boot clock, as after a suspend).
    /// Every poll checks [`is_leader`](Self::is_leader) first, so a future raced against it in
    /// a biased `select!` is not polled after a poll that began with `is_leader` already `false`
    /// (a thread preempted between the check and the poll can still run it a moment late: check
    /// `is_leader` at the point of an action, and send the fencing token). Race the leader's
    /// work against it.
    pub fn ended(&self) -> impl std::future::Future<Output = ()> + Send + '_ {
        let mut waiting = Box::pin(self.lost_or_deadline());
        std::future::poll_fn(move |cx| {
            if !self.is_leader() {
                return std::task::Poll::Ready(());
            }
            std::future::Future::poll(waiting.as_mut(), cx)
        })
    }

    /// Completes when the elector ends the term or its deadline passes without a renew. The
    /// wait is cut into short sleeps: tokio's timers run on the monotonic clock, which stands
    /// still while the machine is suspended, so only a check now and then notices that the
    /// boot clock ended the term.
    async fn lost_or_deadline(&self) {
        if self.is_for_life() {
            // Only the hold's own deadline, where it has one, ends a term held for life by
            // the clock.
            let Some(deadline) = &self.inner.hold_deadline else {
                return self.lost().await;
            };
            loop {
                tokio::select! {
                    () = self.lost() => return,
                    () = tokio::time::sleep_until(deadline.at()) => {
                        if deadline.has_passed() {
                            return;
                        }
                    }
                }
            }
        }
        loop {
            // Without a boot clock (off Linux) nothing but the deadline can end the term.
            let deadline = match crate::boot_clock::now() {
                Some(_) => self
                    .valid_until()
                    .min(Instant::now() + ENDED_CHECK_INTERVAL),
                None => self.valid_until(),
            };
            tokio::select! {
                () = self.lost() => return,
                () = tokio::time::sleep_until(deadline) => {
                    // A renew that landed meanwhile moved the deadline: wait for the new one.
                    if !self.is_leader() {
                        return;
                    }
                }
            }
        }
    }

    /// Extends the term to a renew sent at `sent`; false (and no change) when the term is over
    /// already (ended by the elector, or run out by the clock): a term never comes back, so a
    /// renew whose reply arrives after `is_leader` turned `false` ends it instead.
    #[must_use]
    pub(crate) fn renewed(&self, sent: Stamp) -> bool {
        let mut renewed_at = self.stamp_guard();
        if self.inner.lost.is_cancelled() || !self.valid_at(&renewed_at) {
            return false;
        }
        if sent.at > renewed_at.at {
            *renewed_at = sent;
        }
        true
    }

    pub(crate) fn end(&self) {
        self.inner.lost.cancel();
    }
}

impl fmt::Debug for Leadership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leadership")
            .field("identity", &self.inner.identity)
            .field("fencing_token", &self.inner.token)
            .field("for_life", &self.is_for_life())
            .field("is_leader", &self.is_leader())
            .finish()
    }
}

impl PartialEq for Leadership {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `is_leader` turns false at the deadline by the clock alone: no elector runs here at all,
    /// as in a process that was paused and resumed before any of its tasks ran.
    #[tokio::test(start_paused = true)]
    async fn is_leader_turns_false_at_the_deadline_without_any_loop() {
        let sent = Instant::now();
        let term = Leadership::new("a".into(), 3, Stamp::now(), Duration::from_secs(10));
        assert!(term.is_leader());
        tokio::time::advance(Duration::from_millis(9_999)).await;
        assert!(term.is_leader());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(!term.is_leader());
        assert_eq!(term.valid_until(), sent + Duration::from_secs(10));
        // Not cancelled: nothing ran to cancel it, yet the answer is already right.
        assert!(!term.cancellation_token().is_cancelled());
    }

    /// `ended` completes at the clock deadline without the elector's word, follows renews,
    /// and completes at once when the elector ends the term.
    #[tokio::test(start_paused = true)]
    async fn ended_follows_the_clock_and_the_elector() {
        let start = Instant::now();
        let term = Leadership::new("a".into(), 1, Stamp::now(), Duration::from_secs(10));
        let renewer = term.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(6)).await;
            assert!(renewer.renewed(Stamp::now()));
        });
        term.ended().await;
        assert_eq!(start.elapsed(), Duration::from_secs(16));
        assert!(!term.cancellation_token().is_cancelled());

        let term = Leadership::new("a".into(), 2, Stamp::now(), Duration::from_secs(10));
        let ender = term.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            ender.end();
        });
        let before = Instant::now();
        term.ended().await;
        assert_eq!(before.elapsed(), Duration::from_secs(1));
    }

    /// A term that ran out by the clock stays over: a renew whose reply lands late (the
    /// elector's thread preempted between its deadline check and the renew) is refused, so
    /// `is_leader` never turns `true` again after it answered `false`.
    #[tokio::test(start_paused = true)]
    async fn an_expired_term_refuses_a_late_renew() {
        let sent = Stamp::now();
        let term = Leadership::new("a".into(), 1, sent, Duration::from_secs(10));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(!term.is_leader());
        assert!(!term.renewed(Stamp::now()), "the late renew is refused");
        assert!(!term.is_leader());
        assert_eq!(term.renewed_at(), sent.at);
        let ended = Leadership::new("a".into(), 2, Stamp::now(), Duration::from_secs(10));
        ended.end();
        assert!(
            !ended.renewed(Stamp::now()),
            "an ended term is not renewed either"
        );
    }

    /// A term held for life has no clock deadline: it leads however much time passes, until
    /// the elector ends it; `ended` then completes.
    #[tokio::test(start_paused = true)]
    async fn a_term_for_life_ends_only_by_the_elector() {
        let term = Leadership::for_life("a".into(), 9, None);
        assert!(term.is_for_life());
        assert_eq!(term.deadline(), None);
        tokio::time::advance(crate::MAX_LEASE_DURATION * 3).await;
        assert!(term.is_leader());
        assert!(term.valid_until() > Instant::now());
        let ender = term.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            ender.end();
        });
        let before = Instant::now();
        term.ended().await;
        assert_eq!(before.elapsed(), Duration::from_secs(5));
        assert!(!term.is_leader());
    }

    /// A term held for life whose hold ends by the clock unless kept (an etcd session) is over
    /// once the hold's deadline passes, although nothing ran to end it (a process resumed from
    /// a stop longer than its session); `ended` completes then, and an acknowledgement that
    /// arrives late does not bring the term back.
    #[tokio::test(start_paused = true)]
    async fn a_term_for_life_ends_when_its_holds_deadline_passes() {
        let start = Instant::now();
        let deadline = crate::HoldDeadline::new(start + Duration::from_secs(3));
        let term = Leadership::for_life("a".into(), 4, Some(deadline.clone()));
        assert!(term.is_for_life() && term.is_leader());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(deadline.extend(Instant::now() + Duration::from_secs(3)));
        tokio::time::advance(Duration::from_millis(2_999)).await;
        assert!(term.is_leader());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(!term.is_leader(), "the session's deadline passed");
        assert!(!term.cancellation_token().is_cancelled(), "nothing ran");
        assert!(!deadline.extend(Instant::now() + Duration::from_secs(3)));
        assert!(!term.is_leader(), "a late acknowledgement is refused");

        let deadline = crate::HoldDeadline::new(Instant::now() + Duration::from_secs(3));
        let term = Leadership::for_life("a".into(), 5, Some(deadline));
        let before = Instant::now();
        term.ended().await;
        assert_eq!(before.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn renewal_extends_and_never_moves_back() {
        let sent = Instant::now();
        let term = Leadership::new("a".into(), 1, Stamp::now(), Duration::from_secs(10));
        let later = |by: u64| Stamp {
            at: sent + Duration::from_secs(by),
            boot: crate::boot_clock::now(),
        };
        assert!(term.renewed(later(4)));
        assert!(term.renewed(later(2)));
        assert_eq!(term.renewed_at(), sent + Duration::from_secs(4));
        term.end();
        assert!(!term.is_leader());
    }
}
