//! State the running elector shares with its handles: the state channel and the subscribers.

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::{ElectionEvent, ElectionState, Leadership, RenewReport, StopReason};

/// A function the elector calls inline with every event.
pub(crate) type Callback = Arc<dyn Fn(&ElectionEvent) + Send + Sync>;

/// A function the elector calls inline with every renew attempt's report.
pub(crate) type RenewCallback = Arc<dyn Fn(&RenewReport) + Send + Sync>;

pub(crate) struct Shared {
    pub(crate) identity: String,
    pub(crate) lock_name: String,
    pub(crate) state: watch::Sender<ElectionState>,
    /// `None` once the election's `run` returned: streams end then, so a loop over one ends
    /// with the election.
    subscribers: Mutex<Option<Vec<mpsc::UnboundedSender<ElectionEvent>>>>,
    callbacks: Mutex<Vec<Callback>>,
    renew_callbacks: Mutex<Vec<RenewCallback>>,
    /// The latest term, kept after it ended: the health check needs its last renew.
    last_term: Mutex<Option<Leadership>>,
    /// Why the last release that gave up failed (the lease runs out instead).
    release_error: Mutex<Option<String>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("identity", &self.identity)
            .field("lock_name", &self.lock_name)
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn new(identity: String, lock_name: String) -> Self {
        Self {
            identity,
            lock_name,
            state: watch::Sender::new(ElectionState::default()),
            subscribers: Mutex::new(Some(Vec::new())),
            callbacks: Mutex::new(Vec::new()),
            renew_callbacks: Mutex::new(Vec::new()),
            last_term: Mutex::new(None),
            release_error: Mutex::new(None),
        }
    }

    /// Remembers that a release gave up on `error`.
    pub(crate) fn release_failed(&self, error: &crate::LockError) {
        *self
            .release_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(error.to_string());
    }

    /// Forgets a release that failed: a later release was tried, or a new term started.
    pub(crate) fn forget_release_error(&self) {
        *self
            .release_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
    }

    /// Why the last release that gave up failed, if one did.
    pub(crate) fn release_error(&self) -> Option<String> {
        self.release_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The latest term this candidate started, also after it ended.
    pub(crate) fn last_term(&self) -> Option<Leadership> {
        self.last_term
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub(crate) fn subscribe(&self) -> mpsc::UnboundedReceiver<ElectionEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        // After the election ended the sender is dropped here: the stream is empty and ended.
        if let Some(subscribers) = self.subscribers().as_mut() {
            subscribers.push(tx);
        }
        rx
    }

    /// Ends every event stream (after the events already queued) and every later one: the
    /// election is over.
    pub(crate) fn close(&self) {
        self.subscribers().take();
    }

    pub(crate) fn add_callback(&self, callback: Callback) {
        self.callbacks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(callback);
    }

    pub(crate) fn add_renew_callback(&self, callback: RenewCallback) {
        self.renew_callbacks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(callback);
    }

    /// Calls the renew callbacks inline, outside the mutex.
    pub(crate) fn renew_reported(&self, report: &RenewReport) {
        let callbacks: Vec<RenewCallback> = self
            .renew_callbacks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        for callback in callbacks {
            callback(report);
        }
    }

    fn subscribers(
        &self,
    ) -> std::sync::MutexGuard<'_, Option<Vec<mpsc::UnboundedSender<ElectionEvent>>>> {
        self.subscribers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Calls the callbacks inline (so they finish before the elector's next lock call), then
    /// queues the event for the subscribers.
    fn emit(&self, event: ElectionEvent) {
        // Called outside the mutex, so a callback may register another one.
        let callbacks: Vec<Callback> = self
            .callbacks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        // Never during an unwind (a term ended by `run`'s drop guard while its task panics):
        // a callback that panicked again would abort the process.
        if !std::thread::panicking() {
            for callback in callbacks {
                callback(&event);
            }
        }
        if let Some(subscribers) = self.subscribers().as_mut() {
            subscribers.retain(|subscriber| subscriber.send(event.clone()).is_ok());
        }
    }

    /// Records the holder last observed and when its observed lease runs out, announcing a
    /// change of holder.
    pub(crate) fn observed_leader(&self, leader: Option<&str>, until: Option<Instant>) {
        let changed = self.state.send_if_modified(|state| {
            let until = leader.and(until);
            if state.leader.as_deref() == leader {
                // Same holder, a later renew: not a change worth waking receivers for.
                state.leader_valid_until = until;
                return false;
            }
            state.leader = leader.map(str::to_owned);
            state.leader_valid_until = until;
            true
        });
        if changed {
            self.emit(ElectionEvent::NewLeader(leader.map(str::to_owned)));
        }
    }

    /// Publishes a new term: the state changes once (leader and leadership together), then
    /// `NewLeader` (if the observed holder changed) and `StartedLeading` follow in that order.
    pub(crate) fn started(&self, term: &Leadership) {
        // A failed release of an earlier term is moot: the lock is this candidate's again.
        self.forget_release_error();
        *self
            .last_term
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(term.clone());
        let mut leader_changed = false;
        self.state.send_modify(|state| {
            leader_changed = state.leader.as_deref() != Some(self.identity.as_str());
            state.leader = Some(self.identity.clone());
            state.leader_valid_until = None;
            state.leadership = Some(term.clone());
        });
        if leader_changed {
            self.emit(ElectionEvent::NewLeader(Some(self.identity.clone())));
        }
        self.emit(ElectionEvent::StartedLeading(term.clone()));
    }

    pub(crate) fn stopped(&self, term: &Leadership, reason: StopReason) {
        term.end();
        self.state.send_modify(|state| state.leadership = None);
        self.emit(ElectionEvent::StoppedLeading {
            fencing_token: term.fencing_token(),
            reason,
        });
    }

    /// Announces a release; the lock is free now, which `Released` says already, so the state
    /// changes without a separate `NewLeader(None)`.
    pub(crate) fn released(&self, fencing_token: u64) {
        self.free();
        self.emit(ElectionEvent::Released { fencing_token });
    }

    /// Announces the release of a takeover that started no term (see
    /// [`ElectionEvent::HandedBack`]); the lock is free now.
    pub(crate) fn handed_back(&self, fencing_token: u64) {
        self.free();
        self.emit(ElectionEvent::HandedBack { fencing_token });
    }

    fn free(&self) {
        self.state.send_modify(|state| {
            state.leader = None;
            state.leader_valid_until = None;
        });
    }
}
