//! State the running elector shares with its handles: the state channel and the subscribers.

use std::sync::Mutex;

use tokio::sync::{mpsc, watch};

use crate::{ElectionEvent, ElectionState, Leadership, StopReason};

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) identity: String,
    pub(crate) lock_name: String,
    pub(crate) state: watch::Sender<ElectionState>,
    subscribers: Mutex<Vec<mpsc::UnboundedSender<ElectionEvent>>>,
}

impl Shared {
    pub(crate) fn new(identity: String, lock_name: String) -> Self {
        Self {
            identity,
            lock_name,
            state: watch::Sender::new(ElectionState::default()),
            subscribers: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn subscribe(&self) -> mpsc::UnboundedReceiver<ElectionEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.subscribers().push(tx);
        rx
    }

    fn subscribers(&self) -> std::sync::MutexGuard<'_, Vec<mpsc::UnboundedSender<ElectionEvent>>> {
        self.subscribers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn emit(&self, event: ElectionEvent) {
        self.subscribers()
            .retain(|subscriber| subscriber.send(event.clone()).is_ok());
    }

    /// Records the holder last observed, announcing a change.
    pub(crate) fn observed_leader(&self, leader: Option<&str>) {
        let changed = self.state.send_if_modified(|state| {
            if state.leader.as_deref() == leader {
                return false;
            }
            state.leader = leader.map(str::to_owned);
            true
        });
        if changed {
            self.emit(ElectionEvent::NewLeader(leader.map(str::to_owned)));
        }
    }

    pub(crate) fn started(&self, term: &Leadership) {
        self.observed_leader(Some(&self.identity));
        self.state
            .send_modify(|state| state.leadership = Some(term.clone()));
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

    pub(crate) fn released(&self, term: &Leadership) {
        self.emit(ElectionEvent::Released {
            fencing_token: term.fencing_token(),
        });
        self.observed_leader(None);
    }
}
