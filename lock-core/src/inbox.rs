//! The hints waiting for one watch: a small bounded queue that coalesces when the watch falls
//! behind, and that closes when the watch can no longer be served. For backends whose watches
//! share one connection or one server-side watch (a hub that hands each election its hints).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use crate::lock::Hint;

/// How many hints one watch keeps until it reads them. An elector reads its hints as they come,
/// so this is only reached by a watch that is not read for a while.
pub const INBOX_CAPACITY: usize = 16;

/// The hints the hub has given one watch that the watch has not taken yet.
///
/// Bounded and coalescing: when a hint arrives and [`INBOX_CAPACITY`] hints are already waiting,
/// the backlog and the new hint are replaced by a single [`Hint::Changed`]. A watcher that fell
/// behind would act on the newest record anyway, and `Changed` tells it to read that record
/// from the server: nothing is lost but time, and a slow watcher never grows memory. A
/// `Changed` right after another `Changed` is dropped for the same reason.
///
/// [Closed](Self::close) by the hub when the subscription behind it is lost or refused: the
/// watch then gives what waits and ends, so that the elector polls instead of waiting on
/// hints that cannot come.
#[derive(Debug, Default)]
pub struct Inbox {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    hints: VecDeque<Hint>,
    waker: Option<Waker>,
    /// No hint will come any more: the watch ends once `hints` is empty.
    closed: bool,
}

impl Inbox {
    /// Adds a hint (coalescing as described on [`Inbox`]) and wakes the watch.
    pub fn push(&self, hint: Hint) {
        let waker = {
            let mut state = self.lock();
            if state.hints.len() >= INBOX_CAPACITY {
                state.hints.clear();
                state.hints.push_back(Hint::Changed);
            } else if !(hint == Hint::Changed && state.hints.back() == Some(&Hint::Changed)) {
                state.hints.push_back(hint);
            }
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Ends the watch: no hint will come any more (hints already waiting are still given).
    pub fn close(&self) {
        let waker = {
            let mut state = self.lock();
            state.closed = true;
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// The oldest waiting hint; `None` once closed and empty; or `Pending` (and a wake-up on
    /// the next push or on closing). [`next`](Self::next) is the same as a future.
    pub fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Option<Hint>> {
        let mut state = self.lock();
        match state.hints.pop_front() {
            Some(hint) => Poll::Ready(Some(hint)),
            None if state.closed => Poll::Ready(None),
            None => {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// How many hints wait.
    pub fn len(&self) -> usize {
        self.lock().hints.len()
    }

    /// True when no hint waits.
    pub fn is_empty(&self) -> bool {
        self.lock().hints.is_empty()
    }

    /// Takes every hint that waits, without waiting for more.
    pub fn drain(&self) -> Vec<Hint> {
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        let mut hints = Vec::new();
        while let Poll::Ready(Some(hint)) = self.poll_next(&mut cx) {
            hints.push(hint);
        }
        hints
    }

    /// The oldest waiting hint, waiting for one; `None` once closed and empty.
    pub async fn next(&self) -> Option<Hint> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// The state, also after a panic elsewhere while it was held (the queue stays consistent:
    /// every change to it is one call).
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lock::{Version, Versioned};
    use crate::record::LeaderElectionRecord;

    fn record(version: u64) -> Hint {
        Hint::Record(Versioned {
            record: LeaderElectionRecord::default(),
            version: Version::ordered(version),
        })
    }

    #[test]
    fn hints_come_out_in_order() {
        let inbox = Inbox::default();
        inbox.push(Hint::Changed);
        inbox.push(record(1));
        inbox.push(record(2));
        assert_eq!(inbox.drain(), [Hint::Changed, record(1), record(2)]);
        assert!(inbox.drain().is_empty());
    }

    #[test]
    fn a_watch_that_falls_behind_gets_one_changed_instead_of_the_backlog() {
        let inbox = Inbox::default();
        for version in 0..10 * INBOX_CAPACITY as u64 {
            inbox.push(record(version));
            assert!(inbox.len() <= INBOX_CAPACITY);
        }
        let hints = inbox.drain();
        assert!(hints.len() <= INBOX_CAPACITY, "{}", hints.len());
        assert!(hints.contains(&Hint::Changed), "{hints:?}");
        // Whatever follows the Changed is newer than anything dropped.
        assert_eq!(hints.last(), Some(&record(10 * INBOX_CAPACITY as u64 - 1)));
    }

    #[test]
    fn repeated_changed_hints_coalesce() {
        let inbox = Inbox::default();
        inbox.push(Hint::Changed);
        inbox.push(Hint::Changed);
        inbox.push(record(1));
        inbox.push(Hint::Changed);
        assert_eq!(inbox.drain(), [Hint::Changed, record(1), Hint::Changed]);
    }

    #[test]
    fn a_push_wakes_the_waiting_watch() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;

        struct Flag(AtomicBool);
        impl futures::task::ArcWake for Flag {
            fn wake_by_ref(arc_self: &Arc<Self>) {
                arc_self.0.store(true, Ordering::SeqCst);
            }
        }
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = futures::task::waker(flag.clone());
        let inbox = Inbox::default();
        assert!(inbox
            .poll_next(&mut Context::from_waker(&waker))
            .is_pending());
        inbox.push(Hint::Changed);
        assert!(flag.0.load(Ordering::SeqCst));
    }

    #[test]
    fn a_closed_inbox_gives_what_waits_and_then_ends() {
        let inbox = Inbox::default();
        inbox.push(record(1));
        inbox.close();
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        assert_eq!(inbox.poll_next(&mut cx), Poll::Ready(Some(record(1))));
        assert_eq!(inbox.poll_next(&mut cx), Poll::Ready(None));
        assert_eq!(
            inbox.poll_next(&mut cx),
            Poll::Ready(None),
            "and stays ended"
        );
    }
}
